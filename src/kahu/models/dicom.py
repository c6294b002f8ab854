"""A model as a DICOM object, so that it travels between sites like any other instance
(C-STORE, C-MOVE, STOW-RS) and sits in the catalog with its name and version.

The standard's container for data of no other IOD is *Raw Data Storage* (PS3.3 A.37), whose
payload is in private attributes: here the private block ``KAHU MODEL`` of group 0x0071 holds
the manifest (JSON), the model's SHA-256 and the zip archive of its files. Installing from it
checks that the unpacked files give that SHA-256.
"""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from kahu.models.manifest import InvalidModel
from kahu.models.registry import ModelInfo

RAW_DATA_STORAGE = "1.2.840.10008.5.1.4.1.1.66"
GROUP = 0x0071
CREATOR = "KAHU MODEL"
#: where the site keeps its models in the catalog (a patient of its own, not a person)
PATIENT_ID = "KAHU-MODELS"
STORED = (".pth", ".pt", ".ts", ".onnx", ".gz", ".zip", ".npz", ".safetensors")


def pack(model: ModelInfo) -> bytes:
    """The model's files as a zip archive (weights stored, text deflated)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path in sorted(p for p in model.path.rglob("*") if p.is_file()):
            stored = path.suffix.lower() in STORED
            archive.write(
                path,
                path.relative_to(model.path).as_posix(),
                zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED,
            )
    return out.getvalue()


def wrap(model: ModelInfo, *, study_uid: str = "") -> bytes:
    """A Part 10 Raw Data instance that carries ``model``."""
    now = datetime.now(UTC)
    ds = Dataset()
    ds.SOPClassUID = RAW_DATA_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.PatientID = PATIENT_ID
    ds.PatientName = "Kahu^Models"
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.StudyDescription = "Kahu models"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesDescription = f"Model {model.name} {model.version}"[:64]
    ds.Modality = "OT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Manufacturer = "Kahu"
    ds.ContentLabel = "MODEL"
    ds.ContentDescription = (model.manifest.title or model.name)[:64]
    block = ds.private_block(GROUP, CREATOR, create=True)
    block.add_new(0x01, "UT", json.dumps(model.manifest.public()))
    block.add_new(0x02, "LO", model.sha256)
    block.add_new(0x10, "OB", pack(model))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def unwrap(data: bytes | Path) -> tuple[bytes, str]:
    """The zip archive and the SHA-256 a Kahu model instance carries."""
    try:
        ds = dcmread(io.BytesIO(data) if isinstance(data, bytes) else data)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise InvalidModel(f"not a DICOM file: {exc}") from None
    if ds.get("SOPClassUID") != RAW_DATA_STORAGE:
        raise InvalidModel("not a Kahu model: the instance is not Raw Data Storage")
    try:
        block = ds.private_block(GROUP, CREATOR)
        archive, sha256 = bytes(block[0x10].value), str(block[0x02].value)
    except KeyError:
        raise InvalidModel("not a Kahu model: the instance has no KAHU MODEL block") from None
    return archive, sha256
