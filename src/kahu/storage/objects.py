"""The object store: files in buckets for workflows and users (Kaapana's MinIO), through
fsspec. Each project has its own buckets (:meth:`ObjectStore.of_project`): a local folder per
bucket now (``<home>/objects/<project>/<bucket>``); an fsspec URL such as
``s3://kahu-objects`` (with s3fs installed) puts them elsewhere without code changes.

Bucket names follow S3's rules; object keys are relative paths of safe characters (the blob
store's rule): nothing a caller gives can point outside its bucket.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import fsspec

from kahu.errors import InvalidInput, NotFound
from kahu.storage.base import validate_key

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # kahu.auth.projects' rule


def validate_bucket(name: str) -> str:
    if not _BUCKET.match(name) or ".." in name:
        raise InvalidInput(
            f"invalid bucket name {name!r}: 3 to 63 lower-case letters, digits, '.' and '-'"
        )
    return name


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int

    def public(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size}


class ObjectStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.local = self.fs.protocol in ("file", ("file", "local")) or "file" in self.fs.protocol
        if self.local:
            self.fs.makedirs(self.root, exist_ok=True)

    def of_project(self, project: str) -> ObjectStore:
        """The buckets of ``project`` (a validated project name: a single path segment)."""
        if not _PROJECT.match(project):
            raise InvalidInput(f"invalid project name {project!r}")
        view = ObjectStore.__new__(ObjectStore)
        view.url, view.fs, view.local = self.url, self.fs, self.local
        view.root = f"{self.root}/{project}"
        return view

    def check(self, bucket: str, key: str) -> None:
        """Refuse a bucket name or key that is not allowed (before work is done)."""
        self._path(bucket, key)

    def _path(self, bucket: str, key: str = "") -> str:
        base = f"{self.root}/{validate_bucket(bucket)}"
        return f"{base}/{validate_key(key)}" if key else base

    def buckets(self) -> list[str]:
        if not self.fs.exists(self.root):
            return []
        return sorted(Path(p).name for p in self.fs.ls(self.root, detail=False) if self.fs.isdir(p))

    def objects(self, bucket: str, prefix: str = "") -> Iterator[ObjectInfo]:
        """The objects of ``bucket`` whose keys start with ``prefix``, in key order."""
        base = self._path(bucket)
        if not self.fs.exists(base):
            return
        found = self.fs.find(base, detail=True)
        for path, info in sorted(found.items()):
            key = path[len(base) + 1 :] if path.startswith(base + "/") else path
            if info.get("type") == "file" and key.startswith(prefix) and not key.endswith(".part"):
                yield ObjectInfo(key, int(info.get("size") or 0))

    def put_file(self, bucket: str, key: str, local: Path) -> None:
        """Upload ``local`` as ``key`` (replacing it); readers never see half an object."""
        target = self._path(bucket, key)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        if self.local:
            partial = target + ".part"
            self.fs.put_file(str(local), partial)
            self.fs.mv(partial, target)
        else:
            self.fs.put_file(str(local), target)

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        target = self._path(bucket, key)
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        partial = target + ".part" if self.local else target
        self.fs.pipe_file(partial, data)
        if self.local:
            self.fs.mv(partial, target)

    def get_file(self, bucket: str, key: str, local: Path) -> None:
        source = self._path(bucket, key)
        if not self.fs.isfile(source):
            raise NotFound(f"no object {key} in bucket {bucket}")
        local.parent.mkdir(parents=True, exist_ok=True)
        self.fs.get_file(source, str(local))

    def open(self, bucket: str, key: str) -> IO[bytes]:
        source = self._path(bucket, key)
        if not self.fs.isfile(source):
            raise NotFound(f"no object {key} in bucket {bucket}")
        handle: IO[bytes] = self.fs.open(source, "rb")
        return handle

    def delete(self, bucket: str, key: str) -> None:
        source = self._path(bucket, key)
        if not self.fs.isfile(source):
            raise NotFound(f"no object {key} in bucket {bucket}")
        self.fs.rm_file(source)
