"""UID and AE title rules (PS3.5 9.1, PS3.5 6.2), checked before any value reaches a path."""

from __future__ import annotations

import re

from kahu.errors import InvalidInput, InvalidUID

# PS3.5 9.1: components of digits separated by '.', no leading zero in a multi-digit component,
# at most 64 characters.
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
# PS3.5 6.2 AE: up to 16 characters of the default repertoire, no backslash or control characters.
_AET_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


def is_valid_uid(value: object) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64 and _UID_RE.match(value) is not None


def validate_uid(value: object, what: str = "UID") -> str:
    """Return ``value`` if it is a valid DICOM UID, else raise :class:`InvalidUID`."""
    if not is_valid_uid(value):
        raise InvalidUID(f"invalid {what}: {value!r} (PS3.5 9.1: digits and dots, max 64 chars)")
    assert isinstance(value, str)
    return value


def validate_ae_title(value: str) -> str:
    """Strip and check an AE title; raise :class:`InvalidInput` when it breaks PS3.5 6.2."""
    stripped = value.strip()
    if not _AET_RE.match(stripped):
        raise InvalidInput(f"invalid AE title: {value!r} (1-16 printable characters, no '\\')")
    return stripped
