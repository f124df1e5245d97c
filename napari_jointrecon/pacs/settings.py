"""PACS server settings: what is remembered between sessions, and where the secret goes.

The settings file (``pacs.json`` in the user's config folder, or ``$JOINTRECON_CONFIG_DIR``) holds
only non-secret fields: protocol, DICOMweb URL, auth kind, user name, AE titles, host, port,
timeout. A password or token goes to the system keyring when ``keyring`` has a working backend
(macOS Keychain, Windows Credential Locker, Secret Service), else it is kept in memory for this
session only and asked for again next time. :func:`redact` removes credentials from any text shown
or logged.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["ServerSettings", "settings_path", "load_settings", "save_settings", "store_secret",
           "load_secret", "forget_secret", "keyring_available", "redact", "PROTOCOLS", "AUTH_KINDS"]

PROTOCOLS = ("dicomweb", "dimse")
AUTH_KINDS = ("none", "basic", "bearer")
_KEYRING_SERVICE = "napari-jointrecon-pacs"
#: secrets of this session: key -> secret (never written anywhere)
_SESSION: dict[str, str] = {}


@dataclass
class ServerSettings:
    """How to reach one PACS.

    Attributes
    ----------
    protocol : str
        ``"dicomweb"`` (QIDO-RS, WADO-RS, STOW-RS) or ``"dimse"`` (C-ECHO, C-FIND, C-GET, C-STORE).
    url : str
        DICOMweb base URL, e.g. ``http://localhost:8042/dicom-web``. Credentials written into it
        (``user:password@``) are moved out: the user name to ``username``, the password to ``secret``.
    auth : str
        ``"none"``, ``"basic"`` (user name and password) or ``"bearer"`` (a token).
    username : str
        The basic-auth user.
    host, port, called_ae : str, int, str
        The DIMSE server (its AE title is the called AE).
    calling_ae : str
        This application's AE title, which the PACS must know (for C-GET it sends the images back
        over the same association, so no port of ours needs to be open).
    timeout : float
        Seconds to wait for a connection or an association; a server may stay silent in an answer
        four times as long (at least 10 s).
    secret : str
        The password or token; never written to the settings file, never shown (``repr`` omits it).
    """

    protocol: str = "dicomweb"
    url: str = ""
    auth: str = "none"
    username: str = ""
    host: str = "127.0.0.1"
    port: int = 4242
    called_ae: str = "ORTHANC"
    calling_ae: str = "JOINTRECON"
    timeout: float = 4.0
    secret: str = field(default="", repr=False, compare=False)

    def __post_init__(self) -> None:
        self.protocol = (self.protocol or "dicomweb").strip().lower()
        self.auth = (self.auth or "none").strip().lower()
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol {self.protocol!r}: use one of {', '.join(PROTOCOLS)}")
        if self.auth not in AUTH_KINDS:
            raise ValueError(f"auth {self.auth!r}: use one of {', '.join(AUTH_KINDS)}")
        self.url, user, password = _split_credentials(self.url)
        self.username = self.username or user
        if password:
            self.secret = self.secret or password
            if self.auth == "none":
                self.auth = "basic"
        self.port = int(self.port)
        self.timeout = float(self.timeout)
        self.called_ae, self.calling_ae = self.called_ae.strip(), self.calling_ae.strip()

    def problem(self) -> str:
        """Why these settings cannot be used ('' when they can)."""
        if self.protocol == "dicomweb":
            if not re.match(r"https?://[^/]", self.url):
                return "Give the DICOMweb URL (http://host:port/path, e.g. http://localhost:8042/dicom-web)."
            if self.auth == "basic" and not self.username:
                return "Give the user name for basic authentication."
            if self.auth != "none" and not self.secret:
                return f"Give the {'token' if self.auth == 'bearer' else 'password'}."
            if self.auth != "none" and not self.secret.isprintable():  # it goes into an HTTP header
                return (f"The {'token' if self.auth == 'bearer' else 'password'} holds a line break or another "
                        "control character: paste it again.")
            return ""
        if not self.host:
            return "Give the PACS host name or address."
        if not 0 < self.port < 65536:
            return f"Port {self.port} is not a TCP port (1-65535)."
        for what, ae in (("PACS AE title", self.called_ae), ("own AE title", self.calling_ae)):
            if not ae or len(ae) > 16 or not ae.isascii() or "\\" in ae:
                return f"The {what} {ae!r} must be 1-16 ASCII characters."
        return ""

    def label(self) -> str:
        """Where these settings point (no credentials)."""
        if self.protocol == "dicomweb":
            who = f"{self.username}@" if self.auth == "basic" and self.username else ""
            return f"DICOMweb {who}{self.url}" + (" (token)" if self.auth == "bearer" else "")
        return f"DIMSE {self.called_ae}@{self.host}:{self.port} as {self.calling_ae}"

    def secret_key(self) -> str:
        """The keyring entry's name: the server and the user, never the secret."""
        where = self.url if self.protocol == "dicomweb" else f"{self.host}:{self.port}"
        return f"{self.protocol}|{self.auth}|{where}|{self.username}"

    def to_dict(self) -> dict:
        """The non-secret fields (a URL changed after construction loses any ``user:password@``)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "secret"}
        data["url"] = _split_credentials(data["url"])[0]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ServerSettings:
        known = {f.name for f in fields(cls)} - {"secret"}
        return cls(**{k: v for k, v in data.items() if k in known})

    def with_secret(self, secret: str) -> ServerSettings:
        return replace(self, secret=secret)


def _split_credentials(url: str) -> tuple[str, str, str]:
    """(``url`` without ``user:password@`` and without a trailing slash, user, password)."""
    parts = urlsplit(url.strip()) if url else None
    if parts is None:
        return "", "", ""
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])  # host and port as given (IPv6 too)
    return urlunsplit(parts).rstrip("/"), user, password


def settings_path() -> Path:
    """``$JOINTRECON_CONFIG_DIR/pacs.json``, else the user config folder's (platformdirs)."""
    env = os.environ.get("JOINTRECON_CONFIG_DIR")
    if env:
        return Path(env) / "pacs.json"
    import platformdirs

    return Path(platformdirs.user_config_dir("napari-jointrecon", appauthor=False)) / "pacs.json"


def load_settings() -> ServerSettings:
    """The saved settings, with the secret from this session or the keyring (defaults when none)."""
    path = settings_path()
    try:
        data = json.loads(path.read_text())
        settings = ServerSettings.from_dict(data.get("server", {}))
    except (OSError, ValueError, TypeError, AttributeError):
        settings = ServerSettings()
    if settings.auth != "none":
        settings.secret = load_secret(settings) or ""
    return settings


def save_settings(settings: ServerSettings, *, remember_secret: bool = True) -> str:
    """Write the non-secret fields; keep the secret in the keyring, or in memory for this session.

    Returns where the secret went: ``"keyring"``, ``"session"`` or ``""`` (none).
    """
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"version": 1, "server": settings.to_dict()}, indent=2))
    os.replace(tmp, path)
    if settings.auth != "none" and settings.secret:
        return store_secret(settings, settings.secret, persist=remember_secret)
    return ""


def _keyring():
    """The keyring module when it has a usable backend, else None."""
    try:
        import keyring
        from keyring.backends import fail
    except Exception:  # noqa: BLE001 - keyring is optional, any import failure means none
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:  # noqa: BLE001
        return None
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 0) <= 0:
        return None
    chain = getattr(backend, "backends", None)
    if chain is not None and not chain:
        return None
    # keyrings.alt's file backends keep the secret in a plain (or base64) file, or prompt on the
    # console for a file password: neither is a system keyring
    if any(type(b).__module__.startswith("keyrings.alt") for b in (backend, *(chain or ()))):
        return None
    return keyring


def keyring_available() -> bool:
    return _keyring() is not None


def store_secret(settings: ServerSettings, secret: str, *, persist: bool = True) -> str:
    """Keep a password or token: in the keyring (``persist`` and one works), else for this session."""
    key = settings.secret_key()
    _SESSION[key] = secret
    kr = _keyring() if persist else None
    if kr is not None:
        try:
            kr.set_password(_KEYRING_SERVICE, key, secret)
            return "keyring"
        except Exception:  # noqa: BLE001 - a locked or broken keyring: keep it for the session
            pass
    return "session"


def load_secret(settings: ServerSettings) -> str | None:
    key = settings.secret_key()
    if key in _SESSION:
        return _SESSION[key]
    kr = _keyring()
    if kr is None:
        return None
    try:
        return kr.get_password(_KEYRING_SERVICE, key)
    except Exception:  # noqa: BLE001
        return None


def forget_secret(settings: ServerSettings) -> None:
    key = settings.secret_key()
    _SESSION.pop(key, None)
    kr = _keyring()
    if kr is not None:
        try:
            kr.delete_password(_KEYRING_SERVICE, key)
        except Exception:  # noqa: BLE001 - nothing stored
            pass


_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]*)@")
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?\s*(?:basic|bearer)\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str, *secrets: str) -> str:
    """``text`` without credentials: URL passwords, Authorization headers, and the given and this
    session's secrets (each replaced by ``***``)."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(text))
    text = _AUTH_HEADER.sub(r"\1***", text)
    given = {s for s in (*secrets, *_SESSION.values()) if s and len(s) >= 3}
    forms = given | {repr(s)[1:-1] for s in given}  # escaped, as an exception's repr quotes it
    for secret in sorted(forms, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
