"""Import of files, folders and zip archives through the one ingest path, reported per file."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from kahu.catalog.ingest import Ingestor
from kahu.catalog.records import IngestResult
from kahu.errors import UnsafeArchive
from kahu.settings import ImportSettings

ZIP_MAGIC = b"PK\x03\x04"
EMPTY_ZIP_MAGIC = b"PK\x05\x06"


@dataclass(frozen=True, slots=True)
class FileReport:
    path: str
    status: str
    reason: str | None = None
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _report(path: str, result: IngestResult) -> FileReport:
    return FileReport(
        path, result.status, result.reason, result.sop_instance_uid, result.series_instance_uid
    )


def _unsafe_member(name: str) -> str | None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path in archive"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        return "'..' in archive path"
    return None


class Importer:
    """Imports into ``project`` (the default project when None)."""

    def __init__(
        self, ingestor: Ingestor, limits: ImportSettings, project: str | None = None
    ) -> None:
        self.ingestor = ingestor
        self.limits = limits
        self.project = project

    def _ingest(self, name: str, data: bytes, dataset: str | None, source: str) -> FileReport:
        return _report(
            name,
            self.ingestor.ingest(data, dataset=dataset, source=source, project=self.project),
        )

    def import_stream(
        self, name: str, stream: IO[bytes], *, dataset: str | None = None, source: str = "upload"
    ) -> Iterator[FileReport]:
        """A single uploaded file: a zip archive or one DICOM file."""
        head = stream.read(4)
        stream.seek(0)
        if head in (ZIP_MAGIC, EMPTY_ZIP_MAGIC):
            yield from self.import_zip(name, stream, dataset=dataset, source=source)
            return
        data = stream.read(self.limits.max_member_bytes + 1)
        if len(data) > self.limits.max_member_bytes:
            yield FileReport(name, "rejected", "file larger than the import limit")
            return
        yield self._ingest(name, data, dataset, source)

    def import_zip(
        self, name: str, stream: IO[bytes], *, dataset: str | None = None, source: str = "upload"
    ) -> Iterator[FileReport]:
        try:
            archive = zipfile.ZipFile(stream)
        except (zipfile.BadZipFile, OSError) as exc:
            yield FileReport(name, "rejected", f"unreadable zip archive: {exc}")
            return
        with archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            try:
                self._check_archive(members)
            except UnsafeArchive as exc:
                yield FileReport(name, "rejected", str(exc))
                return
            for member in members:
                label = f"{name}:{member.filename}"
                unsafe = _unsafe_member(member.filename)
                if unsafe:
                    yield FileReport(label, "rejected", unsafe)
                    continue
                if member.flag_bits & 0x1:
                    yield FileReport(label, "rejected", "encrypted archive member")
                    continue
                try:
                    data = self._read_member(archive, member)
                except (UnsafeArchive, zipfile.BadZipFile, OSError, ValueError) as exc:
                    yield FileReport(label, "rejected", str(exc))
                    continue
                if data[:4] in (ZIP_MAGIC, EMPTY_ZIP_MAGIC):
                    yield FileReport(label, "rejected", "nested archives are not imported")
                    continue
                yield self._ingest(label, data, dataset, source)

    def _check_archive(self, members: list[zipfile.ZipInfo]) -> None:
        limits = self.limits
        if len(members) > limits.max_members:
            raise UnsafeArchive(f"archive has {len(members)} members (limit {limits.max_members})")
        total = sum(m.file_size for m in members)
        if total > limits.max_archive_bytes:
            raise UnsafeArchive(
                f"archive expands to {total} bytes (limit {limits.max_archive_bytes})"
            )

    def _read_member(self, archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes:
        limits = self.limits
        if member.file_size > limits.max_member_bytes:
            raise UnsafeArchive(f"member expands to {member.file_size} bytes")
        ratio_cap = max(member.compress_size, 1) * limits.max_compression_ratio
        if member.file_size > 1_000_000 and member.file_size > ratio_cap:
            raise UnsafeArchive("compression ratio above the limit (zip bomb?)")
        # The sizes in the directory can lie: bound what is actually inflated as well.
        cap = min(limits.max_member_bytes, max(int(ratio_cap), 1_000_000))
        with archive.open(member) as fh:
            data = fh.read(cap + 1)
        if len(data) > cap:
            raise UnsafeArchive("member inflates beyond its declared size or the ratio limit")
        return data

    def import_paths(
        self, paths: list[Path], *, dataset: str | None = None, source: str = "import"
    ) -> Iterator[FileReport]:
        """Files, folders (recursively, in name order) and zip archives."""
        for path in paths:
            if path.is_dir():
                for root, dirs, files in os.walk(path):
                    dirs.sort()
                    for fname in sorted(files):
                        yield from self._import_file(Path(root) / fname, dataset, source)
            elif path.exists():
                yield from self._import_file(path, dataset, source)
            else:
                yield FileReport(str(path), "rejected", "no such file or folder")

    def _import_file(self, path: Path, dataset: str | None, source: str) -> Iterator[FileReport]:
        try:
            with path.open("rb") as fh:
                yield from self.import_stream(str(path), fh, dataset=dataset, source=source)
        except OSError as exc:
            yield FileReport(str(path), "rejected", f"cannot read: {exc.strerror or exc}")
