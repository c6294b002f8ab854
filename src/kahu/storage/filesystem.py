"""Blob store on a local filesystem: write to a temporary file, fsync, rename, fsync the folder."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from kahu.errors import NotFound, StorageError
from kahu.storage.base import BlobStore, validate_key

_GROUP = 64  # files written before their renames and folder syncs


class FilesystemBlobStore(BlobStore):
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root.resolve()
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(exist_ok=True)
        self._known_dirs: set[Path] = set()
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / validate_key(key)

    def _ensure_dir(self, directory: Path) -> None:
        if directory in self._known_dirs:
            return
        missing: list[Path] = []
        current = directory
        while not current.exists() and current != self.root:
            missing.append(current)
            current = current.parent
        directory.mkdir(parents=True, exist_ok=True)
        if self.fsync:
            # a new folder is durable only once its parent's entry is on disk
            for created in reversed(missing):
                _fsync_dir(created.parent)
        with self._lock:
            self._known_dirs.add(directory)

    def put(self, key: str, data: bytes) -> None:
        self.put_many([(key, data)])

    def put_many(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Write every file, fsync each, rename each into place, then fsync each folder once.

        One folder sync covers all renames into it: a batch of a series costs one, not one
        per file.
        """
        for start in range(0, len(items), _GROUP):
            self._put_group(items[start : start + _GROUP])

    def _put_group(self, items: Sequence[tuple[str, bytes]]) -> None:
        staged: list[tuple[Path, Path]] = []
        try:
            for key, data in items:
                target = self._path(key)
                self._ensure_dir(target.parent)
                tmp = self._tmp / f"{uuid.uuid4().hex}.part"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                staged.append((tmp, target))
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            for tmp, target in staged:
                os.replace(tmp, target)
            if self.fsync:
                for folder in {target.parent for _, target in staged}:
                    _fsync_dir(folder)
        except OSError as exc:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            raise StorageError(f"could not store {len(items)} object(s): {exc}") from exc

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError as exc:
            raise NotFound(f"no object {key}") from exc

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        # drop folders left empty, up to the root
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            with self._lock:
                self._known_dirs.discard(parent)
            parent = parent.parent
        return True

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def keys(self, prefix: str = "") -> Iterator[str]:
        base = self._path(prefix.rstrip("/")) if prefix else self.root
        if not base.exists():
            return
        for dirpath, dirnames, filenames in os.walk(base):
            if Path(dirpath) == self.root:
                dirnames[:] = [d for d in dirnames if d != ".tmp"]
            for name in filenames:
                yield str((Path(dirpath) / name).relative_to(self.root))

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
