"""DIMSE command sets (PS3.7 9.3, E.1) of the storage receive loop, read and written directly.

A command set is a short data set of group 0000 elements, always Implicit VR Little Endian.
The receive loop needs C-STORE-RQ and C-ECHO-RQ and their responses; decoding and encoding
them here costs microseconds where a round trip through pydicom costs about a millisecond an
instance. The tests check both directions against pydicom.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

C_STORE_RQ = 0x0001
C_STORE_RSP = 0x8001
C_ECHO_RQ = 0x0030
C_ECHO_RSP = 0x8030
NO_DATA_SET = 0x0101

# group 0000 element numbers
_AFFECTED_SOP_CLASS = 0x0002
_COMMAND_FIELD = 0x0100
_MESSAGE_ID = 0x0110
_MESSAGE_ID_RESPONDED = 0x0120
_DATA_SET_TYPE = 0x0800
_STATUS = 0x0900
_ERROR_COMMENT = 0x0902
_AFFECTED_SOP_INSTANCE = 0x1000
_MOVE_ORIGINATOR_AET = 0x1030

_ELEMENT = struct.Struct("<HHL")


class CommandError(ValueError):
    """A command set that cannot be read."""


@dataclass(frozen=True, slots=True)
class Command:
    """The fields of a request's command set the receive loop acts on."""

    command_field: int
    message_id: int
    has_data_set: bool
    affected_sop_class: str = ""
    affected_sop_instance: str = ""
    move_originator_aet: str = ""


def decode(data: bytes) -> Command:
    """Read a request command set; raises :class:`CommandError` when it is malformed."""
    fields: dict[int, bytes] = {}
    offset, end = 0, len(data)
    while offset < end:
        if end - offset < 8:
            raise CommandError("truncated element header in command set")
        group, element, length = _ELEMENT.unpack_from(data, offset)
        offset += 8
        if group != 0x0000 or length > end - offset:
            raise CommandError(f"invalid element ({group:04X},{element:04X}) in command set")
        fields[element] = data[offset : offset + length]
        offset += length

    def number(element: int) -> int:
        raw = fields.get(element)
        if raw is None or len(raw) != 2:
            raise CommandError(f"command set lacks (0000,{element:04X})")
        return int(struct.unpack("<H", raw)[0])

    def text(element: int) -> str:
        return fields.get(element, b"").decode("ascii", "replace").rstrip("\0 ").lstrip(" ")

    return Command(
        command_field=number(_COMMAND_FIELD),
        message_id=number(_MESSAGE_ID),
        has_data_set=number(_DATA_SET_TYPE) != NO_DATA_SET,
        affected_sop_class=text(_AFFECTED_SOP_CLASS),
        affected_sop_instance=text(_AFFECTED_SOP_INSTANCE),
        move_originator_aet=text(_MOVE_ORIGINATOR_AET),
    )


def _element(element: int, value: bytes) -> bytes:
    return _ELEMENT.pack(0x0000, element, len(value)) + value


def _uid(value: str) -> bytes:
    raw = value.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def _text(value: str) -> bytes:
    raw = value.encode("ascii", "replace")[:64]
    return raw + b" " if len(raw) % 2 else raw


def response(request: Command, status: int, error_comment: str | None = None) -> bytes:
    """The response command set to ``request`` (C-STORE-RSP or C-ECHO-RSP)."""
    body = [_element(_AFFECTED_SOP_CLASS, _uid(request.affected_sop_class))]
    body.append(_element(_COMMAND_FIELD, struct.pack("<H", request.command_field | 0x8000)))
    body.append(_element(_MESSAGE_ID_RESPONDED, struct.pack("<H", request.message_id)))
    body.append(_element(_DATA_SET_TYPE, struct.pack("<H", NO_DATA_SET)))
    body.append(_element(_STATUS, struct.pack("<H", status)))
    if error_comment and status != 0x0000:
        body.append(_element(_ERROR_COMMENT, _text(error_comment)))
    if request.affected_sop_instance:
        body.append(_element(_AFFECTED_SOP_INSTANCE, _uid(request.affected_sop_instance)))
    payload = b"".join(body)
    return _element(0x0000, struct.pack("<L", len(payload))) + payload
