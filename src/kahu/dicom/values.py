"""Parsing of DICOM string VRs into typed values (PS3.5 6.2).

Each parser returns the normalized value or raises ``ValueError`` for text that breaks the VR;
the caller keeps such text raw and flags it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

_DA_RE = re.compile(r"^(\d{4})\.?(\d{2})\.?(\d{2})$")
_TM_RE = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(?:\.(\d{1,6}))?)?)?$")
_DT_RE = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$"
)
_AS_RE = re.compile(r"^(\d{3})([DWMY])$")
_OFFSET_RE = re.compile(r"^([+-])(\d{2})(\d{2})$")
_AS_YEARS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def parse_da(text: str) -> str:
    """``20200131`` (or legacy ``2020.01.31``) to ``2020-01-31``."""
    m = _DA_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a DA value: {text!r}")
    return date(int(m[1]), int(m[2]), int(m[3])).isoformat()


def parse_tm(text: str) -> str:
    """``101530.25`` to ``10:15:30.25``; keeps the precision that was given."""
    m = _TM_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a TM value: {text!r}")
    hh, mm, ss, frac = m.groups()
    # 60 is allowed for leap seconds (PS3.5 6.2 TM)
    if int(hh) > 23 or (mm and int(mm) > 59) or (ss and int(ss) > 60):
        raise ValueError(f"not a TM value: {text!r}")
    out = hh
    if mm:
        out += f":{mm}"
    if ss:
        out += f":{ss}"
    if frac:
        out += f".{frac}"
    return out


def parse_offset(text: str) -> timezone:
    """``+0100`` to a timezone (TimezoneOffsetFromUTC, DT suffix)."""
    m = _OFFSET_RE.match(text.strip())
    if not m or int(m[2]) > 14 or int(m[3]) > 59:
        raise ValueError(f"not a UTC offset: {text!r}")
    delta = timedelta(hours=int(m[2]), minutes=int(m[3]))
    return timezone(-delta if m[1] == "-" else delta)


def parse_dt(text: str, default_offset: timezone | None = None) -> str:
    """DT to ISO-8601; converted to UTC (``...Z``) when its own or a default offset is known.

    Missing month/day default to 1 and missing time components to 0, as PS3.5 allows a DT to be
    truncated at any component.
    """
    m = _DT_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a DT value: {text!r}")
    year, month, day, hh, mi, ss, frac, off = m.groups()
    if frac and not ss:
        raise ValueError(f"not a DT value: {text!r}")
    value = datetime(
        int(year),
        int(month or 1),
        int(day or 1),
        int(hh or 0),
        int(mi or 0),
        min(int(ss or 0), 59),
        int((frac or "0").ljust(6, "0")),
    )
    tz = parse_offset(off) if off else default_offset
    if tz is None:
        return value.isoformat()
    utc = value.replace(tzinfo=tz).astimezone(UTC)
    return utc.replace(tzinfo=None).isoformat() + "Z"


def parse_as(text: str) -> float:
    """Age string ``045Y`` / ``006M`` / ``010W`` / ``003D`` to years."""
    m = _AS_RE.match(text.strip())
    if not m:
        raise ValueError(f"not an AS value: {text!r}")
    return round(int(m[1]) * _AS_YEARS[m[2]], 4)


def parse_ds(text: str) -> float:
    value = float(text.strip())
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"not a DS value: {text!r}")
    return value


def parse_is(text: str) -> int:
    stripped = text.strip()
    if not re.match(r"^[+-]?\d+$", stripped):
        raise ValueError(f"not an IS value: {text!r}")
    return int(stripped)
