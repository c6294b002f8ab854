"""The DICOM JSON model (PS3.18 F.2): instance metadata and query results.

Stored instance metadata refers to bulk data with URIs that start with :data:`BASE_MARKER`;
the web layer swaps in its base URL as text, so a series' metadata is served by joining stored
strings, never by parsing them.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pydicom
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from kahu.dicom.json_fast import encode_instance
from kahu.dicom.structure import DEFLATED, read_meta

BASE_MARKER = "kahu-base:/"


def instance_base(study: str, series: str, instance: str) -> str:
    return f"{BASE_MARKER}studies/{study}/series/{series}/instances/{instance}"


def instance_json_from_bytes(data: bytes, study: str, series: str, instance: str) -> str:
    """DICOM JSON text of a stored Part 10 file (the fast encoder; pydicom when deflated)."""
    body, meta = read_meta(data)
    syntax = meta.get(0x00020010, b"").decode("ascii", "replace").strip("\0 ")
    if syntax in DEFLATED:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
        return instance_json(ds, study, series, instance)
    doc = encode_instance(data, body, syntax, instance_base(study, series, instance))
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def instance_json(ds: Dataset, study: str, series: str, instance: str) -> str:
    """DICOM JSON text of a parsed instance, bulk data by reference (BulkDataURI)."""
    base = instance_base(study, series, instance)

    def bulk(elem: DataElement) -> str:
        return f"{base}/bulkdata/{elem.tag:08X}"

    doc = ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=bulk)
    if "Rows" in ds and "7FE00010" not in doc:
        # read with stop_before_pixels: say where the pixels are
        vr = "OB" if int(ds.get("BitsAllocated") or 8) <= 8 else "OW"
        doc["7FE00010"] = {"vr": vr, "BulkDataURI": f"{base}/frames"}
    doc.pop("00020010", None)
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _value(vr: str, value: Any) -> list[Any]:
    values = value if isinstance(value, list | tuple) else [value]
    out: list[Any] = []
    for item in values:
        if item is None or item == "":
            continue
        if vr == "PN":
            out.append({"Alphabetic": str(item)})
        elif vr in ("IS", "US", "UL", "SS", "SL"):
            out.append(int(item))
        elif vr in ("DS", "FL", "FD"):
            out.append(float(item))
        else:
            out.append(str(item))
    return out


def attribute(keyword: str, value: Any, vr: str | None = None) -> tuple[str, dict[str, Any]]:
    """One ``"GGGGEEEE": {"vr": ..., "Value": [...]}`` entry from a keyword and its value."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(keyword)
    vr = vr or dictionary_VR(tag)
    entry: dict[str, Any] = {"vr": vr}
    values = _value(vr, value)
    if values:
        entry["Value"] = values
    return f"{tag:08X}", entry
