"""Write the repository's sample data (the thorax phantom as DICOM and NIfTI) into sample_data/.

Run: python scripts/make_sample_data.py  (idempotent: existing outputs are replaced)
"""

from __future__ import annotations

import shutil
from pathlib import Path

from napari_jointrecon.io.write import write_dicom_series, write_nifti
from napari_jointrecon.phantom import make_thorax_phantom

OUT = Path(__file__).resolve().parents[1] / "sample_data"


def main() -> None:
    volume = make_thorax_phantom(2.5, seed=0)
    volume = volume.with_hu(volume.hu.round())  # whole HU: stored exactly, small files
    dicom = OUT / "thorax_phantom_dicom"
    if dicom.exists():
        shutil.rmtree(dicom)
    write_dicom_series(volume, dicom, description="Thorax phantom 2.5 mm (seed 0)")
    write_nifti(volume, OUT / "thorax_phantom.nii.gz", overwrite=True)
    print(f"wrote {dicom} and {OUT / 'thorax_phantom.nii.gz'}: {volume.shape} at {volume.spacing} mm")


if __name__ == "__main__":
    main()
