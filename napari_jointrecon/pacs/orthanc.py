"""A local Orthanc PACS for trying the PACS features and for the tests.

Starts the ``Orthanc`` executable (Debian: ``apt-get install orthanc orthanc-dicomweb``) with a
generated configuration: HTTP and DICOM on free ports of 127.0.0.1 (or the ports given), a
temporary storage folder, the DICOMweb plugin enabled, optional HTTP basic auth, and the DICOM
peers (AE title -> port) it accepts C-ECHO/C-FIND/C-GET/C-STORE from. It is stopped by its PID,
never through a system service::

    python -m napari_jointrecon.pacs.orthanc ../shared/data/chest-ct-dicom

starts one on ports 8042 (DICOMweb at http://127.0.0.1:8042/dicom-web) and 4242 (AE ORTHANC), or
free ones where those are taken (the system's own Orthanc service, for example), uploads the
folder's DICOM files, prints the settings for the PACS dock and runs until Ctrl-C.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import requests

__all__ = ["OrthancServer", "orthanc_problem", "find_orthanc", "free_port"]

_PLUGIN_NAMES = ("libOrthancDicomWeb.so",)
_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc", "/usr/local/share/orthanc/plugins")


def find_orthanc() -> tuple[str | None, str | None]:
    """(path of the Orthanc executable, path of the DICOMweb plugin); None for what is missing."""
    exe = shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.access(p, os.X_OK)), None)
    plugin = None
    for folder in (os.environ.get("ORTHANC_PLUGINS", ""), *_PLUGIN_DIRS):
        if not folder:
            continue
        for name in _PLUGIN_NAMES:
            candidates = sorted(Path(folder).glob(name + "*")) if Path(folder).is_dir() else []
            if candidates:
                plugin = str(candidates[0])
                break
        if plugin:
            break
    return exe, plugin


def orthanc_problem() -> str:
    """Why a local Orthanc with DICOMweb cannot be started here ('' when it can)."""
    exe, plugin = find_orthanc()
    if exe is None:
        return ("Orthanc is not installed: `apt-get install orthanc orthanc-dicomweb` "
                "(Debian/Ubuntu, as root; scripts/setup.sh does it)")
    if plugin is None:
        return ("the Orthanc DICOMweb plugin is not installed: `apt-get install orthanc-dicomweb` "
                "(or set ORTHANC_PLUGINS to the folder holding libOrthancDicomWeb.so)")
    return ""


def free_port(preferred: int = 0) -> int:
    """``preferred`` when it is free on 127.0.0.1 now, else any free port."""
    for port in ((preferred, 0) if preferred else (0,)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError("no free TCP port on 127.0.0.1")


class OrthancServer:
    """One Orthanc process with its own configuration and storage.

    Parameters
    ----------
    root : path, optional
        Folder for the configuration, storage and log (a new temporary folder by default; removed
        by :meth:`stop` when it was made here).
    user, password : str, optional
        Enable HTTP basic authentication with this one user.
    aet : str
        Orthanc's own AE title.
    peers : dict, optional
        AE title -> port of the DICOM peers on 127.0.0.1 allowed to query, retrieve and store.
    http_port, dicom_port : int, optional
        Fixed ports (free ones are chosen by default).
    storage_cache_mb : int
        Orthanc's in-memory cache of stored files (0: every read goes to the storage folder).
    """

    def __init__(self, root: str | os.PathLike | None = None, *, user: str | None = None,
                 password: str | None = None, aet: str = "ORTHANC", peers: dict[str, int] | None = None,
                 http_port: int | None = None, dicom_port: int | None = None, storage_cache_mb: int = 128):
        problem = orthanc_problem()
        if problem:
            raise RuntimeError(problem)
        self._exe, self._plugin = find_orthanc()
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="jointrecon-orthanc-")) if root is None else Path(root)
        self.user, self.password, self.aet = user, password, aet
        self.peers = dict(peers or {})
        self.http_port = http_port or free_port()
        self.dicom_port = dicom_port or free_port()
        self.storage_cache_mb = storage_cache_mb
        self.process: subprocess.Popen | None = None

    # addresses -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """Orthanc's REST root."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    @property
    def auth(self) -> tuple[str, str] | None:
        return (self.user, self.password) if self.user else None

    def config(self) -> dict:
        """The Orthanc configuration this server runs with."""
        storage = self.root / "storage"
        return {
            "Name": "napari-jointrecon",
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "StorageCompression": False,
            "MaximumStorageCacheSize": self.storage_cache_mb,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": True,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomCheckModalityHost": True,
            "DicomScpTimeout": 10,
            "DicomScuTimeout": 5,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": bool(self.user),
            "RegisteredUsers": {self.user: self.password} if self.user else {},
            "HttpServerEnabled": True,
            "HttpDescribeErrors": True,
            "HttpCompressionEnabled": False,
            "HttpThreadsCount": 8,
            "ConcurrentJobs": 1,
            "SaveJobs": False,
            "OverwriteInstances": False,
            "StableAge": 1,
            "Plugins": [self._plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False,
                         "Host": "127.0.0.1", "Ssl": False, "StudiesMetadata": "MainDicomTags",
                         "SeriesMetadata": "Full"},
            "DicomModalities": {
                aet.lower(): {"AET": aet, "Host": "127.0.0.1", "Port": port, "AllowEcho": True,
                              "AllowFind": True, "AllowGet": True, "AllowMove": True, "AllowStore": True}
                for aet, port in self.peers.items()},
        }

    # life cycle ------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> OrthancServer:
        """Start Orthanc and wait until its REST API answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "storage").mkdir(exist_ok=True)
        config = self.root / "orthanc.json"
        config.write_text(json.dumps(self.config(), indent=2))
        config.chmod(0o600)  # it holds the test user's password
        self._log = open(self.root / "orthanc.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen([self._exe, str(config)], stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                code = self.process.poll()
                if code is not None:
                    tail = (self.root / "orthanc.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"Orthanc exited with code {code}:\n{tail}")
                try:
                    if requests.get(f"{self.url}/system", auth=self.auth, timeout=1).ok:
                        return self
                except requests.RequestException:
                    pass
                time.sleep(0.1)
            raise RuntimeError(f"Orthanc did not answer on {self.url} within {timeout:g} s")
        except BaseException:  # Ctrl-C included: it runs in its own session, so nothing else stops it
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the process by its PID (SIGTERM, then SIGKILL after 10 s) and remove a temporary root."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        log = getattr(self, "_log", None)
        if log is not None:
            log.close()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # REST helpers ----------------------------------------------------------------------------
    def upload(self, files: Iterable[str | os.PathLike]) -> list[dict]:
        """POST each DICOM file to Orthanc; returns Orthanc's answers (ID, ParentSeries, ...)."""
        answers = []
        with requests.Session() as session:
            session.auth = self.auth
            for f in files:
                r = session.post(f"{self.url}/instances", data=Path(f).read_bytes(), timeout=30)
                r.raise_for_status()
                answers.append(r.json())
        return answers

    def lookup(self, uid: str) -> list[dict]:
        """Orthanc's resources with this DICOM UID."""
        r = requests.post(f"{self.url}/tools/lookup", data=uid, auth=self.auth, timeout=10)
        r.raise_for_status()
        return r.json()

    def get(self, path: str):
        r = requests.get(f"{self.url}/{path.lstrip('/')}", auth=self.auth, timeout=10)
        r.raise_for_status()
        return r.json()

    def delete(self, path: str) -> None:
        requests.delete(f"{self.url}/{path.lstrip('/')}", auth=self.auth, timeout=10).raise_for_status()


def main(argv: list[str] | None = None) -> int:
    import argparse

    from ..io.dicom import is_dicom_file

    parser = argparse.ArgumentParser(prog="python -m napari_jointrecon.pacs.orthanc",
                                     description="Start a local Orthanc with DICOMweb and upload DICOM folders.")
    parser.add_argument("folders", nargs="*", help="DICOM folders or files to upload")
    parser.add_argument("--http-port", type=int, help="default 8042, or a free port when it is taken")
    parser.add_argument("--dicom-port", type=int, help="default 4242, or a free port when it is taken")
    parser.add_argument("--aet", default="ORTHANC")
    parser.add_argument("--peer", default="JOINTRECON", help="the AE title of napari-jointrecon (C-GET/C-STORE)")
    parser.add_argument("--storage", help="keep the storage in this folder (default: a temporary one)")
    args = parser.parse_args(argv)

    def stop_on_term(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop_on_term)  # `kill PID` stops Orthanc too, like Ctrl-C
    server = OrthancServer(args.storage, aet=args.aet, peers={args.peer: free_port()},
                           http_port=args.http_port or free_port(8042),
                           dicom_port=args.dicom_port or free_port(4242)).start()
    try:
        files = []
        for item in args.folders:
            p = Path(item)
            files += [f for f in sorted(p.rglob("*")) if f.is_file() and is_dicom_file(f)] if p.is_dir() else [p]
        if files:
            server.upload(files)
        print(f"Orthanc {server.get('system')['Version']} (PID {server.process.pid}), {len(files)} file(s) uploaded")
        print(f"  DICOMweb: {server.dicomweb_url}")
        print(f"  DIMSE: AE {server.aet} at 127.0.0.1:{server.dicom_port}, calling AE {args.peer}")
        print(f"Ctrl-C (or kill {os.getpid()}) stops it.")
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
