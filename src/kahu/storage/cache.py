"""A folder of derived files that can be made again (the viewer's NIfTI volumes): named by a
digest of what they were made from, so a changed series simply gets a new name; the oldest
used go first when the folder grows past its limit."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from pathlib import Path


def digest(parts: Iterable[str]) -> str:
    """The cache key of what a file is made from (e.g. the blob keys of a series' instances)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


class FileCache:
    def __init__(self, folder: Path, limit_bytes: int) -> None:
        self.folder = folder
        self.limit = limit_bytes
        self._lock = threading.Lock()

    def _path(self, key: str, suffix: str) -> Path:
        if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
            raise ValueError("a cache key is a SHA-256 hex digest")
        return self.folder / f"{key}{suffix}"

    def get_or_make(self, key: str, make: Callable[[], bytes], suffix: str = "") -> bytes:
        """The cached bytes of ``key``, else ``make()``'s, kept for next time. Two callers
        asking at once may both make them; the file is replaced whole, never half written."""
        path = self._path(key, suffix)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            pass
        else:
            os.utime(path)  # used now: the last to go
            return data
        data = make()
        if len(data) > self.limit:
            return data
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".part-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
        self._trim()
        return data

    def _trim(self) -> None:
        with self._lock:
            files = []
            for entry in os.scandir(self.folder):
                if entry.is_file() and not entry.name.startswith(".part-"):
                    stat = entry.stat()
                    files.append((stat.st_mtime, stat.st_size, entry.path))
            total = sum(size for _, size, _ in files)
            for _, size, path in sorted(files):
                if total <= self.limit:
                    break
                Path(path).unlink(missing_ok=True)
                total -= size
