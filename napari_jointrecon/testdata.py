"""Real CT test data: where the tests find it, and the registry to download it from its sources.

The tests (readers, dose simulation, metrics, point clouds) and the training scripts use real
scanner data that the package does not ship: a chest DICOM series, ten series of nine more
patients, two NIfTI torso volumes and DICOM edge cases. As scikit-image and pydicom do, the project
keeps a registry of every file with its SHA-256 and the public URL it comes from (the raw file of
its public GitHub repository at the commit its provenance names), and downloads it with pooch:
``jointrecon fetch-test-data``.

Look-up order (:func:`locate`); the first folder that holds every file of the registry is used:

1. ``$JOINTRECON_SHARED_DATA``;
2. ``../shared/data`` beside the source checkout (the project's team layout);
3. the download cache: ``$JOINTRECON_DATA_CACHE``, else pooch's per-user cache folder
   (``~/.cache/napari-jointrecon/test-data`` on Linux).

Eighteen files have no public URL (:data:`LOCAL_ONLY`): the ``SOURCE.md`` provenance notes and
the two ``README.md`` files written for the project's shared data, and the chest folder's
``LICENSE`` (not in its repository at the pinned commit). Their originals are only in the first
two places; the download writes a stand-in for each (the source, licence, attribution and
checksums taken from this registry), so that the cache has the shape the tests expect: a series
folder with a non-DICOM provenance file beside its slices. The URLs' host can be replaced with
``$JOINTRECON_DATA_BASE_URL`` (a mirror, or a local server in the tests).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

__all__ = ["REGISTRY", "LOCAL_ONLY", "DEFAULT_BASE_URL", "DataNotFound", "base_url", "url", "cache_dir",
           "candidates", "missing_files", "locate", "not_found_message", "require",
           "fetch_test_data"]

#: Where the raw files of a public GitHub repository are served; ``$JOINTRECON_DATA_BASE_URL``
#: replaces it (the rest of the URL is ``/OWNER/REPO/COMMIT/PATH``).
DEFAULT_BASE_URL = "https://raw.githubusercontent.com"


class DataNotFound(FileNotFoundError):
    """None of the look-up places holds the real CT data."""


@dataclass(frozen=True)
class _Source:
    """One public repository at a pinned commit, and the files taken from it.

    ``files``: one line per file, ``SHA256  NAME [PATH IN THE REPOSITORY]``, NAME relative to
    ``folder`` (the folder under the data root); the path defaults to ``remote/NAME``.
    """

    folder: str
    repo: str
    commit: str
    remote: str
    licence: str
    attribution: str
    files: str

    def entries(self) -> Iterable[tuple[str, str, str]]:
        """(path under the data root, sha256, path in the repository) of each file."""
        for line in self.files.strip().splitlines():
            sha, name, *path = line.split(maxsplit=2)
            yield f"{self.folder}/{name}", sha, path[0] if path else f"{self.remote}/{name}".lstrip("/")

    @property
    def tree_url(self) -> str:
        return f"https://github.com/{self.repo}/tree/{self.commit}"


_SOURCES: tuple[_Source, ...] = (
    _Source(
        folder="chest-ct-dicom",
        repo="InsightSoftwareConsortium/ITKElastix",
        commit="787db6d117d5c3de231935163b713f3e0a5c7433",
        remote="examples/data/00",
        licence=("Apache-2.0 (the repository's licence, copied here as LICENSE; the origin of the images "
                 "is not stated there)."),
        attribution="",
        files="""
1da20d9ee1cbd13b454a42fd33bcc7eddd449b516c7a9ef088832bb3754098da  00-slice000.dcm
f04b5f559afb9e64c2283079dec3c0b446096dc868ca6ee6842ffd876bd996a8  00-slice001.dcm
5ebb736248472938f000bdfd6a96660a3e44df383465f0d87e38f71238f49a89  00-slice002.dcm
e88469fe09f7b4dc354df61f8d77fa10ab69f8aa3653cd748b0942d1469ddd74  00-slice003.dcm
cea5819572aa8bd2ba73d389a937bc236181545244a27642c55df43108ef842b  00-slice004.dcm
3c0cf38e9c7913a91789252e506016c8f262b1957b5a0653d5b1eb1fffb0f7e3  00-slice005.dcm
94eec5d35e022f59598d4f99672e4422094b43f783abf640a2765229b5d00520  00-slice006.dcm
f7c08e0aaa9e6e8ddad99441a3a6f06a1e1b95715c052be24245d4175e13f728  00-slice007.dcm
3f943fb32ae619286b748176b1fbd1032dd8a6929a0f78ef1fc253013e09a745  00-slice008.dcm
d05eff746b57d4e012a8410616f22a2f5b399bb3bb69571716902f20cc0f0f4b  00-slice009.dcm
7f7d90101fb3369696cbc2043c9b02b1b2a08b9bd5d3e830c370439391301584  00-slice010.dcm
3ebe34dfe1b0055b48af452ddd1ef1ee43974c62ce2a2528711002865a632555  00-slice011.dcm
62f354d9f415c708cf523a3f6d61a776c906eaae903ced1d6b124e934328464b  00-slice012.dcm
548384efe88930cd5eae370cbc899dbaed66fd540ab153dae41d3168677fbd13  00-slice013.dcm
fb0380c34889848ac9e484b1895cba3a2be73087d2b022dbb54599ccc7a7f846  00-slice014.dcm
96544fcf356afdd816d6acd35c1285f3e8a174a15a18563b5fc53cea6b0b16b0  00-slice015.dcm
b4d34ba1a4405c14a4f9de80defbf13028625f1f1c4694752874b08410f4168f  00-slice016.dcm
07f8e608d0864be100461fbc6ff6226b74fb16c1fbbdea7ee0015cfe2eb728db  00-slice017.dcm
02207f5f46fd183414f24e3ef3dc8eb9628034562ede3bc30dae775795a0fe72  00-slice018.dcm
2dd93bfd22351bf345eaa8297da6a40500e34fd824b113bcc2c24033cf80f09f  00-slice019.dcm
2571c8074c2526824449bf97c2fb73a6b9c5db9ac67e4c3d3aaeb59cfd250895  00-slice020.dcm
33aca862d82fb9106efe715fd7c0394278e3705efba413aec5390fee6f647050  00-slice021.dcm
fab0a7c4030cc9d79805f4bdde3c48698ee447dd121b96bc61a9be4f116d4cf5  00-slice022.dcm
ad96e54ad41ca5122460884f61b0b91dad2d430f716bf2f9f0ab52a702757625  00-slice023.dcm
d3b88ff7acc0c76d3e96ef2b81338aa1db9f195cfb849c20e947d923807a9780  00-slice024.dcm
524fed38343aa8e930008e878dcac88f849323f75d9d2a4947088c5abf56b883  00-slice025.dcm
f01425fb4ea28be36bb530b379b549de8866c2f0ea24c97ba12b68867296e413  00-slice026.dcm
8d692ec783fc4a5acf0e54ba642b4c86b34b10f9c53853b7bb6111fab734acad  00-slice027.dcm
52d8c170e0b0c66642b69175500d2f3c493a8f1738908337468a4391964c5e87  00-slice028.dcm
ee388d0f435ec354ea52f3fcb42c40316e2638b0388064075ef6290b9a75bd20  00-slice029.dcm
53956fda721a6637064cb1e58090c907d385df04cfbb88fa4146164a8c83ea61  00-slice030.dcm
442ba7e371e92bd0ecc1e240d561c5d49e0917f4d92a87ce75dc43bb3e13456f  00-slice031.dcm
c269f274f4b66e19fbdbcfadfb11582ebeefdb42c3c810581af3fe6514cdd638  00-slice032.dcm
3ae584239b412db2695fbcb7d938e5c7e0aac097b53fbb11e6705800f41b421e  00-slice033.dcm
b3fe0f7d06f6e4ed98baa744eba839713381c04e90d1bf03243b1a384c780f2d  00-slice034.dcm
131437cb194cfb0844ef590d3cf39cac2fbea9562aa38c723f7520b6d50f9fee  00-slice035.dcm
989111e7424ba0d2e0c41fd9c9b319ae960f509f54c1e8889594559c1af1c209  00-slice036.dcm
4e50a91393e69cff67cf57d5bcbd7e22d1c0f5c6b6c7c153d7fef4bf540cb402  00-slice037.dcm
b74839b8408fb8f6c491e01f137513517344b371dc3b7dbdb74d7e85c4e2ed5e  00-slice038.dcm
10f0448c533abe64208fd9f0509524b5b84e5383d76a3320a619e336fc7d975e  00-slice039.dcm
0532aee65049f881a5b9a555f5f7dbe530df586279931d7eaff88874eb95d1d0  00-slice040.dcm
e65ea0835eb18b5ebfcb008e348bb22f3f42757c7269371d526ef0e699cfe8ea  00-slice041.dcm
7cc511feb269a98fe67b33d371b574927cd4ff73b664702d0c2217410c0ffe89  00-slice042.dcm
a3dd1cc23d054575fb4d216bf9977ef1a8a2eaa336d102f4b68423cbc8840450  00-slice043.dcm
8adce14dc480fceb219a0871ca2d36d3156c6861e834483f244d818eac0c34d4  00-slice044.dcm
43f1d359ac1e42add3b9a68d5cd8b3e3830da11fb2e1a5d1bd01878ece7123e0  00-slice045.dcm
2e2f8c0ee9debf52fbb406ec99561a2a01ed1ea1f0097a20f5799f3be5520004  00-slice046.dcm
718beede2e38b65b2cff8ea4542dbdaaf5b7ae6f08baffa999463ffc53bcf246  00-slice047.dcm
9a079e29ac430a1d67cc6eeec8dedfbafe0f4c5e3b7a57afbef39854954deae9  00-slice048.dcm
2e0dd399d087519a7fd09d2268f3b305af3f87103046225d03bb6b07f8079e8b  00-slice049.dcm
caf5da44c8d7ddb2fff3328c66b2eec4a1b5be29d83e797332de22e8d7a966b7  00-slice050.dcm
0fda880d1a27d3d164d1729f797d4021daff629bdcd6666167d29593eef5695d  00-slice051.dcm
f2bfde33d08723235513915d5b9ff2771e0125ff71f63b191740400a5e8b9008  00-slice052.dcm
6d051054cfe8924d507dc6b7cbb4412b683864ef1b01196f174c069da04d85f5  00-slice053.dcm
90f3d4f9173cfbfd05fad9700a91d439928534e7eae46745366d902455912243  00-slice054.dcm
25a483901286d9b1097ffc8c441559c75a6c8a90c140df24bfe5a47ecf83cb28  00-slice055.dcm
b8ef91e140244c6421e24bcef340c4ae594a6be206c6a88bbaebe70842472aad  00-slice056.dcm
dfab624201d0b7a44814899df070d2c94c20d76086a0766e7e495900a4428043  00-slice057.dcm
a0a3b1f63c76f99b6e782eb7f0f679fe1595e7f19a1f06643822015f8999d55d  00-slice058.dcm
976e07734fb3acfe031f2cf1e801c7e58e42a283aae511269a54a3b30b3fd024  00-slice059.dcm
1b171cf71f5b0b23e73f650884ae770c585aaa97870ef9e9175b9db7e4c72097  00-slice060.dcm
8172beacdbe49164a5ac59e33b36c613181cb68ec3ccf9102a6154a644129356  00-slice061.dcm
055a2dc193e12f464e96cb2dfdabd5fe79e82f172f7998f60bd998847934a628  00-slice062.dcm
e6ad7661b2c32a250736fac17b38f10e98d0de616c2b809e751a9731d6ad692b  00-slice063.dcm
2dd108ede79858dbcf6bd230cf5c70e77f0d147fd4205fd002ab32257a06ca2e  00-slice064.dcm
a4e2309a1c6e648e00b360099445228dfddeeb4fcc6713e53fbe6bccdc4be672  00-slice065.dcm
66efb776edf4791cc5d41e6072f6186cb9f3bdf57c7100f2c9f36f917bec50b9  00-slice066.dcm
2b3fab42b28d12de307e03e4e8ab0880b2ed9d71b3223d43e4701f69f96d2580  00-slice067.dcm
d575c492761b2092ed6f9399759da2333f247c3b845065b7e3cdd44cd096cd13  00-slice068.dcm
28d6dd1ecfd356512819e3498526557c882202c0700d5734a46e4ca4bb2e7f5b  00-slice069.dcm
81fea468356a1f0eacc133e5fac2576cd7f05ee99d15c8b045109bca11f2a476  00-slice070.dcm
ab75a6e6b4cb7cfd157dc68b49e3862c800858f717581293e7a9f08d4468092f  00-slice071.dcm
9199f334618ca8494794226e52917055c004585ca827c2b2fe7d8e65e9366b49  00-slice072.dcm
a7d04bc55b6d6c43947d9f3be5b427f6a524c1e67b93b9b1ac8a8e740af3e7fd  00-slice073.dcm
2a953b482875319a39f0afa611d99535a2d7b7df4275eee7c922813cfddcfe5f  00-slice074.dcm
0badd3886e898cabc54ef2063d01195420ba45142a79baeeaaf4438ad185f18a  00-slice075.dcm
ea4af811376389f1e09438f1c22d95fa9b12904b90abf4e2c1b75dc2897642d6  00-slice076.dcm
8833d5c0dbf963b25810191ea266e72e20c7eff91ca7d1d54334e763d8d56c8b  00-slice077.dcm
79e2e99d5043b5a510046690ebd65d73e36bc8c4e6376cbce82a69e411caf588  00-slice078.dcm
8bdeace455ddec504b64c1fe28e8efcb9d0f4ea54bdb1965bec82c3990158262  00-slice079.dcm
b5a3e4a5d889f86136471ae98fdeaec99c2227c398125a156d9b50a91a79c6d1  00-slice080.dcm
aa6258c941e78660470e89b2628aa340950897838e241196ebdb3dfeae4dd995  00-slice081.dcm
5019ee96bcea4a4618c4c3dab1eaea1d2ab53d3bc2ca2fba9c05d542abc4e209  00-slice082.dcm
c35c7c05fa34aa81f5f11f49addaf640062473a55bd56943b91c36714bf7acb3  00-slice083.dcm
4cb6c0cf7cc9457239ad11c0b53e4a614acd6523f800d184d6eb3fc0e6ef68fd  00-slice084.dcm
8f0218ad83c0010b0ca1f4880723d931d5b7ef8f79528160c2106071ad51c181  00-slice085.dcm
527b137537a0649f5f9913990ca64db744b4878308353cfe79f7e4999aa541ee  00-slice086.dcm
276ff20a3b9b5d36c84a5e1e1b8441b9d73140a69fc287b87de1f15458196df4  00-slice087.dcm
d35bacd6a88fabea2739b47925f4eab00ae7c0ee2f7772014adfdca22a7c9e04  00-slice088.dcm
30dc85e7c8cde1057da434539d0bae416c7d2c854e9bad2b008c9cd8ea4c2e78  00-slice089.dcm
3ad8516505d2e8b6aa1159b801462f3bd12252491d019170989224e53aa35076  00-slice090.dcm
20f39ca0adbc487da859e69184baf087e198c5f640bfb7aba1f945d8b33add55  00-slice091.dcm
055d908286a1c4babf4256a3e4715f4c1ecb02e97d5500550eefe6a3c4963773  00-slice092.dcm
7956ed951328e78b73f3382fb1448662db4f72f892babdb2ff872b2459a700f7  00-slice093.dcm
b54fad80ce07541232f5d55bf07f1e7e650d0b5715875386298889bdea8d3e6b  00-slice094.dcm
d85917ab3cebe2df0e1772e5e196cd166317bd2481479d38c58744ba84249908  00-slice095.dcm
6bb52604e1839d90bf5f79cfcfc628cf90913b38cbb1ce5d9a3ad78bb43bc47d  00-slice096.dcm
426b115669d23983e293053e13093685e52347a1aa6bcbfb051342f4458474ef  00-slice097.dcm
f53c6ed594e42093d3d795c4e189fbfa75490634bed35f6a20f3cd0dd5ee6032  00-slice098.dcm
5036588825a88953e287d87901095d0ddcba184cd5e6cfd890a98c02d6086775  00-slice099.dcm
5ec430a3c015b8a333eadaffa707f1d67dc96eac6b36f248b49068e33af0b9e9  00-slice100.dcm
989f394399702b9cfb2de9f5ddaf7cdc813c4fb7268fcc595f0ba4797bab0ef8  00-slice101.dcm
e9336cef476cc24f49b65fb43d292683b9d97fadb2cddbdc4bffeb0df4052e79  00-slice102.dcm
9ca5b69aabfa71125423656330593b380941e7e51738f78c06f00a3215d4f7c3  00-slice103.dcm
0aaa530b76ef7893c44ba89aee845796046bee19179bbe5db0998b46a08fc95e  00-slice104.dcm
f3146862d9339ead681b5817943572183ad317493b76d87dd52bcfa66b8cf4dc  00-slice105.dcm
21430f7406bb9dc97080a4dc45346026b7ac6b5ce1ae117c7d769f7ff037da08  00-slice106.dcm
fad9817932b002d741c772f35297cc5b3296e8eb425f172dc9af051fd2ca5999  00-slice107.dcm
0aaa90c27baea4e27afec947fb31ace7eca6d1e33b865dd67f51cd1ba83a6d68  00-slice108.dcm
9cc34f38cb64dd0b2223ef02c4b3d45bb302afcb5cdde433c23665a68fcf6490  00-slice109.dcm
7e6713a358168a5880f0b3a444dd5a04e5a48e22a47ce46b1c2e1b1f1da7f824  00-slice110.dcm
e4d2f2128698b68af23ee7993a33d57eebbfd95d0a20d532afa08f9143e010de  00-slice111.dcm
82389467c90c6574126ae94d6a120e53e7fe91247be482b9c0c5293e21a01340  00-slice112.dcm
11651eefceed975d8dd36e90d092ff54af2d607fbcc799a50f0bd4506bc2a672  00-slice113.dcm
29786bba358ce3abe4dd29f1f0540b1960e242b50e63a0d04ae907a5a3d456ae  00-slice114.dcm
8dbe83ac40265ced6a23439d621f5ac0b5b4e9328d233d948c220ee0ab2a7793  00-slice115.dcm
04cc5b7242c5c654665bc3ef0c26e453cf90194bfa36e58a2a9d6a5c5a8e8037  00-slice116.dcm
3e154586e979f35bb3e19334b08e0f91a51efba159a97aedc0b46c03b4d7fb58  00-slice117.dcm
d37a572b8e9ba746f9c05c5ffbb34960b08ead9eb63cad081953c7ad5645e8c3  00-slice118.dcm
81c6888e7c77cf6061fd0b4bd563dd09c3b0077b3fd12c318ec8e312b1f55d6d  00-slice119.dcm
c6d4964f2aa965ec4272d8bdf1b7c05cb7d88a39ff08550732a38aa9971e6724  00-slice120.dcm
ca8931cebbb11f8502ef08e3d75e34f9f11ecc510d4b0a6560b9b97a6d87d26e  00-slice121.dcm
9b9e1bac2f30a609e6eeab53ca5ced689fe3f141ec3804b7f69cbb078260e222  00-slice122.dcm
c9d20e9bf7002b621bde57d5fcac545ff5230ccc0538b13e984c209c7ec2174f  00-slice123.dcm
1990bb2ff525598633b9bb72695d5167a8fee31943fd74ac01067aeb606aecbc  00-slice124.dcm
59e58a8f4f02f7ed554b435c2c5b0b883c480f21292c6fdeadd3d3ccdf558e29  00-slice125.dcm
884398164430536597c2b5bd487eacdae6673325e689709f62d0e9b9504de1ea  00-slice126.dcm
826f7fac68320ce94dc6ba130ab375d9a8bd0c072687b50f90e37d4a0aca5f0d  00-slice127.dcm
1f7351fe77fc2be9aa517ac16e03122c085a69250397666846f56fd33ba8a02c  00-slice128.dcm
f64e702f2daaae5fb2d127cfbc853bb8d1b6f31509f2d8a36701c26d70e228cc  00-slice129.dcm
1bdf42544090f67ded99dfeb546adac764417a28966d8045eb17ec5d26fdee83  00-slice130.dcm
5cf7de6cb9013542bfce66d58c99f773acfe5cb5de9530d0c1b32bbc8cca263d  00-slice131.dcm
e7eb4ec2c9c67e647950dc0e39440e469d2a927b9ec4e1e9ae7cf582d4e5f139  00-slice132.dcm
50f6314ba8d9d16bdd8423a519de68f94ffe3980a6e16b7df7661a7a024df935  00-slice133.dcm
3f89b4a15e9dbb683eba0993541f4d5f89897ad42e6982486a2fbca97b911a1b  00-slice134.dcm
3f7f650558d0a6de726b185ed9b038776b4380ffbd58d2f27b12bdfee399d11d  00-slice135.dcm
d280451deccdad7047325bcedae38350a8867ee165ad5e0199573d61801ae93c  00-slice136.dcm
79702838487279c0b19fcbed1d15da1ea7dfcaff12fed1623e28461ab2da0f48  00-slice137.dcm
c6e93d46e7c7e1129db94b1e04d68fcd90c2968ba5c7174b9877a0874de529e9  00-slice138.dcm
822fac749dfcc23f2ea20d97a675b4b6f72b7221355b6e35e49de942787b106e  00-slice139.dcm
75b2dcaf24743d2a2c1bdba4851ce6f285fb88bc9806708d5d3ab30e8bd6d449  00-slice140.dcm
"""),
    _Source(
        folder="ct-series/ge-lightspeedplus-STANDARD-chest",
        repo="profmcdan/dicom-project",
        commit="588f867046cc97f9149eaa08ebcff56cae227c18",
        remote="data/767",
        licence=("CC BY 3.0, the licence of the TCIA collection named in the PatientID; the source "
                 "repository states none."),
        attribution=("Armato III S. G. et al. (2015) Data From LIDC-IDRI [Data set]. The Cancer Imaging "
                     "Archive. https://doi.org/10.7937/K9/TCIA.2015.LO9QL9SX. Clark K. et al. (2013) The "
                     "Cancer Imaging Archive (TCIA): Maintaining and Operating a Public Information "
                     "Repository. Journal of Digital Imaging 26(6), 1045-1057. "
                     "https://doi.org/10.1007/s10278-013-9622-7."),
        files="""
e988c2ca26d8e803a511c0a2fd95f9e08f580157cc9fa0a5867f2d0c6990750b  000001.dcm
80d22ac116b7f262253627555780665629e5180ea202002532d71bfcd6284d92  000002.dcm
6e15466ca0836c22f0debd9a88570fbce7018aeb37447e5af1c3533cd410b663  000003.dcm
6a8d7b2cf1f3b312ee1c360a6d205bb73f191dbee49481fe2a8af5a7e490faba  000019.dcm
3410bccb559f4074352b3e3294b82ecc7fb48eb8faa7bd8fe98c8fdba132505d  000024.dcm
94bf08ac3fc39dfbff7223e2918bc24adf209866542d727c3fed23f46a6d8594  000028.dcm
1ddd9ec26b1246063fd5d5336893f7e49892033857984079464e1e62592f45db  000029.dcm
69e5b37be57e4a9022cc972f624fb191a5dd02ec6fec2d6ae71708dbb28e29fc  000032.dcm
7b3f267f9bf17c2b2e27602ea451cf0bc762c99c6daee399299c36c9ddaab18e  000036.dcm
5bdbc9a99f1a93b6901dda2c703b5dbfef5fca038de110c25d606a0e20256f1a  000037.dcm
2792205486dad36bb87197395db94ce1bdd079898dbeeb7db5127489f3d6d5c9  000039.dcm
265e60ed39e609cd667aa85f481e09027ccd828ed208730772cb922d2b0d8d89  000040.dcm
1c605bae93ecda54078e87f2dd843d8985f0ac73f0542f2ab8e260d7728dd3df  000041.dcm
4362749dd888ee566b0aad23af8e4438b9ab6326b88cc40dbd7901729106628b  000045.dcm
e56d293d69444ad7c297c217ae55042da3b9021dc181abbb25dd74e4a0d8e590  000046.dcm
f2fa20434bb98e757d975f4d16cf309f80d5808451b7d1dbe963a62a80e0dad9  000048.dcm
3a8221a01f749893c3746c6ef2aa01dc51a6a26976070cfbe1ffa40c0720eed3  000052.dcm
7330456454c54eb934d80c3a9f362c021cd3c2e1a4723e01f8dde90821eb36d8  000057.dcm
e058fc4177b49e398f446ca9b66e43e98463110c094e0a316f384e1fae39043b  000060.dcm
68d7c3ddc466e0b98acb092bf0ddc11382960979859859d0c74a1bfdf104b607  000066.dcm
bb06781ccdc6781d9a247d0c1f222fafb240054d4bec9fd9bbc67d3b98921ad8  000068.dcm
efe5f6e9ee70d072b7c11b8f97b9672434adbfb9f0e9b4bc7b3c935bda33d2c0  000070.dcm
28aedcd95f573a89deb153fc0c5750dc20fb502faf90b6db2cc3b6ed7718fbaf  000071.dcm
988b99cd00f5a10e5a32f58815e2b0a363ffa6fa424619cd2febe0a2607e867e  000072.dcm
362bdb36f0c97763b2e508c5e055a36071f58c3eaee95248f78d193d0aba559d  000074.dcm
f369e9f2e3a3239de10db65baf879664204cc42e4a47ba29197042192440cd45  000075.dcm
72d8050298860c917e8a5d140635ea872dcdc230cd427cf0cf37037f3f93d3bd  000076.dcm
89f51464b529f3cec37d2df8a65d5fc65360a4a474deb6bfcadaac4d696bad4d  000079.dcm
ddf83d83055e3c5467e3dde57e610cd3501a1e330129854e936fb797e2ac56cf  000081.dcm
722f8ca62353008eaf0e99d065bfe509a567886bbab48488bbac6eb8c12f1878  000082.dcm
ef9785072a8ca486288aa7b70e6a7d5049fd518de6ff535f7be635312820affa  000094.dcm
a8c1134ac42e4234ede4c42fa645bb20e1a8e7f73ff616b49062a1471c7a353f  000095.dcm
bb6742c643b9a9d59fdb532b55eb4e4e1c17f063cd3d914f58380d1a3a2b1e1d  000098.dcm
725b34099c1c3c1b5d67034226e86f438c2852a920413684f8979f06ca6f0fd2  000102.dcm
ae0320f5f29f6ca0031d37ba3581ba16be293fd5499d5dd337181f1133e8fb08  000103.dcm
d5744e6245a0614bf559b829bf36dbd8827915d05f2fe537272838f817cfddaf  000107.dcm
bfd8dcce04122be6e7d00d4aabb311027b846566f952e12556688afffd810b6c  000110.dcm
ef65eedcafa12952391d9b9d0c736bb53f57f95dd30c859cfd196ddf33c3313b  000121.dcm
0d38d1d9299f917726bb334ed3359de64ddfddb56aaf849ca49dd1148a415541  000122.dcm
1e24f808e68e60bc7c06e7816385b03196a25e4dfaae6acb02b73d8b3ac7e24f  000127.dcm
"""),
    _Source(
        folder="ct-series/ge-lightspeedvct-LUNG-chest-abdomen",
        repo="stepha-mar/Colon",
        commit="d2bd890396a1779ad10edca87ffd3dc83068b658",
        remote="",
        licence=("CC BY 4.0, the licence of the TCIA collection named in the files' private tag "
                 "(0013,1010); the source repository states none."),
        attribution=("Cancer Moonshot Biobank - Colorectal Cancer (CMB-CRC) collection, The Cancer Imaging "
                     "Archive. Clark K. et al. (2013) The Cancer Imaging Archive (TCIA): Maintaining and "
                     "Operating a Public Information Repository. Journal of Digital Imaging 26(6), 1045-1057. "
                     "https://doi.org/10.1007/s10278-013-9622-7."),
        files="""
9046874df8383a250fcceadb8294e6ac9a1a7694ee979c553bcddb110cdb3d33  1-061.dcm
db5eb923cfefebeaa99afadb703982b3a4dc21ec1f81b4ede6771c8507b7ada0  1-062.dcm
4707a61ff6d533f0983eab94e4413c58af062b077b12803c9955f7d8e3258877  1-063.dcm
0392578a6b534702c20a174a9cd2a983421f9777b70f39839fa3f02123c57561  1-064.dcm
05dc5c7f283d0a81a97ab8c8c1da329b1011519106b29f895b2a2cb797772c46  1-065.dcm
6b5de291184885d928a04931f34e9a8440a0c0ed486b782f62e166dc701d6423  1-066.dcm
8de3a6af451cbbde3c63a55a42bf988f2535b3757e4399bb980c403b6862af63  1-067.dcm
ab7064e294c7cf0b5fea1cd9ffbd24404001d9fc98fe291d0510841ac216d385  1-068.dcm
6b8c1e0a16ffb3a6d4ee8bf299156596fadecc02f84de72863e6c4c7979c5d5b  1-069.dcm
157999bd4bfacfcd5c46d99e5c1107e6619b47d3a23f77a14c09d6b10bc3d017  1-070.dcm
c71c4237d42e7615c976fde96941914bfb4c18cb21bd974c88ee6aa08ee507d3  1-071.dcm
86e1eb62a9c7948b1f48b4879127cd08f55dc2c45a6bca69fcf4a892e65de35b  1-072.dcm
fdba8ab0522a7b66bdeb85b8711e02ebab97a6017a19794fd3fc889eb24a22bf  1-073.dcm
6e98843f9e76df3c18d4c324fff592ece7b7cc8fb74ab52fbd7ab513fa6e80df  1-074.dcm
50a6bca376e6c65b8c88eec87e367b3c48f687e8b556a6393880350b3bd64f14  1-075.dcm
18efcb258e666cb5a9e11224631af191e75bffdef0c748b1f87ff37212f16507  1-076.dcm
7e09181eacbec1c6a694732e09599e825262aba850f32a8d52617945d371c4a1  1-077.dcm
c6eee1e318f50e957b0a749666de9962d71c8c5b4df99a9d49f03b7cb5481c68  1-078.dcm
4e5eff4111455eadd7f4656f1ebda0e221afc9df1053aec6ade66995e55f8405  1-079.dcm
cf1fc7d2bfa892f191d7086572e6c4a1fa29fc18745a3a6d57342942da51ddeb  1-080.dcm
8c4f3b30809d287a1358bf031e3f603eb4a8e808ad0bc1de44a97d7f66464e13  1-081.dcm
54522beadcee0be6a91c19d350151ff7f485e889a5149ece0bd368e18855fd2a  1-082.dcm
5a69589a4dea8bdb3162a366fd52d926850210dbd4ea5a27532dfed35013652a  1-083.dcm
0e5e68168b27e6b9620b49c74f6e2810964c027b6828913a314afe2b53e5d54c  1-084.dcm
14d77b1cb9f0da4cb0e89d8b5eb1ad948697b1d94b541dfeaea90c20d0b8693f  1-085.dcm
0c84587c9b00ca0b08ff1de2e1807f573cb2166cb2ae73be14112e970e434d51  1-086.dcm
b875383488b7a7f2437784a8254ba8e22df6ffd5dd439e74cfc897732b49deef  1-087.dcm
5d693f68657e8ba27c173734664a07ad31b6a29c3d77bb6022098ebacf4909c0  1-088.dcm
ab312e769774863427aca0b3a3af720b104a27ea842d6167bbbf525d3caa8060  1-089.dcm
9a623173dc9414ae7eea48726c85f2953d0469ec8df4b6da2f1761ba71c2edde  1-090.dcm
7dccd6a0a6838a595f1ae051ae5d56b76ac6593d1546ce1b07ed916f5a819a32  1-091.dcm
6524349d2663ed420ad0c04217a126227e4d171b863c5b1a6cd00c6ca425c181  1-092.dcm
3ce44bb5eafd56fb7a899e8a74377cff78f3596bcf0cf2e93ffdf20cb7ccb49f  1-093.dcm
d2452f1c414e07646081a1fa3a5703750ecf2c0b079eb80c7c3b815d818b9edd  1-094.dcm
df5370d671cc201f6fbb88c5fb0d70ffc981ef1b3d67388a02107e7d7b693dba  1-095.dcm
9ef3becc912cf83b620cbb4cee24ca80353608fcea277024eb98bb57c2005216  1-096.dcm
b5aa6aa36dfc66c46e10f50609f82f4637bbd9998e7f94fe0a367125ce3e1f1e  1-097.dcm
3cef4b13a67522acb7fdc36b1b2100c206fe97b61eeba760655b5d1bbb90c3b0  1-098.dcm
c6a1829bbdcf9905ea288793a7e1f7bc5c31085a7eef9765330f1fdecaa4103f  1-099.dcm
d21df025e56211cbac6c9b82204a51cc48b6014b9165c9d744f46fdbcd901f55  1-100.dcm
"""),
    _Source(
        folder="ct-series/ge-lightspeedvct-STANDARD-head",
        repo="NikosMouzakitis/itkwidgets-biomed-visual",
        commit="c1a05713973123fcd5acdb3d9135ee22368573eb",
        remote="",
        licence=("CC BY 3.0, the licence of the TCIA collection named in the files' private tag "
                 "(0013,1010); the source repository states none."),
        attribution=("CPTAC Glioblastoma Multiforme (CPTAC-GBM) collection, The Cancer Imaging Archive. Clark "
                     "K. et al. (2013) The Cancer Imaging Archive (TCIA): Maintaining and Operating a Public "
                     "Information Repository. Journal of Digital Imaging 26(6), 1045-1057. "
                     "https://doi.org/10.1007/s10278-013-9622-7."),
        files="""
c1476ad7d85a227b8c731f106ec5356b339705258eda55b7851494a76ca303bc  000002.dcm
a587aae4f9a8f09bf26e012cde3bb8ff78dbc0c10b8e3727e5ae059965c12eb8  000006.dcm
0d60982c32ce3f1018a0e4ee50e64d8bceb1ae06945a8492dd4a80055eb1c6d6  000009.dcm
6b2e1d4bdda152e76a643fab13c39f048d4da7782c83047374f3894a8c0e97f8  000013.dcm
7e53c82f3a428afb3e6774b06f8243e0613007266c4c0bbe921676e487d5d2e1  000014.dcm
5281fc8ae6c981975536cff737a5cf7a149502477c94bd590dfef15de75944e7  000018.dcm
303745199ae3eae416871b830f49bebc64b740d9f674b21383a79c69dce8f7f0  000021.dcm
a4a3b674b060d358a2fc0c5f83963b19fbe3479c3f10a6ba110e3d329ce5449e  000027.dcm
fca0367ba582e3adb6287f8436ead8d996366d7ca6f9ccb0c65c735204f5e2f0  000028.dcm
e0d65da94cd634016717f2371675cffc2c317b9a080e3eaa558df672fd9b2639  000033.dcm
b0ddb90342055376644f385a827e8aa62e20717c36d8f82e16248017b767cd98  000034.dcm
7ee88e595440ee364f05eacf0c3c43eae1c798a8dc98ffe301885acd418b2c2c  000036.dcm
051a580fc5faec38dc0999339a64cb48109265deaa1d9b3b019f61190568407f  000042.dcm
29cc374d3fc3f560afde2aebb8e58cfcf0ee0137e4af0cd64b8ef8e3f506e48c  000047.dcm
e45a1f1ba8928625efec126dbedcf779f7e38b8b716844c41648e181003d761b  000048.dcm
4803a56c2ddc13a6cb90a1a149fbf8be7ed728309c9d6fa8a5c2c07374ade3ce  000058.dcm
d845e8286f5bd7a96ab201f8dffa0013840e381189496686e7ffa9173ac95bfe  000061.dcm
8c06eac40d1f14ee69f1981b55f913e14851462662b31bc71d70ac3c95849bb2  000071.dcm
53c17feb71a3c5006e5a3860d20fb564be8f55a15236a080609c9ed967905121  000072.dcm
a414f84cac5550b34875414e5e70c1813669b1d1c3416016a135ede23f437994  000073.dcm
eb3dd616d107e6bd77367aef5c30a4a82e86ad4cca5623cf5f72170426356773  000074.dcm
dba8d1485b5bcbcea00bc9f6d5e3861a0b4af0734f8fab46ecdbebd179017dd2  000075.dcm
f1179c777378a0d1ace83bf651fa854b0cf6be6865e1911313d51de70f97e2f0  000076.dcm
07ec8f76e7939be5dc5fe53520722d3171b1cc9276b8ba334f0af106f43d42c2  000078.dcm
bf3001026f12942015ebbd6c35f5be199d70ce38ac016cf7cee06666a59cf9df  000079.dcm
b55b4c894ac47aea26ee25b8918e08aad20db580cbac0ef2cb0a6417f334e74c  000080.dcm
77c761655605531e1eed132f8c0a33bb85d2fbc2677c96daee8656d60f357b39  000084.dcm
58d43c03a9f6fa857568bfae4f6e601320204d3f5bb13c5db279eb0be5641309  000091.dcm
1d26beb4b4e0bd6aa36489e43ffe6771772fa9664d29d7a20c56513a409dc4b7  000107.dcm
767adedf67645a577f3bad248088c2545c1899a9197c1598e0e4ba21d5f8249c  000112.dcm
39d722f519edf12ebc4a290464d978c3a9f8c68a1b74467df82e02092fc9fe6c  000117.dcm
4d860b5ab9527a36216adb5da873f9972f4f8e7545b9c82056f95c86ee864828  000118.dcm
5cbee30cfac0f2a78367bae97857c446f7d1501f8fe90f62bb837609e86fb286  000134.dcm
07e9139a5e2ace2a6400dc8025fe3a1c313586be4a7e71856bb48c25008e38c8  000136.dcm
ab2253416ea013f1a27372b9c984bc086cb047fab8cf04a001a80ba0aabe8e96  000138.dcm
da561afb82dc7803abe538709009d24e7b3d5f727190914cce062609c255b4e8  000140.dcm
f24adcfad32bbf02cb3e21bc7f47d89f6d6e9a3b0a4cfe2f683d63fce2b205f4  000142.dcm
7d8703f19d7258e1961d337ff2c0dcf83263beb1ab71d1bbf4d4152084296be2  000144.dcm
01a574cd58b07c6ca490188da55a31b9bfd22dc0d8c1bf253c60ac0be855c82a  000153.dcm
a531ed9c4c50ab143ae6eaba3ce9f670fcb210595bf7d360abcae2423c681960  000157.dcm
"""),
    _Source(
        folder="ct-series/ge-revolution-LUNG-abdomen",
        repo="stepha-mar/sasrcoma",
        commit="0ecd8fe3f1e013165a16d3ae3d1301a1fe732b93",
        remote="",
        licence=("CC BY 3.0, the licence of the TCIA collection named in the files' private tag "
                 "(0013,1010); the source repository states none."),
        attribution=("CPTAC Pancreatic Ductal Adenocarcinoma (CPTAC-PDA) collection, The Cancer Imaging "
                     "Archive. Clark K. et al. (2013) The Cancer Imaging Archive (TCIA): Maintaining and "
                     "Operating a Public Information Repository. Journal of Digital Imaging 26(6), 1045-1057. "
                     "https://doi.org/10.1007/s10278-013-9622-7."),
        files="""
f5529555d1f13c83c5eea6a10d085a2a86acb717f597b15d7703a74911f2c68a  1-01.dcm
98ff89a51b62edce878edd21a31e3698acc59118ad53e47537a451bc6fe2bdb7  1-02.dcm
c496bf184e2a7a767f29759e7d61ad2abde14510df3f72eb138e61c544060d48  1-03.dcm
408fc29106705d9a15cb9ab71f289ff630c187e360efcc919cd9de7cfe8d336e  1-04.dcm
e57b76d3b8c9a6b988896b2028ce824648cbd497fca2a37b6da8a24c2f56701f  1-05.dcm
f2f8a87829c36d88911edf0b6b39132c768e4c1ee7eeab22e9bf077dda325b78  1-06.dcm
071eba269aecea6d63f1631f596a0466716bd33bd8e5cca456756f2808c5f6d2  1-07.dcm
0cce28c8862ac9a3c26699556bfa9522b5a669682626bb609039f3a3f004b06e  1-08.dcm
b4b4dc9f04f75eb249442cfdfe8c5a83eb903c521b57bc381a628df4e1d38bab  1-09.dcm
fc5dd93c3b5b74aba65e474a2c1582cb43f4b141468d05eedf0dea352f836270  1-10.dcm
e51a15e67db968d44a4aba77b5fec04fcafe80e836ba095b07a908cc1453c399  1-11.dcm
7d3433c6d7dc4b0ecb5b4caee8dd565aa2bac0959bde2b2ddb63c4b7f2f15498  1-12.dcm
354be5a9d74a50205984a0316150ef24805fa58fe4738b368973b47046bb718d  1-13.dcm
b4dbe9af3ec653c18e9af40a4967c7f89312e50df98af800fa12ede54395b689  1-14.dcm
5a6253e77a66d8f725299c5ab09fb84fbb5804fc766f54221a68b3f42c4b4dd9  1-15.dcm
87eea054cc2d7080362efaa7ebbd096edfe7cbbf305ce7c660c3e49580cd1acb  1-16.dcm
66fd7638cc8d68fc5f5f6026a87a8cf6f9cb514ab64701fde9146ccf8cab04d9  1-17.dcm
f26f78d0c9a840b317dc3406c1f8df6e286de09294aed5b59a90eeabd14068b3  1-18.dcm
e42725300e2c8bcb51ea656b107a9543758d0582986b875d3d6393dd704264fb  1-19.dcm
9870de784f778f2d4474741afcc65289adb6b4b6181b6d498977a0b655a9265e  1-20.dcm
adc6a1c66cc7082cd5e7e8c98ac47081905e2235c1ada8abdce2df1979f1ed01  1-21.dcm
8b95dcb336d9655a39d9714ea35e420027563449b044ecc7fbfa764fdf01e04d  1-22.dcm
f515220e071151bb8238ee4c7eef5d7888adbf932b5bdbc0c459697813939851  1-23.dcm
6526bfd1f5e167c575bc00130ee6246745f745cd40bd81415ca067274dccb3de  1-24.dcm
4da0fc43ed1579bca1c753c15cec80a3f6cab4949049c96f00154de5946e9da4  1-25.dcm
f9725fb484b02c17b783e06025023cfddba8657b6975485dab7191082ed01377  1-26.dcm
c72faea6f72d93562847e0ed068b81051ef6d95ecab0531d1c53fd4cd85059b2  1-27.dcm
154d27a2a23e9b631f557b5385401e5934fe2bcb87b4283895f073ce82f24ecb  1-28.dcm
e66945bf57f82c88b5f52d06c6ec1e5aecaa09e5f40fa643fb0050b2a901616c  1-29.dcm
286cd5a681154f4d96f0b3280912151b4295dde2b6d355c89bafd712a6c5a555  1-30.dcm
f68abd1a9a74f3c108f12c9565d19eb37c3c34fe9aab886d27553524d6848c4d  1-31.dcm
3db3b1fd77c9d77743fa6bfca8e4fba1aae1aefdedb0006ae3c3230051c64e9a  1-32.dcm
8538c2e3ff411b78cb10b6056c1377a370ea1370c2f92f9809603f710d3f3561  1-33.dcm
ae09884af138f390d8e6c3e304ead261ed6f66d2367bffeb29197e415f5b019d  1-34.dcm
c54793e3d602013ea3ac29eee49e9aee56b1a3366dbe4017bf21cdce0565375b  1-35.dcm
"""),
    _Source(
        folder="ct-series/philips-bigbore-B-abdomen",
        repo="pyvista/vtk-data",
        commit="c43678d0d972d416e06c3ca8b9e42d79bddd1716",
        remote="Data/DICOM_Stack",
        licence=("CC BY 4.0, stated in the source repository (Data/DICOM_Stack/LICENSE: \"The "
                 "Pancreatic-CT-CBCT-SEG collection is distributed under the Creative Commons Attribution "
                 "4.0 International License\")."),
        attribution=("Hong J. et al. (2021) Breath-hold CT and cone-beam CT images with expert manual "
                     "organ-at-risk segmentations from radiation treatments of locally advanced pancreatic "
                     "cancer [Data set]. The Cancer Imaging Archive. https://doi.org/10.7937/TCIA.ESHQ-4D90. "
                     "Clark K. et al. (2013) The Cancer Imaging Archive (TCIA): Maintaining and Operating a "
                     "Public Information Repository. Journal of Digital Imaging 26(6), 1045-1057. "
                     "https://doi.org/10.1007/s10278-013-9622-7."),
        files="""
5ad3161f55faf756722c02140584470cdc83ebd0b2cdbe22ceecd70942f4d62f  1-025.dcm
56e4e909db489ad3ce3529150cb2e5154d1a5a9e0f372bb6347a7ede259edc7e  1-026.dcm
2f320f0fe36c5b24d72ef597a409949b4548df074a7e66bdb08cfbbc034ba04d  1-027.dcm
64be4ce0f6447f6c0c3c4da0f7b4475cdc787b5fde9be0db9a07d1e1a3e0920b  1-028.dcm
0e53ccdf34e582a0322ba3cd391981e74072484766a15879502733d01eafe338  1-029.dcm
334e6a2845e4fc20625c04390dc17e96126cb387ab0a7d62ca052dcc0e93e906  1-030.dcm
492049751683b38770177d9d726997dba0fbaeface5045e02d5728fee7a1c9d8  1-031.dcm
4423fdaca51c9a31edb7b365addff64222f8522febc86772903a5b633a0413bb  1-032.dcm
73771f1dc728fcb1da9bf876f3779689d36d21ed882eb9d1b1b594d5803343cf  1-033.dcm
f2b8dbfc3dd848c3b16747569a828a2c1df5c7de3863fe4eb3efd19963b849f7  1-034.dcm
5e93530453bc375203f04fb43083045a270626cf7e043194bf5594cb4d400249  1-035.dcm
24130727616cf1503bf417cf40aaf46f01d076a05422273fefc114fdc4494c37  1-036.dcm
a0189bfa4c559605ee158d0794fd962df192fda3ae4f3be102fc954440ea1511  1-037.dcm
a5b461ba93f49893c66593bc2043fe5a4c4c53e16c6f7879fb79d92d020c0d18  1-038.dcm
f3f650553b9b889dcb01e9507cb21df2d3c9a431e585312b1e96fb6ca3310c60  1-039.dcm
9e84d8289d6142a3ed2771e6d433ccc1f6f5ee564532414a5ed9a5f2d98d05f3  1-040.dcm
416cc49247ec41f24a9e66e6cf3a9965836e8b9373fca6f060bd062a864e10d4  1-041.dcm
f3ec5f6fae17e23054f11af58858e3b7db191759b3c16b0b1e4612515d427575  1-042.dcm
07630899e1dbfa2ff551e96738c3250ad595e2c729eb4215c1d3dbc51bddf3eb  1-043.dcm
d38571f1d29f7df5c253cd33689c612ad29aeeea702c9a4bb249801d5cd4cd91  1-044.dcm
b4c5f7e1b637b274c70a18ce33a5408bafdf40754c629dc2434596f672c2b4c0  1-045.dcm
ee6da8cf28b805e882ce19e688f50577faa320e969a3a40f7308d8cfcdbb8daf  1-046.dcm
165fbee7c7e6e06314d1256c039e0a7507522217be759d82951c9ee6cb8a6374  1-047.dcm
0b9b3c35ea053feed1df6b4d283034f1632127c7e453ad7af9a8a988782086e7  1-048.dcm
ed326172ddca5de037fe6ed6f637c4813e6a7a20652874f470567a1091b116a5  1-049.dcm
3411bb194d239479b53b995ac0b48f15b4773bf4085445bdc959b81cc74c460a  1-050.dcm
7d9204573e533cf503b4e436130b6e38499457561024b1099dabd472273d9dc7  1-051.dcm
7323ea65281b0f1472b69c6e0d1545370b206e3c735cfeae042c1b941ceb6a4b  1-052.dcm
2ebc9cc80c5c65d787a4788593a1c448f74929e0614e50ef208845ae8a31bbf6  1-053.dcm
b924fd23debc0d7502aa64fb0d94a0c2bccdecf84d54a14256a1a00761351517  1-054.dcm
f6f50ce6bf350006e126f0b0e8887e8c03380efa21f152a2f6e298dea18959e9  1-055.dcm
937ceee3c4416fdb47bc0d3cc6ec05554289a97844829d82f3682d4e46d0ca73  1-056.dcm
60469d23d3803621fc039a233d7bb934ddac7c4f4bb52ed881dbb561090b372d  1-057.dcm
012d763d5331e0f5b1186e6ad1b68741635b0952e8b4cdf705a2166ae5349180  1-058.dcm
47b79d7485410aaacf7761d33ee8c3a16103d60e2b7076374a9e72dca9b2b6e6  1-059.dcm
641c66c3b9523c66b87a9842404d9c6591992353eb55623ac39904b2d686bf04  1-060.dcm
af3bc8b8fcdb4562252a357bb95f18d0f5824a6442645102f261a34b7f03d837  1-061.dcm
2f71111bdbf6b43e6288b3e6b915ed91c348ed0d0fdd449bdce9abf8db4693a1  1-062.dcm
4461510bcc5ffbbcf2c40ef7c28949b48b3d97daf0e677db1cb20798fdaca838  1-063.dcm
b6a0a705164a2b46ab6c9164e9e036e19d8479037ca322680f73299766530d90  1-064.dcm
"""),
    _Source(
        folder="ct-series/siemens-B31f-chest",
        repo="fuzun45/tahaFuzun-habibOzdemir-bitirmeTezi",
        commit="1b18ccb6ef26513701286c41f7d6a784479d4b08",
        remote="data",
        licence=("CC BY 3.0, the licence of the TCIA collection named in the PatientID; the source "
                 "repository states none."),
        attribution=("Lung-Fused-CT-Pathology collection, The Cancer Imaging Archive. Clark K. et al. (2013) "
                     "The Cancer Imaging Archive (TCIA): Maintaining and Operating a Public Information "
                     "Repository. Journal of Digital Imaging 26(6), 1045-1057. "
                     "https://doi.org/10.1007/s10278-013-9622-7."),
        files="""
7bd107fcc2730ff0f44405a422f836df48cfb3f4bbb0c75db5aec3d625c76065  1-059.dcm
6a9c03177818da68580f49334b1454eff531d71224028d1bec2ee1ae1c999171  1-060.dcm
6fd10cd522fbe6efa615ba4cd55347b263c140c9fec6fcee7343081ce988cb8d  1-061.dcm
8fa9bd9d5caf1e67e32999fc2c86a7ebf354ba9f612c967c51dcf1dad74e7722  1-062.dcm
09bfc76dc93942d049186500fdbf676b1d64636871f28e14b346078d8e09f158  1-063.dcm
d16d62724f082819143756219527d097b69dea569c314af842346b0eaaffc5e5  1-064.dcm
499c577c1ada6d2e571c568f8432290d001633482bc0a7b93cfc174eb1897abe  1-065.dcm
c28cb9650dcb5889617d0a8c5327184ec6f47f3e919e209234c83543ef426415  1-066.dcm
af150d9ebefc9125787f26a26b81ec1ef74ac04630ae897feb00fb1643600242  1-067.dcm
e43b02e19896ebb5a45da15df370e039345f6040983a86bb493be1cfa0d6b9e2  1-068.dcm
00d618978dc45a1b7477db74922818b16b6c9914a55f0e6d9a2fed5b62a52d1d  1-069.dcm
7512f6fc57292590ed3e1f82d014d189d6191a9c47b29bfddb0121c0458340c7  1-070.dcm
cb7e268dd735d15e2ab94ab68e4694e0acbbb3347435fccc28bc147589071fd8  1-071.dcm
d403a323bdf6eedb325f8e41488d7b11fa6e39c1dea3b71c52108ea09fb9e172  1-072.dcm
be349768d60510cb3878c1ff2ea9eed337b3a454418e3b22b95dfab44bef4a93  1-073.dcm
bc58f24fe81a80f4d21a069e8f79171ed162aede05a45fd7e8b3ff9fe167a1f9  1-074.dcm
03a88bfae3d533723484d69805b3fb858cc7a574bcdd0a2b03154526432a1a9f  1-075.dcm
7651a8b574cee43121742948c9cdbc3a9ae5e69d3c4663336d51444f49eaedc3  1-076.dcm
57fce3f347750d0ec0d08186d0f1b9fc9342341ad47dad181d9edd6a00186bd7  1-077.dcm
e925d37350771a353a2b616dd413cf1129ae7c2740635aea19e27f6f291ef9ea  1-078.dcm
2f4c774976df388fe83ce877089359d1a5b0a9c7a85fcd8243ee4a0b42de70c5  1-079.dcm
b5c7f72a255c1efddc7d1e414147077164b5581b0f86a51434beace20632d282  1-080.dcm
76dac087c6134fe1a00474402d75650f317194e411e5593616db3984e37b28b5  1-081.dcm
cda680aa8eb39ee1dc98727d3e1c668237f24c72188c66466b5377f8efd4823b  1-082.dcm
fe547acaa534d22cb9a87c0d0f6e9a2168f1f5c3f65f06e166e54dec5cb961e7  1-083.dcm
b2dd54b2e6033d6d070608b846531d7221d55193afdd828342cd211cc95461d6  1-084.dcm
ea6eb79c7060871295a6f765af269b2715f12f2d7ee2b7c50606c08c4b351153  1-085.dcm
faa555c484412d3700e9729fac9232b0777ad82bbaba90cf24b9c40d4eb6327c  1-086.dcm
23947d4e49c3128fdf60c9eb0fbe24595a1f6c97a096cfe795124cfb3a17e452  1-087.dcm
722dcb4b53f05136d58db345335619d25abd61471437e4fb4d057c2a8eb14097  1-088.dcm
4716ecaf1987740a4dded3a025b32bdeba69ff279b39120fb25aa40d48d5a52d  1-089.dcm
c56a7ba2a6fc3b6e8e5cea7ac33a0de93417798bb0f2fa412b6759c4fdd2134b  1-090.dcm
c9eb6bc90edc10192bec6c4ee660252454bea7c8a3f500a3f144e4c7539776f0  1-091.dcm
8fb0e1ad3038dcef9f3b316a3c34dd665d61182b181d8be8c229becbbd85971f  1-092.dcm
e368f847bf79f24473e3590697be7a9929893e1a383fa450ed14dd90827d2d2e  1-093.dcm
2270a3c3b34cbcfa5307e5a3360d6abdae0b36c26c0691a3767a3257ef9abc21  1-094.dcm
055241ce519dffd6156f67716f60b7a2f08602df97a77cf5f60655f8a0de09b4  1-095.dcm
dff1356cbe770e101988fe8d914a1ce470f5cb708a0cb0c11da1f5343dd49de0  1-096.dcm
0c246c0fc7ea6622dd20cb20e3557f25eaa3e6db04fb8e625f5ee6118cabd99e  1-097.dcm
be536fbf703dc437c0b8f035b9b49d4158508c1c4e83002bedc85a0dcf6e8323  1-098.dcm
"""),
    _Source(
        folder="ct-series/siemens-biograph40-B30f-abdomen",
        repo="plotly/dash-vtk",
        commit="46b48019a6924ca3ef56bb0251c9e74d2831954c",
        remote="demos/data/ct_whole_body",
        licence=("CC BY 3.0, the licence of the TCIA collection named in the files' private tag "
                 "(0013,1010); the source repository states none for the data (its code is MIT)."),
        attribution=("The Cancer Genome Atlas Thyroid Cancer (TCGA-THCA) collection, The Cancer Imaging "
                     "Archive. Clark K. et al. (2013) The Cancer Imaging Archive (TCIA): Maintaining and "
                     "Operating a Public Information Repository. Journal of Digital Imaging 26(6), 1045-1057. "
                     "https://doi.org/10.1007/s10278-013-9622-7."),
        files="""
5d6c492b8be432054bdcbcca5623d716c9df30accdf812ac440ca2417422db6e  1-090.dcm
b9e9d5fe8b7055898c74650d97c30f162bbc0867c7d7621b5e602101dd05e1e7  1-091.dcm
52f2d89fac105392af5a0d24f148b830ab5fd82bd7b074a2746f600b49fc91f4  1-092.dcm
32defa6020500972d194d86f1f902431db2be6bff2b519bc8c54181c51d1a87a  1-093.dcm
78921db264db28307afe5e244ab59044c353070b59bf3a830188709d94181fbf  1-094.dcm
c6fd9dccc424a10c9e821e318a31e8f83e7b56032deb19ba451818e2bcfa6491  1-095.dcm
998f550f3c2ef2b7392e33f42db8dad7df5356c7e5525fdcec79effe7793fbd5  1-096.dcm
80f8ef1b72b85d98698a53acadd8d24cc65065515ecd13f6f6f6000839869949  1-097.dcm
c57082c404f4d0ec8ccb27fa0999f8fce3a6cfe37154400c2cc73eb578921c12  1-098.dcm
b8f870b77e18454be8b0ec4bca00cb531bba03f82273f628099e03a8a8917e96  1-099.dcm
855151c81fd794213fc8bad929b5cb214de76c4d48e388e560e3984977c760e3  1-100.dcm
c10e4b00a52eae59c7827e6642ac758d5b4b9e942baa3017baeb47d193043d27  1-101.dcm
8b27799090dbee9fb2ea819177da4294333d852f4504a4f7bd14688adf43cc43  1-102.dcm
da9128819dab61f3013c829967e815291403d6b644c36890a8e40c4321f01a95  1-103.dcm
896311194b88a869fd1e9dc3f1a558b0c3d1a96382e920446db4f74ecc43f196  1-104.dcm
aa07879a15e4eaf35820b44a0cb0aa450d82adca18a166fc930ca4658894ed68  1-105.dcm
31f87eaa62de29f14033ced20d81a99159498e0f08dbcffc6dd595265b922f67  1-106.dcm
df84b693fabb4b7526e246ccfc30c59791b2e847eee3c307b487b7c85d12f0be  1-107.dcm
ec013dfb36fe0f7f0802f005f6b0e34f1249075b2ff0c65b3ab8aa01b3e7ddc7  1-108.dcm
414e2620b14162d0900d9f074fd5ea4c28caf54f80c580048e1b425d42f4e62a  1-109.dcm
62e5f3631bda9dcb054e85610eecb3a571796008b04ed8c8ab67e7600f1db507  1-110.dcm
72251846db90e987488d6ab80646d4818d00fca0a7d95b39a8c7c74031fd88ba  1-111.dcm
b2f994cea1af93d3088e61c3f0c6b1717a38c1a5dfa6fa372306e4e82503e38f  1-112.dcm
8264d5aac5d224d641b385f4c8186caeab1c6e6217b5455901bf14451be83a97  1-113.dcm
01e4306427601eae83486690e817dd8c5a478723609310d9a86de865eae11626  1-114.dcm
705562db53c3ade218f65e36c22deddc0d04c4416e3c5fc234776445397ff751  1-115.dcm
22dedc948445b0ce74cd6a7023df6aa4bbc877d1e6fdb13476c7dcf08296a54f  1-116.dcm
e16e9e80d150f968e63b05733a8bc8d58b0825db334da777da0fbc40009166ee  1-117.dcm
e69b4b6ca701d760fbef818afb030812c1ecdae4f9ddd2d80444ee5661d0615a  1-118.dcm
ba3371812d7fdbf8f38cb8248e15046020070ab0529f09fe3548585126bf1091  1-119.dcm
d77c10862f5532dc748eb44a8b8a65c99088763f3326c9d89b90d0ae28438aac  1-120.dcm
d17aa2889e87709e5eee8eaf4830f6dd0b3a0200aaf4adddb7c62e04c5a236d6  1-121.dcm
436c8b78806f25633dbd5be86526405e8c7a177cf531810eb21ad0495854fdd8  1-122.dcm
98009675365f5471a00d5d2633d016998c6c88dcfcc655f75936bc2efeb31b42  1-123.dcm
0a45d16ac64966ef27abf9cf81f0a39591c069042bfdf8c2e5155da27926b32d  1-124.dcm
1c6b2e05d2f785b100dc9373b650390600fc95f11e8199505e16141a7271a7cf  1-125.dcm
dde8c1907dd1de9cdbff7f3fb07a6deeee2d153d62df8471d51a1c7d09001865  1-126.dcm
f0fbcef6c111282959dcdde8ed6b8397a30b77d8d200ac5cf46142265afc80c0  1-127.dcm
50d1a64a5b5c274459166482403368e6d0687b58ff05a5177809ba91febc3137  1-128.dcm
b7605c83e7e37d2f044554695f4e63cd155a0272239e4579e9fde1c9487e2724  1-129.dcm
"""),
    _Source(
        folder="ct-series/siemens-sensation10-B40f-chest",
        repo="huyenbui117/lung_CT",
        commit="520adfe9e2e8e2b8c02985b228002c5b2997e5b6",
        remote=("Lung-PET-CT-Dx/manifest-1675442780019/Lung-PET-CT-Dx/Lung_Dx-A0002/04-25-2007-NA-ThoraxA"
                "ThoraxRoutine Adult-34834/3.000000-ThoraxRoutine  8.0.0  B40f-10983"),
        licence=("CC BY 4.0, stated in the source repository (LICENSE beside the data: \"The Lung-PET-CT-Dx"
                 " collection is distributed under the Creative Commons Attribution 4.0 International "
                 "License\")."),
        attribution=("Li P. et al. (2020) A Large-Scale CT and PET/CT Dataset for Lung Cancer Diagnosis [Data "
                     "set]. The Cancer Imaging Archive. https://doi.org/10.7937/TCIA.2020.NNC2-0461. Clark K. "
                     "et al. (2013) The Cancer Imaging Archive (TCIA): Maintaining and Operating a Public "
                     "Information Repository. Journal of Digital Imaging 26(6), 1045-1057. "
                     "https://doi.org/10.1007/s10278-013-9622-7."),
        files="""
2651ecddb8593082efb24a562c1b5e0107392985b85c8dc652ab4f4fa097e8d7  1-01.dcm
c8dedcac603608d8f776f2522d3e0bd1814eea8cf70d40a79b155f2cb7dc62c3  1-02.dcm
dddbde77efd8f88d54727c676df2e4601d4d44c70cef45663a67338f5bd45160  1-03.dcm
c305a385a6eb821cbf98e22d30edfc57d510a068581de52c337bef1d892cdd40  1-04.dcm
bb93d2125a07d3a06637aac3aae0f379ad35e14d9319f4ebd2cbe42593c41738  1-05.dcm
d4a7e4786f4647025053d75258a452e66f7aa8f216cef87b574f64a7a70828e2  1-06.dcm
e7bc2bacee22ec2d38d2216df19c839d07d11ac1c8650efbf1b192dc0c89d69a  1-07.dcm
e94f1a6e3c549b2800f6e6565e747e6663920c779f9d09c6c8a6e0f8bf9e5e07  1-08.dcm
275349aed8e01a9db9eb030614ab01140004f9736a9438ea6d90be92b357247e  1-09.dcm
797e4e7ff5a7af84c3919b6af7eba300317a7aed23aa75af6a58e2616f244271  1-10.dcm
a530c1ebfcd77f042aa81919373f8b3dffa60ed54fea86228e9c3ed2d10a4113  1-11.dcm
184724df7001c9cc55becfcf5e9347dd6a52954de8e67abc50c683fb7a140a8e  1-12.dcm
98239cbdf125bb0d82aef051796b1e67eac7bfdc9f89669349bdfa17db101fb2  1-13.dcm
6d09572748f44152d9d142dd5ac77918c9ed7d40702450132146c301773d8976  1-14.dcm
316c244b61e4870d3063f12f82efb9dde63e721e0301a7ffa65d6036e1321c92  1-15.dcm
8907ada86e2e210a318cbd28232cc72ed04339e9f93a8fc6f6deb28f598e8c03  1-16.dcm
e9f9224352526b19442edd2ed36f9361c21f347d797b1502ab2a2057050a4970  1-17.dcm
b278ec92a2d5b10694fdc99ff687be1038b2fa20bbb83cfb4e8635101ca9b781  1-18.dcm
6124de9094763594c1d9dd89413eaaad71aacb9a339c392be714a4f502571230  1-19.dcm
832b98b8d7615a17f7ad082af6ee1493c6185e86a07192a64282d40728a4e436  1-20.dcm
6a4d56fce8f42e41d9c6b212eb4d3788114214473cbf4a622ba62b3b493f8b8b  1-21.dcm
0a48c15b1721b09b5f855dd4342e3d192c1560fc88ebdb11af01f1755df201a4  1-22.dcm
730b5fd91fc969f70eae57a3b0b2f9670488ee43dfbc96cc2fc0a4924f7fba26  1-23.dcm
d7f06cf150e8e22e863d2105250bfc471555189bae158f14dfa9a1aabcd7d1d7  1-24.dcm
f5c212d7a2c325dd2755f7dd99b2ebc40bdc9b1c06229f7b508e2594c4bae2b6  1-25.dcm
bd53ca65155716209aee40fec8c304ee9bda17ef41ed468882b89c1048ce1557  1-26.dcm
773e885afd20c596bcb3225c97f05af358f6ff1e342df72fcfaa5ddf80c656f8  1-27.dcm
80f6099ed4276bda817ad91a2380e6bf9704e76dc4a5aea3da9d41c9c14efe61  1-28.dcm
3991b74d55cf2369fe36518e50185c697846deb5c55804e7ef4bb058413d201c  1-29.dcm
bd905322dc63b28dd7b2e6199522e10583b9204da9aec6b47d7355c1d7f27690  1-30.dcm
"""),
    _Source(
        folder="ct-series/siemens-sensation10-B70f-chest",
        repo="huyenbui117/lung_CT",
        commit="520adfe9e2e8e2b8c02985b228002c5b2997e5b6",
        remote=("Lung-PET-CT-Dx/manifest-1675442780019/Lung-PET-CT-Dx/Lung_Dx-A0002/04-25-2007-NA-ThoraxA"
                "ThoraxRoutine Adult-34834/2.000000-ThoraxRoutine  8.0.0  B70f-62919"),
        licence=("CC BY 4.0, stated in the source repository (LICENSE beside the data: \"The Lung-PET-CT-Dx"
                 " collection is distributed under the Creative Commons Attribution 4.0 International "
                 "License\")."),
        attribution=("Li P. et al. (2020) A Large-Scale CT and PET/CT Dataset for Lung Cancer Diagnosis [Data "
                     "set]. The Cancer Imaging Archive. https://doi.org/10.7937/TCIA.2020.NNC2-0461. Clark K. "
                     "et al. (2013) The Cancer Imaging Archive (TCIA): Maintaining and Operating a Public "
                     "Information Repository. Journal of Digital Imaging 26(6), 1045-1057. "
                     "https://doi.org/10.1007/s10278-013-9622-7."),
        files="""
16232c24edaee9e60b620bd6c629aa19e493e56e051d0d7bd8be90d6d612ed8b  1-01.dcm
cb5268c333bdbe9691725fe83e9bf8b66c4346a9219c3194b367e1664bed1e87  1-02.dcm
7b0f434c95a0dde7e6ca40c6e009ced9820358f4132328db26de956b66e9fe23  1-03.dcm
805ecbf9c610087a3a3526546d686f2e16e9cd481c78bc83900bafa7ccbaebef  1-04.dcm
ac765fe292aeab8cb83bc1989ab3797cf01133ab6fc9db22866cd64f296ada70  1-05.dcm
3f95c35a50d87cbdee4d1f38dc80f0ae93b4745eaee4d789b0869703e9720ec1  1-06.dcm
5ffc02b8bbcdb9d9b8544d81a0eca274f7a7b8ef4d49edcf609b945362a01977  1-07.dcm
5adb30c7a1f9f7ea110efcf627f6960419918933417758396792338adb0d284e  1-08.dcm
a28680edea34f78bbc001b1a9b2d45a31759e3fa9d3acb8687b44b9a22d50a88  1-09.dcm
9d9245cadbfee945473339f63f513e15c7bc9c055b2bd12a59d43dfe0665cd40  1-10.dcm
bbe309a5a0a99b1170b8b11c1601fc331bfd3af47853cadcb25dcb5d910b441e  1-11.dcm
2e00dbacb96dfcec544abc22987af7f0777e35d5d8e870a47015f4286c80b648  1-12.dcm
5a64bde5dd236103243c77deb987468364af5294d2b90efe9df48f9656e12b01  1-13.dcm
44bdb9d6349a8f93d67f4d32f406de457360b75489e46cfd3b68e5f0bb073b9b  1-14.dcm
59363ef3f650dc7530ed2fd70aa22e0db5eb300ff7cf24f9b2289e25e640830e  1-15.dcm
c93aa4140d09b3ee79a71ca4756163358b9c791779de2d0d1b4ba37dcc2a132d  1-16.dcm
cdedf4feb05a67e59ef3f949585894158842985671656867dafc98f04ec190aa  1-17.dcm
18be6efed9ac9d09e94c9bbaa5e4e2bffbaf227136d855d843780a1b3f3a2fa0  1-18.dcm
cc10ada9aee9f5ff05c440322c56517b309907bf54c80012be276b886a32720a  1-19.dcm
47d1abcf001ff7e6a0a65a2b301ef98f3301467c29626f38b0b0d5ab674f2931  1-20.dcm
1cac25dc0473835750eefa20cf2185523a32e54b009b18e1e8b9b074088a9d44  1-21.dcm
01393141143f397d5480daf3091d2f00c8d19336ce10e807aeefc9b8b7316562  1-22.dcm
398f689bd6381f7499fe8dc555c2779ee8afa5ed7db63979a43405863930dddf  1-23.dcm
03f5697a60030e667c9bd62eeb0fb50cd1ce2994199439370be0e358705e92a4  1-24.dcm
e135017ef25bf2f13bedf95fd52a783c11391dd3a53191a6902ec9050fcb4959  1-25.dcm
ff4077c91811224a94348fbc4f803adea1338827f449385beb265b7a321b9a2a  1-26.dcm
ef2d12db4e5ec4b93878f9862c587cea3fb6c3b695cea1ce2c049b83086982b1  1-27.dcm
86ff62abc2bb917ac5b972c37c9b3d0501752655a7be6ef7a4195ecbe82c33f4  1-28.dcm
d75c42e73e6a41249b5a4489a51d567544a202fd959c1c506ea4ccf3afe20ebf  1-29.dcm
4233f506ca7949693a108da312086406643797b9dde3826f3c002be7ed5ea072  1-30.dcm
"""),
    _Source(
        folder="ct-series/siemens-sensation16-B10f-chest",
        repo="andygomez3dart/Project1",
        commit="bc2e537c71ba26226b1c680c9e602e0cac7ef861",
        remote="",
        licence=("CC BY 3.0, the licence of the TCIA collection named in the files' private tag "
                 "(0013,1010); the source repository states none."),
        attribution=("ACRIN 6688 FLT-PET Breast (ACRIN-FLT-Breast) collection, The Cancer Imaging Archive. "
                     "Clark K. et al. (2013) The Cancer Imaging Archive (TCIA): Maintaining and Operating a "
                     "Public Information Repository. Journal of Digital Imaging 26(6), 1045-1057. "
                     "https://doi.org/10.1007/s10278-013-9622-7."),
        files="""
9759fa41b862a360fbc2e35f3416fb92a45be184b13ed491df2ef52b7cd1237d  1-001.dcm
a98edf2c4b38dfaf40a781c137b3263a731371663743d68c2f88ef9d9277cf7e  1-002.dcm
daee2c666a37e77a61231690b5ff38122e8be05faa32c4111a583ff243fe8f77  1-003.dcm
70a76bfca0cb2d05d5eae45c8a03c63aecf9164851849316ebb04b66f43374ca  1-004.dcm
f2439829dfef2b9b566f4abb6c929eed7365c85bc66679e5b632a3f1bd1a70f1  1-005.dcm
8c50a0373c0eb4227222fa5afbf9ed2ddf4b973d93bc47040033810036989782  1-006.dcm
96fd24bbf8fdfb8ba9ca843b51f0910abba8c52df8728fc9da1485f950290028  1-007.dcm
e882adb1187d94c9e7eb4728eff22a7a7bfd3d5c8d49c15cddfd365aa0cc03f1  1-008.dcm
6ebdb96b7bc22f421a047d99636b698b1a9684a906f1a4ff3923e3384ea6e58f  1-009.dcm
1c32f083f444e3a6450e4a1098e46c1235bd3f711acd9a62c1c49f0d2ae5facd  1-010.dcm
8a5a027d7a2a6424580b0cb3d09b33dc461b41154ccb73ddaa4e6f12fe44e598  1-011.dcm
c71f3a5b2976a29c407ccb1161ba818d241bbe41e623206233eb74f2ef0f64da  1-012.dcm
218574a1409961eaaef205e9cae2449c0748d9ed6132e0cff8330701b22a1045  1-013.dcm
783d3f3c58c751759227720d45b6c3fd3c21b321a847a4ae3a9bf82495fd4700  1-014.dcm
ff3a89ae81ab338acb1c5a9efe29d96b52d0745e12349f0bb6a9d52632362f32  1-015.dcm
c1ec15101faca9671ae1fe91ca8efbef45c55192c03dcbd44bacf8591b4aab70  1-016.dcm
d3e4b0a56d9fed6f2ccac675bf0e34effcb4cf644ef187491de185eccc265662  1-017.dcm
ebe6e719044475f93c81b74a66dd5f70b9e0e2e894b2164b89540cff03990b27  1-018.dcm
9eab0c51f68829bc251413276caa7d6889c77a314188102bfd96ebb479d78b44  1-019.dcm
f49c6c7170d8c87fd3251da90c264ca5ef11cf8f70efe797a1435948d9b6c5f8  1-020.dcm
34aea44406df20821b7f5050cab23e0881d6eefe436efc4f011be0d19fbcc8b4  1-021.dcm
3f8b74691faa8c1d3526eef43cc8ca4bc1902c587e3fb096ac9578634b126898  1-022.dcm
ada447d3a44d09a7ed247f701bce58eed419763408b845a7c30e9b154334f9bb  1-023.dcm
4657e90e12a24082cf08564dfb101cac1b391f8ed76175d9051d5b4ff7229308  1-024.dcm
3c0e35b5bbb29151ca86b4a9ab1f4e4a4109ae12a036f7873df05a3e168d96a0  1-025.dcm
bac23b74aca9b2953c5c16334d6391f5969c797cb735d5377d15e9644f934a08  1-026.dcm
a28462fa7cabf95b876f4362166f46a66e6abcbcd68ba8a009a650ceb124a484  1-027.dcm
3cdca3097541f1df0c0f2545a00b1c15410bea36bd3614eb3c5dfd4cda692719  1-028.dcm
b616db8af2572f572f1ebcd1e53372b6d730d5bb2ea8322a567cdba903fd063e  1-029.dcm
46ca31fb867f83e79d161d88868391c0293d922e82b32390ddbb29f4491fed25  1-030.dcm
6dc260e42152bca8f91d9a30d3199178a615ad0880c59cca63bbec7c8b083603  1-031.dcm
d011be80d8fbd384dd06fb2f78c5fdc2b75279305d4d22303fcb85cd92615340  1-032.dcm
661035486ad4401ddf248873efa4c2aeb2e12602c286df76875c27d01a164dfc  1-033.dcm
dd48a949db2284bffd5ffd49bee18e063525664a1d071ef3ca6caf49bf93b92e  1-034.dcm
cadad89f79a5940da06b0190562af805d5336c4c4c076804e131482df63beaee  1-035.dcm
2c48c5d5f6a95aa37f98a7623ce60a3d68bf358ae5b958501a19de3bb2feae33  1-036.dcm
8935af65d9c29d4be537595c31a4c0e81d88c46f623059085c392e537d02a65a  1-037.dcm
e89fc462fdb6b24c000b4a26f769740fa8661f63da63f6ea1c4bb5496245c003  1-038.dcm
39a47fb3f944a8ed39c303d2346ba6cee123210b18ead4bff773bce195318225  1-039.dcm
820659d36638d885737751177df691710e074b8c8214d50646666ce80333d50b  1-040.dcm
"""),
    _Source(
        folder="dicom-edge-cases/encodings",
        repo="cornerstonejs/dicomParser",
        commit="7d2084349bf2bdaffe74021e27b286a6c295ca66",
        remote="testImages",
        licence="MIT (LICENSE beside the files).",
        attribution="",
        files="""
f6337b7553eca66589874c01f74dcd7c4ba40afeeaf5b0c1e161bfa4dcc3295f  CT1_UNC.explicit_big_endian.dcm
bc92908fb936c20b29582a3db31dd0b787246d5213bb8822dc964a45d6a65d9a  CT1_UNC.explicit_little_endian.dcm
c3371bf80c740d28b924ad22be8f82fc202ac560cceab7c349bcce2fe255e1ca  CT1_UNC.implicit_little_endian.dcm
01323491c1f1f1f8f738fa558e96ab0b07f1ca9ba70c79675e0a4beb41f156c1  LICENSE  LICENSE
d96608a547bf0a1d4da14dfd7a43a90d84dc60b200a950cfb0afd8d812d0fc79  README.md
a52454aed4bd91cecda1ee46b2b09fabb6255ce87820d50822ae9b178a607748  deflate/README.md
0029ebbba17e7c6f081408d433cd28b5d1cfee0eeb4cff509b4d972ffa9daf27  deflate/image_dfl
91b3668c9d2c0ec7089e2516fa32cb93df55f36fd62417f3ef9fa4c892f283bb  deflate/report_dfl
58930cdaf2474c5a430e892d6d627b7abbe51c446567357ad6c72f6b3f194441  deflate/wave_dfl
0a4c3aa02d1b0b4826daa5ffe85ef13be83c1433842a9a98b901e075136dd86f  encapsulated/multi-frame/CT0012.explicit_little_endian.dcm
ceb52aeaac4667c31d7dd71657ee63c1c2917e70995a891de76b917d19d57c43  encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_baseline.51.dcm
218356eb8b36023ccfd1fd14150f14dc1838cabac13dcd12189623aea88c9f39  encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_lossless.57.dcm
478a7aec246edf65daf39d20ac1ce147645346935a2b38a1d50d85044c6b565e  encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_lossless.70.dcm
4834ad62fb6e8e997f8405892f5eececd707165b25403ee0888e3d98330d6d5d  encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_ls.80.dcm
9ece508a8ac250166d8bb6d47af311bd027f8e23f20db4aeac69c265bc8bd7d0  encapsulated/multi-frame/CT0012.fragmented_no_bot_jpeg_ls.81.dcm
e781654b53b97cc71d3ef70ce6082f61a691ce36003b8c49fa4ec84e5b5956a2  encapsulated/multi-frame/CT0012.not_fragmented_bot_jpeg_ls.80.dcm
1b00256d7c369fa0a5ba3b899acf8acabb3f6a7a88768134b2517c54de5777f5  encapsulated/multi-frame/CT0012.not_fragmented_bot_rle.dcm
5ffdae361f43e67722c39ee31aeed60c6c48808183333e3880297b87d24a8c23  encapsulated/multi-frame/CT0012.not_fragmented_no_bot_jpeg_ls.80.dcm
1e95e9c8ed1998d4c01fa5fcedb06ee09d705f6e133cfc9a0858658f2771572b  encapsulated/multi-frame/CT0012.not_fragmented_no_bot_rle.dcm
8c4e4c2edafd5de7970175710744178fb2550d12a60dc386697232144257702b  encapsulated/multi-frame/IM00001.fragmented_no_bot_jpeg_baseline.50.dcm
c57b456e1caf7ada65111b151b679898d9493134c8a4cc2e3d73bda38e2fd780  encapsulated/multi-frame/IM00001.implicit_little_endian.dcm
010c31b281e0f843e2346b52ac205cebcc5e7b5607061d0948047af2282b526b  encapsulated/multi-frame/README.md
bc92908fb936c20b29582a3db31dd0b787246d5213bb8822dc964a45d6a65d9a  encapsulated/single-frame/CT1_UNC.explicit_little_endian.dcm  testImages/CT1_UNC.explicit_little_endian.dcm
b03f871b0c08f3a481e1de6ea91e204750c43b76d7e6891c57a8dc36ce173c8b  encapsulated/single-frame/CT1_UNC.fragmented_bot_jpeg_ls.80.dcm
795283d0de9159fbdbf0b453b5eef4cd7e928caa07af05b852e9e0c8e77438c8  encapsulated/single-frame/CT1_UNC.fragmented_no_bot_jpeg_ls.80.dcm
636e57f810f043ffeb7ed3cdeec8049d42243a45cb92008041bbb17b9e0d9dbc  encapsulated/single-frame/CT1_UNC.not_fragmented_bot_jpeg_ls.80.dcm
795283d0de9159fbdbf0b453b5eef4cd7e928caa07af05b852e9e0c8e77438c8  encapsulated/single-frame/CT1_UNC.not_fragmented_no_bot_jpeg_ls.80.dcm  testImages/encapsulated/single-frame/CT1_UNC.fragmented_no_bot_jpeg_ls.80.dcm
b1a42a41a8dbfc30efaf2c5aa68d337997712a386c6673c322583aea742985bb  encapsulated/single-frame/README.md
"""),
    _Source(
        folder="dicom-edge-cases/ge-gantry-tilt-head",
        repo="neurolabusc/dcm_qa_ct",
        commit="d03e30e4c5c8ad07bf16422b96efc3e91e233dc5",
        remote="In/GE",
        licence="BSD-2-Clause (LICENSE beside the files).",
        attribution="",
        files="""
7c911fa70882b69d11d5e8fef5dc6ed46c5d57a1459f709c2777a4d0d5b05e31  01.dcm
4a1879c846d749abf13f0cb331f6bf7db6522be1e23defec03836eff0d9ce246  02.dcm
ed757af2d14d1d22d4bdcf8f3db2a279ec9f4d6168c738e112f49dcd9981e526  03.dcm
8dad859e197c49133b51569c02aaaf47cef9356a3f0b6c1a0bcf61ac1dadbd1b  04.dcm
f277df2f44b70ab664f10bddc9cc7463c34b85032d19004ebecee8f23f494cdb  05.dcm
aab122ee71cfba687a22698797f3aa9fd6b889e2e5c1ec9c673f9bf695738708  06.dcm
4fa42d924ee3c7050ed5a9727995eff287f8cd7d7efd983977f5d0258b0e885b  07.dcm
dc5d251e384470ca76cdef5f58783371c2e7b6e041c7aa135f44ea25624559c0  08.dcm
157993f97de293b816d3378a819765474f267aca5b6ca73385226ea231111575  09.dcm
1f8bcf2741776c8c61e1b038d941851ccd162a591213c29c1741a12880066181  10.dcm
5cf4e3966e118e183fc38816c83947c717c8f05892c997e23c1a5dc957d55b6c  11.dcm
dd4c61d73825467e2cc454f2e2af1a935ecb91ea8f2d2969ff7dd3d23cec5460  12.dcm
6b92cbe0a245b631eb3afbfc2f55e3906f3518104aac4c83d54be1f2f11932a3  13.dcm
ab14c5db6565c58142bac8d29aa74275e83fb5e9cb8ff32f37b4861b4e76a56a  14.dcm
951a639c564030c09cd98eaccfe647f51a5d274883e70c2c83cac13ba5e07745  15.dcm
76f06b7ab3ef7faf0839c2e9bc56314c8af9b03cc069aa301663400a3b346181  16.dcm
26fbc293b2ca7a0c7b20892536cf8b50334b460ff482f67561c3ded8c8dcd0b8  17.dcm
44dd44a71e9a7e7e77693f26175914ca1f0d99962830ae24df4e7ae73f7a979c  18.dcm
a2039498d20df42818422bbaab6c24bf5cd35aad81f3752412489afc83e311b3  19.dcm
d454a9d9d55e704f90734a8038276b90ab0ebb30ac5203b10ba1aba74e5e5485  20.dcm
c17ea7913addeab88c88eeed7818ed15d2b049e4af928cddd3483bec32a90cf0  21.dcm
f03c5fb344e5d9c1f149f4709686d666d3e20e41b3e870b7dd66656f2dc86e8b  22.dcm
2daa0049d8b1e5f875496dce808e6f59a50d6c45f1abe6c2f91c2bf3b7a07089  23.dcm
27aa99676716259ac62a5bf4b09f06df8e031b2b6529eceff824df522b09d41c  24.dcm
cd6a92936929f9ddb35cb2087a8fd26506caf7adc2ddde5cd7cf7c24f25071d1  25.dcm
8cb43cbaa03aae6fcb5092128173d1c6ba2efcf04d9ef34d06456a8f47e2b948  26.dcm
86c35a9842c8fd3106d907fcabd7d5b560110a66f137e08c2f3764abbdbe7b4e  27.dcm
c24147eb02627f17d039df7df624ed0595211078044a03e28f82f2b6daef57dc  28.dcm
8b1db0b9872f34012349c1ba3b230d8c757aad3fa83bf85867e21465c3730e9f  LICENSE  LICENSE
"""),
    _Source(
        folder="dicom-edge-cases/transfer-syntaxes",
        repo="cornerstonejs/cornerstoneWADOImageLoader",
        commit="2d947aff9d8430bd9c1a1ee4c3a1d105e65708f3",
        remote="examples/test-images",
        licence="MIT (the repository's licence).",
        attribution="",
        files="""
ceb52aeaac4667c31d7dd71657ee63c1c2917e70995a891de76b917d19d57c43  CT0012.fragmented_no_bot_jpeg_baseline.51.dcm
121f77705f8e26eefaacafe0d7becc8dd42c9b5553e3dcb904283d9a96c9f16a  CT1_J2KR
95620ff3d0e506226853507d4a44c4b7ac6dc49fd1dd13460ed97a47e184ad03  CT2_J2KR
d743aa9631b9a83009947f730a925176b5106c8da3c0f45604b7b0e4713b0b2d  CTImage.dcm
5ae125c974c2a12d8dd6ff2e43640f0a5e4b22a6d3c74832ba067963d1f24f49  CTImage.dcm_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm
98bc8dcd7c9723431c3125d7cc827c55b90fd286879eaa9f3dae99b3bd5b0a37  CTImage.dcm_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm
a087f3deeda7527704f630e4b41c72a5f5dccdafe4adf6499768b446d363422b  CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm  testImages/CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm
2a4e78785aae329de88f703d7b66c2f2ec6062915ed6c3aef6d9d3a202acbd6c  CTImage.dcm_JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91.dcm  testImages/CTImage.dcm_JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91.dcm
cf6df3b73c8951b58d4b0747c4c0a598b4389f87f28c75d559947357d5682447  CTImage.dcm_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm
645b2afb1001c2dc9ee35a8b21915f2ff1e7c042934b839493a72e073ac82f82  CTImage.dcm_JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81.dcm  testImages/CTImage.dcm_JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81.dcm
d7f7d0e450b49850c3476f75d6c1db949f64c905bf6702c19ffd1c34f4a1e860  CTImage.dcm_JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm
e7d35e6dae76fb71d7b8b5fb335b616f1a34a3b79260154190c2609a65ac4638  CTImage.dcm_JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm
2e9cc7e03eaf1e62eca830570a77198491c31791158d29a2c3da29abeccd357c  CTImage.dcm_JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57.dcm
e116a8804d1b881608e24ade56707ff477c93a5f94a57f04396ecb6402971c6e  CTImage.dcm_JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50.dcm  testImages/CTImage.dcm_JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50.dcm
903381fc760b3556180159042f151c23a1365e8fbab51a3368f2421177f0fc08  CTImage.dcm_JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm
e3f7dbd24e91a4d01506b5d56669efac6d62fc4036398963847de0eb69ebc8e6  CTImage.dcm_JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm
3e0c4e4fd95475471ea9c4c58b290a750dcf130a347a6d6cec35d204cb0c64eb  CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm
f8e13474bd7ed98c0ce11f51dfc5199928276e3fca123b12ec8ddc2f67d23111  CTImage.dcm_LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm
1f9e8f297b933346af59e8ae35cf38928560eba2d9ebd53d52d793e4991d564c  CTImage.dcm_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm
01323491c1f1f1f8f738fa558e96ab0b07f1ca9ba70c79675e0a4beb41f156c1  LICENSE  LICENSE
"""),
    _Source(
        folder="torso-ct-nifti",
        repo="wasserth/TotalSegmentator",
        commit="0e65a448d557382b1e925276212b3bec7f5aff83",
        remote="tests/reference_files",
        licence=("Apache-2.0 for the repository; the TotalSegmentator data set is CC BY 4.0 (Wasserthal J."
                 " et al. (2023) TotalSegmentator: Robust Segmentation of 104 Anatomic Structures in CT "
                 "Images. Radiology: Artificial Intelligence. https://doi.org/10.1148/ryai.230024)."),
        attribution="",
        files="""
c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4  LICENSE  LICENSE
f776ecfa1326e7e21a8c30e5530f517c16f16a59a68fc06e8119cefc7c3b87a0  aorta_crop_ct.nii.gz  tests/reference_files/aorta_report/test_result/models/ct_cropped.nii.gz
dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1  example_ct.nii.gz
"""),
)

#: Files of the shared data without a public URL (provenance notes written for it, and a licence
#: file not in its repository at the pinned commit).
LOCAL_ONLY: tuple[str, ...] = ("README.md", "ct-series/README.md", "chest-ct-dicom/LICENSE") + tuple(
    f"{s.folder}/SOURCE.md" for s in _SOURCES)


#: path under the data root -> (sha256, path in the repository, source)
_TABLE: dict[str, tuple[str, str, _Source]] = {
    rel: (sha, path, s) for s in _SOURCES for rel, sha, path in s.entries()}
#: path under the data root -> sha256 of every file with a public URL
REGISTRY: dict[str, str] = {rel: sha for rel, (sha, _, _) in _TABLE.items()}


def base_url() -> str:
    """``$JOINTRECON_DATA_BASE_URL`` or :data:`DEFAULT_BASE_URL`, without a trailing slash."""
    return (os.environ.get("JOINTRECON_DATA_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def url(rel: str) -> str:
    """The public URL of a registered file (``rel``: its path under the data root)."""
    _, path, source = _TABLE[rel]
    return f"{base_url()}/{source.repo}/{source.commit}/{quote(path)}"


def cache_dir() -> Path:
    """Where ``jointrecon fetch-test-data`` puts the data: ``$JOINTRECON_DATA_CACHE`` or the
    per-user cache folder."""
    env = os.environ.get("JOINTRECON_DATA_CACHE")
    if env:
        return Path(env)
    import pooch

    return Path(pooch.os_cache("napari-jointrecon")) / "test-data"


def _default_checkout() -> Path:
    return Path(__file__).resolve().parents[1]


def candidates(checkout: str | Path | None = None) -> list[tuple[str, Path | None]]:
    """The look-up places in order, as (label, folder); the folder is None where unset.

    ``checkout``: the folder whose parent holds ``shared/data`` (default: the source checkout
    this module lies in).
    """
    env = os.environ.get("JOINTRECON_SHARED_DATA")
    beside = Path(checkout) if checkout is not None else _default_checkout()
    return [("$JOINTRECON_SHARED_DATA", Path(env) if env else None),
            ("../shared/data", beside.resolve().parent / "shared" / "data"),
            ("the download cache", cache_dir())]


def missing_files(root: Path) -> list[str]:
    """Registered and local-only files that ``root`` lacks (existence only; the download checks
    the contents)."""
    return [rel for rel in (*_TABLE, *LOCAL_ONLY) if not (root / rel).is_file()]


def locate(checkout: str | Path | None = None) -> Path | None:
    """The first look-up place that holds every file, or None."""
    for _, root in candidates(checkout):
        if root is not None and root.is_dir() and not missing_files(root):
            return root
    return None


def not_found_message(checkout: str | Path | None = None) -> str:
    """One sentence naming every look-up place, what it lacks, and how to get the data."""
    total = len(_TABLE) + len(LOCAL_ONLY)
    places = []
    for label, folder in candidates(checkout):
        if folder is None:
            places.append(f"{label} (not set)")
        elif not folder.is_dir():
            places.append(f"{label} ({folder}: no such folder)")
        else:
            lacking = missing_files(folder)
            example = f", e.g. {lacking[0]}" if 0 < len(lacking) < total else ""
            places.append(f"{label} ({folder}: {len(lacking)} of {total} files missing{example})")
    return (f"real CT test data not found in {', '.join(places[:-1])} or {places[-1]}: run "
            "`jointrecon fetch-test-data` (about 300 MB) or set JOINTRECON_SHARED_DATA to a copy of it")


def require(checkout: str | Path | None = None) -> Path:
    """:func:`locate`, or :class:`DataNotFound` with :func:`not_found_message`."""
    root = locate(checkout)
    if root is None:
        raise DataNotFound(not_found_message(checkout))
    return root


def _stand_in(rel: str) -> str:
    """The text written for a local-only file: what the registry knows of its folder."""
    by_folder = {s.folder: s for s in _SOURCES}
    note = ("Written by `jointrecon fetch-test-data` (napari-jointrecon). The project's original "
            "provenance file has no public URL; this one is made from the download registry.\n")
    folder = rel.rsplit("/", 1)[0] if "/" in rel else ""
    if rel.endswith("LICENSE"):
        s = by_folder[folder]
        spdx = s.licence.split()[0]
        return (f"{s.licence}\n\nThe licence of the files' source, {s.repo} at {s.commit}: {s.tree_url}\n"
                f"Its text: https://spdx.org/licenses/{spdx}.html\n\n{note}")
    if rel.endswith("SOURCE.md"):
        s = by_folder[folder]
        lines = [f"# {folder}", "", note, f"Source: GitHub repository `{s.repo}`, commit `{s.commit}`",
                 f"({s.tree_url}).", "", f"Licence: {s.licence}"]
        if s.attribution:
            lines.append(f"Attribution: {s.attribution}")
        lines += ["", "| file here | SHA-256 | path in the repository |", "| --- | --- | --- |"]
        lines += [f"| `{r[len(folder) + 1:]}` | `{sha}` | `{path}` |" for r, sha, path in s.entries()]
        return "\n".join(lines) + "\n"
    sub = [s for s in _SOURCES if s.folder.startswith(folder)]
    lines = [f"# Real CT data{' (' + folder + ')' if folder else ''}", "", note,
             "| folder | source | licence |", "| --- | --- | --- |"]
    lines += [f"| `{s.folder}/` | {s.tree_url} | {re.match(r'[^,;(]*', s.licence)[0].strip()} |" for s in sub]
    return "\n".join(lines) + "\n"


def fetch_test_data(cache: str | Path | None = None, *, only: Iterable[str] = (), workers: int = 4,
                    retries: int = 2, log: Callable[[str], None] = print) -> Path:
    """Download the registered files (checksums verified) into ``cache`` and return it.

    Parameters
    ----------
    cache
        The folder (default :func:`cache_dir`); it gets the layout of ``../shared/data``.
    only
        Paths under the data root, or their folders (``"torso-ct-nifti"``), to fetch instead of all.
    workers
        Parallel downloads.
    retries
        Further tries of a file whose download failed or whose checksum did not match.
    log
        Receives progress lines.

    Raises
    ------
    ValueError
        ``only`` names nothing in the registry, or files failed to download or did not match
        their SHA-256 (such files are not kept; the message names each).
    """
    import pooch

    root = Path(cache) if cache is not None else cache_dir()
    prefixes = [p.strip("/") for p in only]

    def wanted(rel: str) -> bool:
        return not prefixes or any(rel == p or rel.startswith(p + "/") for p in prefixes)

    names = [rel for rel in _TABLE if wanted(rel)]
    if not names:
        raise ValueError(f"nothing in the test-data registry under {', '.join(prefixes)}")
    fetcher = pooch.create(path=root, base_url=base_url() + "/", retry_if_failed=retries,
                           registry={rel: f"sha256:{_TABLE[rel][0]}" for rel in names},
                           urls={rel: url(rel) for rel in names})
    pooch.get_logger().setLevel("WARNING")
    for rel in names:  # pooch creates a missing folder without exist_ok: not from several threads
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    log(f"fetching {len(names)} files into {root} from {base_url()}")

    def one(rel: str) -> str | None:
        try:
            fetcher.fetch(rel)
        except Exception as exc:  # noqa: BLE001 - every failure is reported with its file
            return f"{rel}: {exc}"
        return None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        failures = [f for f in pool.map(one, names) if f]
    for rel in LOCAL_ONLY:
        if wanted(rel) and not (root / rel).exists() and (root / rel).parent.is_dir():
            (root / rel).write_text(_stand_in(rel))
    if failures:
        raise ValueError(f"{len(failures)} of {len(names)} files were not fetched (nothing kept for "
                         "them):\n  " + "\n  ".join(failures))
    log(f"{len(names)} files in {root}, SHA-256 verified")
    return root
