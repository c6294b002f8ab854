"""Bringing a model's files in safely: a zip archive unpacked with bounds (no paths outside
the target, no links, no zip bombs, sizes checked while inflating), or a folder copied; and the
model's SHA-256, one digest over every file (its relative path and its own SHA-256)."""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from kahu.models.manifest import InvalidModel

CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int
    max_files: int
    max_compression_ratio: float


@dataclass(frozen=True, slots=True)
class Digest:
    sha256: str
    size_bytes: int
    files: int


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            yield Path(root) / name


def tree_digest(folder: Path) -> Digest:
    """SHA-256 over the lines ``<sha256>  <relative path>`` of every file, sorted by path:
    the same files give the same digest however they were packed."""
    lines, size, count = [], 0, 0
    for path in _files(folder):
        rel = path.relative_to(folder).as_posix()
        lines.append(f"{file_sha256(path)}  {rel}\n")
        size += path.stat().st_size
        count += 1
    digest = hashlib.sha256("".join(sorted(lines, key=lambda s: s[66:])).encode())
    return Digest(digest.hexdigest(), size, count)


def _member_path(target: Path, name: str) -> Path:
    clean = name.replace("\\", "/")
    parts = PurePosixPath(clean).parts
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":") or ".." in parts:
        raise InvalidModel(f"unsafe path in the archive: {name!r}")
    return target.joinpath(*parts)


def unpack_zip(source: Path | IO[bytes], target: Path, limits: Limits) -> None:
    """Unpack ``source`` into the empty folder ``target``, refusing anything unsafe."""
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidModel(f"not a readable zip archive: {exc}") from None
    with archive:
        members = archive.infolist()
        files = [m for m in members if not m.is_dir()]
        if len(files) > limits.max_files:
            raise InvalidModel(f"the archive has {len(files)} files (limit {limits.max_files})")
        total = sum(m.file_size for m in files)
        if total > limits.max_bytes:
            raise InvalidModel(f"the archive expands to {total} bytes (limit {limits.max_bytes})")
        for member in members:
            path = _member_path(target, member.filename)
            mode = member.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise InvalidModel(f"links are not installed: {member.filename!r}")
            if member.flag_bits & 0x1:
                raise InvalidModel(f"encrypted archive member: {member.filename!r}")
            if member.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            ratio_cap = max(member.compress_size, 1) * limits.max_compression_ratio
            if member.file_size > CHUNK and member.file_size > ratio_cap:
                raise InvalidModel(f"compression ratio above the limit: {member.filename!r}")
            path.parent.mkdir(parents=True, exist_ok=True)
            _inflate(archive, member, path)


def _inflate(archive: zipfile.ZipFile, member: zipfile.ZipInfo, path: Path) -> None:
    written = 0
    try:
        with archive.open(member) as src, path.open("xb") as dst:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > member.file_size:  # the directory's sizes can lie
                    raise InvalidModel(f"{member.filename!r} inflates beyond its stated size")
                dst.write(chunk)
    except FileExistsError:
        raise InvalidModel(f"the archive holds {member.filename!r} twice") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise InvalidModel(f"corrupt archive member {member.filename!r}: {exc}") from None


def copy_folder(source: Path, target: Path, limits: Limits) -> None:
    """Copy the regular files of ``source`` into ``target`` (links and devices refused)."""
    if not source.is_dir():
        raise InvalidModel(f"{source} is not a folder")
    total, count = 0, 0
    for root, dirs, names in os.walk(source):
        for name in dirs + names:
            path = Path(root) / name
            if path.is_symlink():
                raise InvalidModel(f"links are not installed: {path.relative_to(source)}")
        for name in names:
            path = Path(root) / name
            if not path.is_file():
                raise InvalidModel(f"not a regular file: {path.relative_to(source)}")
            total += path.stat().st_size
            count += 1
            if total > limits.max_bytes or count > limits.max_files:
                raise InvalidModel(
                    f"the folder is over the limits ({limits.max_bytes} bytes, "
                    f"{limits.max_files} files)"
                )
    shutil.copytree(source, target, dirs_exist_ok=True)


#: files stored in a model's zip as they are (weights hardly compress); others deflated
STORED = (".pth", ".pt", ".ts", ".onnx", ".gz", ".zip", ".npz", ".safetensors")


def pack(folder: Path, target: Path) -> Path:
    """The files of ``folder`` as the zip archive ``target`` (which install takes back)."""
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            stored = path.suffix.lower() in STORED
            archive.write(
                path,
                path.relative_to(folder).as_posix(),
                zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
            )
    return target


def model_root(folder: Path) -> Path:
    """The folder that holds the model: ``folder``, or the folder an archive packed the
    model inside (``Dataset101_X/nnUNetTrainer__nnUNetPlans__3d_fullres/...``)."""
    while True:
        entries = [p for p in folder.iterdir() if p.name != "__MACOSX"]
        if len(entries) != 1 or not entries[0].is_dir() or "TotalSegmentator" in entries[0].name:
            return folder
        folder = entries[0]
