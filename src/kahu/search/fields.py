"""The searchable fields of a series: DICOM keywords of the metadata document and the derived
fields, each with the type that decides how a query compares it.

Names are case-insensitive (``modality`` is ``Modality``); sequence items and person-name parts
are reached with dots (``AnatomicRegionSequence.CodeMeaning``, ``PatientName.FamilyName``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydicom.datadict import dictionary_VR, keyword_dict

from kahu.dicom.metadata import BULK_VRS, DERIVED_FIELDS
from kahu.errors import InvalidInput


class UnknownField(InvalidInput):
    """A query names a field that no series can have."""


class FieldType(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    DATE = "date"  # YYYY-MM-DD
    TIME = "time"  # HH:MM:SS[.ffffff]
    DATETIME = "datetime"  # ISO-8601, UTC where known
    BOOLEAN = "boolean"


@dataclass(frozen=True, slots=True)
class Field:
    """A resolved field: its canonical name, its type and, for derived fields kept in the
    catalog's own columns, that column."""

    name: str
    type: FieldType
    column: str | None = None


_VR_TYPES = {
    "DA": FieldType.DATE,
    "TM": FieldType.TIME,
    "DT": FieldType.DATETIME,
    "AS": FieldType.NUMBER,  # the document holds an age in years
    **dict.fromkeys(("DS", "FL", "FD", "IS", "US", "SS", "UL", "SL", "SV", "UV"), FieldType.NUMBER),
}
_DERIVED_TYPES = {
    "dataset": Field("dataset", FieldType.TEXT, column="dataset"),
    "tags": Field("tags", FieldType.TEXT, column="tags"),
    "received_at": Field("received_at", FieldType.DATETIME, column="received_at"),
    "updated_at": Field("updated_at", FieldType.DATETIME, column="updated_at"),
    "instance_count": Field("instance_count", FieldType.NUMBER, column="instance_count"),
    "size_bytes": Field("size_bytes", FieldType.NUMBER, column="size_bytes"),
    "is_localizer": Field("is_localizer", FieldType.BOOLEAN),
}
_PN_PARTS = {
    p.lower(): p
    for p in (
        "FamilyName",
        "GivenName",
        "MiddleName",
        "NamePrefix",
        "NameSuffix",
        "Ideographic",
        "Phonetic",
    )
}
_KEYWORDS = {keyword.lower(): keyword for keyword in keyword_dict}

#: Fields a bare term (no field name) is looked for in.
DESCRIPTIVE = (
    "StudyDescription",
    "SeriesDescription",
    "BodyPartExamined",
    "Modality",
    "ProtocolName",
    "Manufacturer",
    "ManufacturerModelName",
    "InstitutionName",
    "segment_labels",
    "roi_names",
    "code_meanings",
    "dataset",
    "tags",
)


def _vr(keyword: str) -> str:
    return str(dictionary_VR(keyword_dict[keyword]))


def resolve(name: str) -> Field:
    """The field ``name`` means; raises :class:`UnknownField` naming it."""
    lower = name.lower()
    if lower in DERIVED_FIELDS:
        return _DERIVED_TYPES.get(lower, Field(lower, FieldType.TEXT))
    parts = name.split(".")
    canonical: list[str] = []
    vr = ""
    for index, part in enumerate(parts):
        keyword = _KEYWORDS.get(part.lower()) if part else None
        if vr == "PN" and part.lower() in _PN_PARTS and index == len(parts) - 1:
            canonical.append(_PN_PARTS[part.lower()])
            return Field(".".join(canonical), FieldType.TEXT)
        if keyword is None or (index > 0 and vr != "SQ"):
            raise UnknownField(f"unknown field {name!r}")
        canonical.append(keyword)
        vr = _vr(keyword).split(" or ")[0]
    if vr in BULK_VRS or vr == "SQ":
        raise UnknownField(f"field {name!r} holds no searchable value")
    return Field(".".join(canonical), _VR_TYPES.get(vr, FieldType.TEXT))
