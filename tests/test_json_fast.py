"""The direct DICOM JSON encoder agrees with pydicom's on every real test file.

Known, intended differences are normalized first: group lengths are left out (PS3.18 F.2),
each value of a multi-valued string is stripped of padding, and pixel data is a BulkDataURI
with the VR as stored.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import data_store
import pydicom
import pydicom.data
import pytest

from kahu.dicom.json_fast import encode_instance
from kahu.dicom.json_model import instance_json
from kahu.dicom.structure import DEFLATED, read_meta

ROOT = Path(pydicom.data.__file__).parent
FILES = sorted(
    [
        *ROOT.glob("test_files/**/*.dcm"),
        *ROOT.glob("charset_files/*.dcm"),
        *Path(data_store.__file__).parent.glob("data/*.dcm"),
    ]
)
#: pydicom's own encoder fails on badVR.dcm (IS "1A"); a truncated file is never stored
SKIP = {
    "badVR.dcm",
    "rtplan_truncated.dcm",
    "emri_small_jpeg_2k_lossless_too_short.dcm",
    "MR_truncated.dcm",
}
PADDED = {"CS", "SH", "LO", "AE", "DA", "TM", "UI", "AS", "DT"}


def _normalize(doc: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in doc.items():
        if key.endswith("0000") or key == "7FE00010":
            continue
        if value.get("vr") == "SQ" and "Value" in value:
            value = {**value, "Value": [_normalize(item) for item in value["Value"]]}
        elif value.get("vr") in PADDED and "Value" in value:
            value = {
                **value,
                "Value": [v.strip(" \0") if isinstance(v, str) else v for v in value["Value"]],
            }
        out[key] = value
    return out


def _part10(path: Path) -> tuple[bytes, int, str] | None:
    data = path.read_bytes()
    if data[128:132] != b"DICM" or path.name in SKIP:
        return None
    body, meta = read_meta(data)
    syntax = meta.get(0x00020010, b"").decode().strip("\0 ")
    return None if not syntax or syntax in DEFLATED else (data, body, syntax)


CASES = [p for p in FILES if _part10(p) is not None]


def test_the_corpus_is_large() -> None:
    assert len(CASES) > 140


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.name)
def test_matches_pydicom(path: Path) -> None:
    found = _part10(path)
    assert found is not None
    data, body, syntax = found
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    expected = _normalize(json.loads(instance_json(ds, "1", "2", "3")))
    actual = _normalize(
        encode_instance(data, body, syntax, "kahu-base:/studies/1/series/2/instances/3")
    )
    assert actual == expected


def test_invalid_numbers_lose_their_value_not_the_instance() -> None:
    data = (ROOT / "test_files" / "badVR.dcm").read_bytes()
    body, meta = read_meta(data)
    doc = encode_instance(data, body, meta[0x00020010].decode().strip("\0 "), "x")
    assert doc["00280008"] == {"vr": "IS"}  # NumberOfFrames "1A"
    assert doc["00100010"]["Value"] == [{"Alphabetic": "Lastname^Firstname"}]
