"""JSON -> SR -> JSON, PDF -> Encapsulated PDF, and a 50 MB binary -> chunked DICOM ->
binary with the same hash."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from kahu.operators.documents import (
    InvalidChunks,
    binary_to_dicom,
    dicom_to_binary,
    pdf_to_dicom,
)
from kahu.operators.sr import InvalidMeasurements, measurements_to_sr, sr_to_measurements

REPORT = {
    "algorithm": {"name": "threshold", "version": "1.0"},
    "groups": [
        {
            "name": "bone",
            "finding": "Bone",
            "measurements": [
                {"name": "Volume", "value": 12.5, "unit": "ml"},
                {"name": "Mean density", "value": 700, "unit": "[hnsf'U]"},
            ],
        },
        {
            "name": "soft tissue",
            "measurements": [{"name": "Volume", "value": 101.25, "unit": "ml"}],
        },
    ],
}


@pytest.fixture
def ct() -> pydicom.Dataset:
    return pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def _reread(ds: pydicom.Dataset) -> pydicom.Dataset:
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return pydicom.dcmread(io.BytesIO(out.getvalue()))


def test_json_sr_json_round_trip(ct: pydicom.Dataset) -> None:
    sr = _reread(measurements_to_sr(REPORT, [ct]))
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.PatientID == ct.PatientID
    assert sr.StudyInstanceUID == ct.StudyInstanceUID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    assert sr_to_measurements(sr) == REPORT


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "JSON object"),
        ({"groups": []}, "'groups' is a non-empty list"),
        ({"groups": [{"measurements": [{}]}]}, r"groups\[0\] needs a 'name'"),
        (
            {"groups": [{"name": "a", "measurements": [{"name": "Volume", "value": "big"}]}]},
            r"groups\[0\]\.measurements\[0\]\.value is a number, not 'big'",
        ),
        (
            {"groups": [{"name": "a", "measurements": [{"name": "Volume", "value": 1}]}]},
            r"groups\[0\]\.measurements\[0\] needs a 'unit'",
        ),
    ],
)
def test_bad_measurements_are_named(ct: pydicom.Dataset, doc: object, message: str) -> None:
    with pytest.raises(InvalidMeasurements, match=message):
        measurements_to_sr(doc, [ct])  # type: ignore[arg-type]


def test_pdf_becomes_an_encapsulated_pdf_in_the_source_study(ct: pydicom.Dataset) -> None:
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"  # odd length: padded, length kept
    ds = _reread(pdf_to_dicom(pdf, title="Volumes", source=ct))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.104.1"
    assert ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert bytes(ds.EncapsulatedDocument)[: ds.EncapsulatedDocumentLength] == pdf
    assert ds.StudyInstanceUID == ct.StudyInstanceUID
    assert ds.SeriesInstanceUID != ct.SeriesInstanceUID
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == ct.SeriesInstanceUID
    with pytest.raises(ValueError, match="not a PDF"):
        pdf_to_dicom(b"<html>", title="x")


def test_50_mb_binary_round_trips_through_chunks_with_its_hash(
    tmp_path: Path, ct: pydicom.Dataset
) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(hashlib.shake_256(b"kahu").digest(50 * 1024 * 1024 + 3))
    chunks = tmp_path / "chunks"
    chunks.mkdir()
    series = set()
    for ds in binary_to_dicom(model, source=ct, chunk_bytes=16 * 1024 * 1024):
        series.add(ds.SeriesInstanceUID)
        ds.save_as(chunks / f"{ds.InstanceNumber:02d}.dcm", enforce_file_format=True)
    files = sorted(chunks.iterdir())
    assert len(files) == 4
    assert len(series) == 1
    assert pydicom.dcmread(files[0]).StudyInstanceUID == ct.StudyInstanceUID

    joined = dicom_to_binary(list(reversed(files)), tmp_path / "out")
    assert joined.name == "model.pt"
    assert (
        hashlib.sha256(joined.read_bytes()).digest() == hashlib.sha256(model.read_bytes()).digest()
    )

    with pytest.raises(InvalidChunks, match=r"chunks \[2\] of 4 are missing"):
        dicom_to_binary([f for f in files if not f.name.startswith("02")], tmp_path / "x")
    tampered = pydicom.dcmread(files[1])
    payload = bytearray(tampered.EncapsulatedDocument)
    payload[100] ^= 0xFF
    tampered.EncapsulatedDocument = bytes(payload)
    tampered.save_as(files[1])
    with pytest.raises(InvalidChunks, match="does not match its recorded SHA-256"):
        dicom_to_binary(files, tmp_path / "y")
    assert not (tmp_path / "y" / "model.pt").exists()
    assert not (tmp_path / "y" / "model.pt.part").exists()
