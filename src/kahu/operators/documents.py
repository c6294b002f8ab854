"""Documents and arbitrary files as DICOM: PDF reports as Encapsulated PDF, and any binary
(a model, an archive) as a series of Encapsulated Document chunks that join back into the
identical file.

A binary travels as Encapsulated PDF storage objects with the MIME type
``application/octet-stream`` (every PACS stores that SOP class), one instance per chunk, all
in one series; Kahu's private block records the file name, the chunk count and the SHA-256 of
the whole file, which is checked when the chunks are joined.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, python_operator
from kahu.operators.volumes import dicom_files

ENCAPSULATED_PDF = UID("1.2.840.10008.5.1.4.1.1.104.1")
OCTET_STREAM = "application/octet-stream"
DEFAULT_CHUNK_MB = 16

_PRIVATE_GROUP = 0x0071
_CREATOR = "KAHU BINARY 1"

#: patient and study attributes a derived object copies from its source
_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
)


class InvalidChunks(ValueError):
    """Chunks that do not join into their file; the message says which part is wrong."""


def _document(
    payload: bytes,
    mime_type: str,
    title: str,
    *,
    source: Dataset | None,
    series_uid: str,
    series_number: int,
    series_description: str,
    instance_number: int,
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SpecificCharacterSet = "ISO_IR 192"
    for keyword in _COPIED:
        setattr(ds, keyword, source.get(keyword, "") if source is not None else "")
    if not ds.StudyInstanceUID:
        ds.StudyInstanceUID = generate_uid()
    if not ds.PatientID:
        ds.PatientID = "KAHU"
    now = datetime.datetime.now()
    ds.ContentDate = ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.ContentTime = ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.AcquisitionDateTime = now.strftime("%Y%m%d%H%M%S")
    ds.Modality = "DOC"
    ds.ConversionType = "WSD"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description[:64]
    ds.InstanceNumber = instance_number
    ds.Manufacturer = "Kahu"
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title[:64]
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = mime_type
    ds.EncapsulatedDocumentLength = len(payload)
    ds.EncapsulatedDocument = payload + (b"\0" if len(payload) % 2 else b"")
    if source is not None and source.get("SeriesInstanceUID"):
        reference = Dataset()
        reference.SeriesInstanceUID = source.SeriesInstanceUID
        reference.ReferencedSOPSequence = [Dataset()]
        reference.ReferencedSOPSequence[0].ReferencedSOPClassUID = source.SOPClassUID
        reference.ReferencedSOPSequence[0].ReferencedSOPInstanceUID = source.SOPInstanceUID
        ds.ReferencedSeriesSequence = [reference]
    return ds


def pdf_to_dicom(
    pdf: bytes,
    *,
    title: str,
    source: Dataset | None = None,
    series_description: str = "Report",
    series_number: int = 302,
) -> Dataset:
    """An Encapsulated PDF of ``pdf`` in the study of ``source`` (a dataset of the series the
    report is about), referencing that series."""
    if not pdf.startswith(b"%PDF-"):
        raise ValueError("not a PDF document (it does not start with %PDF-)")
    return _document(
        pdf,
        "application/pdf",
        title,
        source=source,
        series_uid=generate_uid(),
        series_number=series_number,
        series_description=series_description,
        instance_number=1,
    )


def binary_to_dicom(
    path: Path,
    *,
    source: Dataset | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_MB * 1024 * 1024,
    series_description: str | None = None,
    series_number: int = 303,
) -> Iterator[Dataset]:
    """The file at ``path`` as DICOM chunks sharing one SeriesInstanceUID (made one at a
    time: a model of gigabytes never sits in memory whole)."""
    if chunk_bytes < 1024:
        raise ValueError("chunks are at least 1 KiB")
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for piece in iter(lambda: fh.read(1 << 20), b""):
            digest.update(piece)
    count = max(1, -(-size // chunk_bytes))
    series_uid = generate_uid()
    with open(path, "rb") as fh:
        for index in range(count):
            ds = _document(
                fh.read(chunk_bytes),
                OCTET_STREAM,
                path.name,
                source=source,
                series_uid=series_uid,
                series_number=series_number,
                series_description=series_description or path.name,
                instance_number=index + 1,
            )
            block = ds.private_block(_PRIVATE_GROUP, _CREATOR, create=True)
            block.add_new(0x01, "LO", path.name[:64])
            block.add_new(0x02, "UL", count)
            block.add_new(0x03, "LO", digest.hexdigest()[:64])
            block.add_new(0x04, "UL", size)
            yield ds


def _chunk_info(ds: Dataset) -> tuple[str, int, str, int]:
    try:
        block = ds.private_block(_PRIVATE_GROUP, _CREATOR)
        return (
            str(block[0x01].value),
            int(block[0x02].value),
            str(block[0x03].value),
            int(block[0x04].value),
        )
    except KeyError:
        raise InvalidChunks(f"instance {ds.SOPInstanceUID} is not a Kahu binary chunk") from None


def dicom_to_binary(files: Sequence[Path], out_dir: Path) -> Path:
    """Join the chunks in ``files`` (one series) into ``out_dir/<file name>``; the chunk count
    and the SHA-256 must match what was recorded when the file was split."""
    chunks: dict[int, Path] = {}
    info: tuple[str, int, str, int] | None = None
    for path in files:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if str(ds.get("MIMETypeOfEncapsulatedDocument", "")) != OCTET_STREAM:
            continue
        this = _chunk_info(ds)
        if info is not None and this != info:
            raise InvalidChunks(f"{path.name} belongs to another file ({this[0]})")
        info = this
        number = int(ds.InstanceNumber)
        if number in chunks:
            raise InvalidChunks(f"chunk {number} of {this[0]} is there twice")
        chunks[number] = path
    if info is None:
        raise InvalidChunks("no binary chunks among the files")
    name, count, sha256, size = info
    missing = sorted(set(range(1, count + 1)) - set(chunks))
    if missing:
        raise InvalidChunks(f"{name}: chunks {missing} of {count} are missing")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / Path(name).name
    tmp = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    written = 0
    with open(tmp, "wb") as out:
        for number in range(1, count + 1):
            ds = pydicom.dcmread(chunks[number])
            payload = bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)]
            digest.update(payload)
            out.write(payload)
            written += len(payload)
    if written != size or digest.hexdigest() != sha256:
        tmp.unlink()
        raise InvalidChunks(f"{name}: the joined file does not match its recorded SHA-256")
    tmp.replace(target)
    return target


def _source_header(ctx: TaskContext, name: str | None) -> Dataset | None:
    if not name:
        return None
    folder = ctx.input(name)
    files = dicom_files(folder) if folder.is_dir() else []
    return pydicom.dcmread(files[0], stop_before_pixels=True) if files else None


def pdf_to_dicom_task(ctx: TaskContext) -> None:
    """Each PDF of the first input as an Encapsulated PDF in the study of the second."""
    names = list(ctx.job.inputs)
    source = _source_header(ctx, names[1] if len(names) > 1 else None)
    pdfs = sorted(ctx.input(names[0]).glob("*.pdf"))
    if not pdfs:
        raise ValueError(f"no .pdf file in the output of {names[0]}")
    for path in pdfs:
        ds = pdf_to_dicom(
            path.read_bytes(),
            title=str(ctx.options.get("title") or path.stem),
            source=source,
            series_description=str(ctx.options["series_description"]),
        )
        ds.save_as(ctx.out_dir / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
        ctx.log.info("%s -> Encapsulated PDF %s", path.name, ds.SOPInstanceUID)


def binary_to_dicom_task(ctx: TaskContext) -> None:
    """Each file of the first input as a series of DICOM chunks."""
    names = list(ctx.job.inputs)
    source = _source_header(ctx, names[1] if len(names) > 1 else None)
    chunk = int(float(ctx.options["chunk_mb"]) * 1024 * 1024)
    files = sorted(p for p in ctx.input(names[0]).iterdir() if p.is_file())
    if not files:
        raise ValueError(f"no file in the output of {names[0]}")
    for path in files:
        count = 0
        for ds in binary_to_dicom(path, source=source, chunk_bytes=chunk):
            ds.save_as(ctx.out_dir / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
            count += 1
        ctx.log.info("%s -> %d chunks", path.name, count)


def dicom_to_binary_task(ctx: TaskContext) -> None:
    """The chunked file of the input series, joined and checked."""
    target = dicom_to_binary(dicom_files(ctx.in_dir), ctx.out_dir)
    ctx.log.info("joined %s (%d bytes)", target.name, target.stat().st_size)


def pdf_to_dicom_operator(
    name: str,
    *,
    pdf_from: str,
    source_from: str | None = "get-input",
    title: str = "",
    series_description: str = "Report",
) -> Operator:
    """Per series: PDF reports written by ``pdf_from`` as Encapsulated PDF documents in the
    study of the series (fetched by ``source_from``)."""
    return python_operator(
        name,
        pdf_to_dicom_task,
        inputs=[pdf_from, *([source_from] if source_from else [])],
        resources=Resources(cpu=0.5, memory_mb=512),
        description="Store PDF reports as Encapsulated PDF",
        options={"title": title, "series_description": series_description},
    )


def binary_to_dicom_operator(
    name: str,
    *,
    files_from: str,
    source_from: str | None = None,
    per: str = "run",
    chunk_mb: float = DEFAULT_CHUNK_MB,
) -> Operator:
    """Any file written by ``files_from`` (a model, an archive) as DICOM chunks in one
    series each."""
    return python_operator(
        name,
        binary_to_dicom_task,
        inputs=[files_from, *([source_from] if source_from else [])],
        per="run" if per == "run" else "series",
        resources=Resources(cpu=0.5, memory_mb=512),
        description="Store files as chunked DICOM Encapsulated Documents",
        options={"chunk_mb": chunk_mb},
    )


def dicom_to_binary_operator(
    name: str = "dicom-to-binary", *, inputs: Sequence[str] = ("get-input",)
) -> Operator:
    """Per series: the file a chunked binary series holds, with its hash checked."""
    return python_operator(
        name,
        dicom_to_binary_task,
        inputs=inputs,
        resources=Resources(cpu=0.5, memory_mb=512),
        description="Join chunked DICOM Encapsulated Documents back into their file",
    )
