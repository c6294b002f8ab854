"""Who this site is: an Ed25519 key pair made on first use (``<home>/federation/site.key``,
readable by its owner only), the site id derived from its public key, a name and a URL.

Sites know each other by public key. A partner signs every request to its coordinator and the
coordinator signs every answer (:func:`request_text`, :func:`response_text`): neither keeps a
secret of the other, a request cannot be replayed to another coordinator, and a coordinator
that is not the one a partner joined cannot answer for it."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from kahu.errors import AuthenticationFailed, StorageError

KEY_FILE = "site.key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def site_id_of(public_key: str) -> str:
    """A site's id: the first 32 hex digits of the SHA-256 of its raw public key."""
    return hashlib.sha256(_unb64(public_key)).hexdigest()[:32]


def verify(public_key: str, text: bytes, signature: str) -> None:
    """Raise :class:`AuthenticationFailed` unless ``signature`` is ``public_key``'s of ``text``."""
    try:
        Ed25519PublicKey.from_public_bytes(_unb64(public_key)).verify(_unb64(signature), text)
    except (InvalidSignature, ValueError) as exc:
        raise AuthenticationFailed("the signature does not match the site's key") from exc


def body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def request_text(method: str, path: str, at: str, nonce: str, body: bytes, to_site: str) -> bytes:
    """What a partner signs: the request, when, a fresh nonce, its body and its addressee."""
    return "\n".join(
        ["kahu-request", method.upper(), path, at, nonce, body_hash(body), to_site]
    ).encode()


def response_text(nonce: str, status: int, body: bytes, to_site: str) -> bytes:
    """What a coordinator signs: the answer to the request that carried ``nonce``."""
    return "\n".join(["kahu-response", nonce, str(status), body_hash(body), to_site]).encode()


@dataclass(frozen=True)
class SiteIdentity:
    """This site: its key, id, name and public URL."""

    key: Ed25519PrivateKey
    name: str
    url: str

    @property
    def public_key(self) -> str:
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return _b64(raw)

    @property
    def site_id(self) -> str:
        return site_id_of(self.public_key)

    def sign(self, text: bytes) -> str:
        return _b64(self.key.sign(text))

    def public(self) -> dict[str, str]:
        return {
            "site_id": self.site_id,
            "name": self.name,
            "url": self.url,
            "public_key": self.public_key,
        }


def load_identity(home: Path, name: str, url: str) -> SiteIdentity:
    """The site's identity, its key made on first use (by whichever process comes first:
    the key is written whole to a private file and linked into place)."""
    folder = home / "federation"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / KEY_FILE
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".site-key-")
        try:
            os.write(fd, pem)
            os.fsync(fd)
            os.close(fd)
            with contextlib.suppress(FileExistsError):  # another process was first
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    if path.stat().st_mode & 0o077:
        raise StorageError(f"{path} is readable by others: chmod 600 it")
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise StorageError(f"{path} holds no Ed25519 key")
    return SiteIdentity(key, name or socket.gethostname().split(".")[0], url)


#: how far a signed request's time may be from this site's clock
CLOCK_SKEW_S = 300


class Nonces:
    """The nonces of the signed requests seen within the clock window: a request carrying
    one again is a replay."""

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def fresh(self, site_id: str, nonce: str, at: str) -> None:
        """Raise :class:`AuthenticationFailed` for a stale, future or repeated request."""
        try:
            sent = float(at)
        except ValueError:
            raise AuthenticationFailed("the request's time is not a number") from None
        now = time.time()
        if abs(now - sent) > CLOCK_SKEW_S:
            raise AuthenticationFailed("the request's time is off by more than 5 minutes")
        if not 16 <= len(nonce) <= 64:
            raise AuthenticationFailed("the request's nonce is missing or malformed")
        key = f"{site_id}:{nonce}"
        with self._lock:
            if len(self._seen) > 10000 or now % 60 < 1:
                self._seen = {k: t for k, t in self._seen.items() if t > now - 2 * CLOCK_SKEW_S}
            if key in self._seen:
                raise AuthenticationFailed("the request was sent before (a replay)")
            self._seen[key] = now
