"""Blob store on a local filesystem: write to a temporary file, fsync, rename, fsync the folder."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from kahu.errors import InvalidInput, NotFound, StorageError
from kahu.storage.base import BlobStore, Staged, validate_key

_STALE_SECONDS = 3600  # a staged file this old belongs to no running writer


class FilesystemBlobStore(BlobStore):
    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = root.resolve()
        self.fsync = fsync
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(exist_ok=True)
        self._sweep_stale_staging()
        self._known_dirs: set[Path] = set()
        self._lock = threading.Lock()

    def _sweep_stale_staging(self) -> None:
        """Remove temporary files a crash left behind (old enough that no writer owns them)."""
        cutoff = time.time() - _STALE_SECONDS
        for leftover in self._tmp.glob("*.part"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
            except OSError:
                pass

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

    def stage(self, data: bytes) -> Staged:
        """Write to a new temporary file and fsync it (the slow part, GIL released)."""
        name = f"{uuid.uuid4().hex}.part"
        tmp = self._tmp / name
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise StorageError(f"could not stage an object: {exc}") from exc
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.fsync:
                os.fsync(fd)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"could not stage an object: {exc}") from exc
        finally:
            os.close(fd)
        return Staged(name, len(data))

    def publish(self, items: Sequence[tuple[Staged, str]]) -> None:
        """Rename each staged file into place, then fsync each folder once: one folder sync
        covers every rename into it."""
        done: list[Path] = []
        try:
            targets = [(self._tmp / staged.token, self._path(key)) for staged, key in items]
            for tmp, target in targets:
                self._ensure_dir(target.parent)
                os.replace(tmp, target)
                done.append(target)
            if self.fsync:
                for folder in {target.parent for _, target in targets}:
                    _fsync_dir(folder)
        except (OSError, InvalidInput) as exc:
            for target in done:
                target.unlink(missing_ok=True)
            for staged, _ in items:
                self.discard(staged)
            if isinstance(exc, InvalidInput):
                raise
            raise StorageError(f"could not store {len(items)} object(s): {exc}") from exc

    def discard(self, staged: Staged) -> None:
        (self._tmp / staged.token).unlink(missing_ok=True)

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
