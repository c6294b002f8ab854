"""The flattened, typed metadata document of a series.

Field names are DICOM keywords. Values are typed: DA to ``YYYY-MM-DD``, TM to ``HH:MM:SS.f``,
DT to ISO-8601 (UTC with ``Z`` where an offset is known), DS/IS/US/... to numbers, AS to years,
multi-valued attributes to lists. A PN gives its string form plus ``<Keyword>.FamilyName`` etc.
Sequences are flattened to ``<Sequence>.<Keyword>`` lists (three levels deep, first items only).
Values that break their VR are left out of the typed field and kept raw under ``_invalid``.

Derived fields (lower-case names, never DICOM keywords) are listed in :data:`DERIVED_FIELDS`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timezone
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from kahu.dicom import values as v

JSONValue = Any
Document = dict[str, JSONValue]

#: Binary and bulk VRs: never part of the document.
BULK_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: Sequences whose content is per-frame or a whole report tree; mined for derived fields only.
SKIPPED_SEQUENCES = frozenset(
    {"PerFrameFunctionalGroupsSequence", "ContentSequence", "WaveformSequence"}
)
MAX_VALUES = 256  # a longer multi-valued attribute is a table (LUT, contour), not metadata
MAX_ITEMS = 64
MAX_DEPTH = 3

#: Fields Kahu adds to every series document; documented for users in docs/metadata.md.
DERIVED_FIELDS: dict[str, str] = {
    "dataset": "names of the datasets the series belongs to (called AE title at ingest, ...)",
    "tags": "free-text curation tags on the series",
    "received_at": "UTC time the first instance of the series arrived",
    "updated_at": "UTC time the latest instance of the series arrived",
    "instance_count": "number of instances stored for the series",
    "size_bytes": "bytes stored for the series",
    "modality_curated": "Modality, with CT localizers (scouts) as 'CT-LOCALIZER'",
    "is_localizer": "true for CT localizer/scout series",
    "referenced_series": "SeriesInstanceUIDs this series refers to (SEG, SR, RTSTRUCT, PR, KO)",
    "segment_labels": "SegmentLabel of every segment (SEG)",
    "segment_algorithms": "SegmentAlgorithmName of every segment (SEG)",
    "roi_names": "ROIName of every structure (RTSTRUCT)",
    "code_meanings": "every CodeMeaning found in the series' coded attributes",
    "_invalid": "raw text of attributes whose value broke their VR, by keyword",
}


def _normalize_one(vr: str, value: Any, tz: timezone | None) -> JSONValue:
    if value is None or value == "":
        return None
    if vr == "DA":
        return v.parse_da(str(value))
    if vr == "TM":
        return v.parse_tm(str(value))
    if vr == "DT":
        return v.parse_dt(str(value), tz)
    if vr == "AS":
        return v.parse_as(str(value))
    if vr == "DS":
        return v.parse_ds(str(value)) if isinstance(value, str) else float(value)
    if vr == "IS":
        return v.parse_is(str(value)) if isinstance(value, str) else _int_or_raise(value)
    if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
        return int(value)
    if vr in ("FL", "FD"):
        return float(value)
    if vr == "PN":
        return str(value)
    if isinstance(value, bytes):
        raise ValueError("bytes value")
    return str(value).strip()


def _int_or_raise(value: Any) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"not an IS value: {value!r}")
    return int(number)


def _pn_parts(keyword: str, value: PersonName, doc: Document) -> None:
    parts = {
        "FamilyName": value.family_name,
        "GivenName": value.given_name,
        "MiddleName": value.middle_name,
        "NamePrefix": value.name_prefix,
        "NameSuffix": value.name_suffix,
        "Ideographic": value.ideographic,
        "Phonetic": value.phonetic,
    }
    for part, text in parts.items():
        if text:
            doc[f"{keyword}.{part}"] = str(text)


def _element_value(elem: DataElement, tz: timezone | None) -> JSONValue:
    raw = elem.value
    if isinstance(raw, MultiValue | list | tuple):
        if len(raw) > MAX_VALUES:
            raise OverflowError
        items = [_normalize_one(elem.VR, item, tz) for item in raw]
        items = [item for item in items if item is not None]
        return items or None
    if elem.VR in ("US", "SS", "FL", "FD") and isinstance(raw, bytes):
        raise OverflowError
    return _normalize_one(elem.VR, raw, tz)


def _timezone(ds: Dataset) -> timezone | None:
    text = ds.get("TimezoneOffsetFromUTC")
    if not text:
        return None
    try:
        return v.parse_offset(str(text))
    except ValueError:
        return None


def _walk_sequence(
    items: Iterable[Dataset], prefix: str, depth: int, tz: timezone | None, doc: Document
) -> None:
    for index, item in enumerate(items):
        if index >= MAX_ITEMS:
            break
        for elem in item:
            if elem.tag.is_private or not elem.keyword or elem.VR in BULK_VRS:
                continue
            path = f"{prefix}.{elem.keyword}"
            if elem.VR == "SQ":
                if depth < MAX_DEPTH and elem.keyword not in SKIPPED_SEQUENCES:
                    _walk_sequence(elem.value, path, depth + 1, tz, doc)
                continue
            try:
                value = _element_value(elem, tz)
            except (ValueError, TypeError, OverflowError):
                continue
            if value is None:
                continue
            bucket = doc.setdefault(path, [])
            for one in value if isinstance(value, list) else [value]:
                if one not in bucket:
                    bucket.append(one)


def _collect(ds: Dataset, keywords: set[str], found: dict[str, list[str]], depth: int = 0) -> None:
    """Depth-first search of every sequence for the given keywords (derived fields)."""
    if depth > 8:
        return
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _collect(item, keywords, found, depth + 1)
        elif elem.keyword in keywords and depth > 0 and elem.value not in (None, ""):
            bucket = found.setdefault(elem.keyword, [])
            text = str(elem.value).strip()
            if text and text not in bucket and len(bucket) < 1000:
                bucket.append(text)


def _sequence_values(ds: Dataset, sequence: str, keyword: str) -> list[str]:
    out: list[str] = []
    for item in ds.get(sequence) or []:
        value = item.get(keyword)
        if value not in (None, "") and str(value) not in out:
            out.append(str(value))
    return out


def is_ct_localizer(ds: Dataset) -> bool:
    """CT scouts/topograms: ImageType LOCALIZER, or a single-row/column projection series."""
    if ds.get("Modality") != "CT":
        return False
    image_type = [str(t).upper() for t in (ds.get("ImageType") or [])]
    if "LOCALIZER" in image_type:
        return True
    description = str(ds.get("SeriesDescription") or "").lower()
    return any(word in description for word in ("scout", "topogram", "localizer", "surview"))


def flatten(ds: Dataset, transfer_syntax_uid: str | None = None) -> Document:
    """Build the typed metadata document of the instance ``ds`` (the series' representative)."""
    doc: Document = {}
    invalid: dict[str, str] = {}
    tz = _timezone(ds)
    for elem in ds:
        if elem.tag.is_private or not elem.keyword or elem.tag.element == 0:
            continue
        if elem.VR in BULK_VRS:
            continue
        if elem.VR == "SQ":
            if elem.keyword not in SKIPPED_SEQUENCES:
                _walk_sequence(elem.value, elem.keyword, 1, tz, doc)
            continue
        try:
            value = _element_value(elem, tz)
        except OverflowError:
            continue
        except (ValueError, TypeError):
            invalid[elem.keyword] = str(elem.value)
            continue
        if value is None:
            continue
        doc[elem.keyword] = value
        if elem.VR == "PN" and isinstance(elem.value, PersonName):
            _pn_parts(elem.keyword, elem.value, doc)
    if transfer_syntax_uid:
        doc["TransferSyntaxUID"] = transfer_syntax_uid
    if invalid:
        doc["_invalid"] = invalid

    found: dict[str, list[str]] = {}
    _collect(ds, {"SeriesInstanceUID", "CodeMeaning"}, found)
    own = ds.get("SeriesInstanceUID")
    referenced = [uid for uid in found.get("SeriesInstanceUID", []) if uid != own]
    if referenced:
        doc["referenced_series"] = referenced
    if found.get("CodeMeaning"):
        doc["code_meanings"] = found["CodeMeaning"]
    for field, sequence, keyword in (
        ("segment_labels", "SegmentSequence", "SegmentLabel"),
        ("segment_algorithms", "SegmentSequence", "SegmentAlgorithmName"),
        ("roi_names", "StructureSetROISequence", "ROIName"),
    ):
        found_values = _sequence_values(ds, sequence, keyword)
        if found_values:
            doc[field] = found_values
    localizer = is_ct_localizer(ds)
    doc["is_localizer"] = localizer
    if "Modality" in doc:
        doc["modality_curated"] = "CT-LOCALIZER" if localizer else doc["Modality"]
    return doc
