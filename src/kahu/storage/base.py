"""The blob store interface: durable, atomic storage of whole files under validated keys."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from kahu.errors import InvalidInput

# Keys are built from validated UIDs; this second check keeps any other caller honest.
_KEY_RE = re.compile(
    r"^[0-9A-Za-z_-][0-9A-Za-z._-]{0,127}(/[0-9A-Za-z_-][0-9A-Za-z._-]{0,127}){0,7}$"
)


def validate_key(key: str) -> str:
    """Refuse keys that could escape the store: absolute, ``..``, odd characters."""
    if not _KEY_RE.match(key) or any(part in ("", ".", "..") for part in key.split("/")):
        raise InvalidInput(f"invalid blob key: {key!r}")
    return key


@dataclass(frozen=True, slots=True)
class Staged:
    """Data written durably under a temporary name, not yet visible under any key."""

    token: str
    size: int


class BlobStore(ABC):
    """Whole-object storage in two phases: ``stage`` the bytes durably (slow, and safe to run
    in parallel with other work), then ``publish`` them under their keys (fast, atomic and
    durable when it returns) or ``discard`` them. ``put`` does both."""

    @abstractmethod
    def stage(self, data: bytes) -> Staged:
        """Write ``data`` durably where no reader can see it."""

    @abstractmethod
    def publish(self, items: Sequence[tuple[Staged, str]]) -> None:
        """Move staged objects under their keys, replacing what is there; durable on return.

        On error every object of this call is gone (also one that replaced an older object
        under its key) and every staged object is discarded.
        """

    @abstractmethod
    def discard(self, staged: Staged) -> None:
        """Forget a staged object that will not be published."""

    def put(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``, replacing any object there, atomically and durably."""
        self.put_many([(key, data)])

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Store several objects; durable when it returns."""
        staged: list[tuple[Staged, str]] = []
        try:
            for key, data in items:
                staged.append((self.stage(data), validate_key(key)))
        except BaseException:
            for done, _ in staged:
                self.discard(done)
            raise
        self.publish(staged)

    @abstractmethod
    def get(self, key: str) -> bytes:
        """Return the object's bytes; raise :class:`kahu.errors.NotFound` when absent."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the object; return whether it existed."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def keys(self, prefix: str = "") -> Iterator[str]:
        """Every key under ``prefix`` (a key prefix ending at a ``/`` boundary, or empty)."""

    def local_path(self, key: str) -> Path | None:
        """A local file path for zero-copy serving, where the store has one."""
        return None
