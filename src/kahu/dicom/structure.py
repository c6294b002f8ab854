"""A structural walk of a Part 10 file that proves every element's declared length is present.

pydicom reads a truncated file without complaint (a short value is simply short), so Kahu walks
the element headers itself before it acknowledges anything: a file cut off by a dropped
connection or a full disk is refused instead of stored.
"""

from __future__ import annotations

import struct

from kahu.errors import InvalidDicom

_UNDEFINED = 0xFFFFFFFF
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"UC", b"UN", b"UR", b"UT", b"SV", b"UV"}
)
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED = frozenset({"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1"})


#: (VR or None when implicit, offset of the value, length) of a top-level element
ElementIndex = dict[int, tuple[bytes | None, int, int]]


class _Walker:
    def __init__(self, data: bytes, explicit: bool, little: bool) -> None:
        self.data = data
        self.explicit = explicit
        self.end = "<" if little else ">"
        self.top: ElementIndex = {}
        self._implicit = struct.Struct(self.end + "HHL")
        self._long = struct.Struct(self.end + "L")
        self._short = struct.Struct(self.end + "H")

    def _fail(self, pos: int, why: str) -> InvalidDicom:
        return InvalidDicom(f"truncated or malformed DICOM at byte {pos}: {why}")

    def header(self, pos: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR, length, position of the value) of the element at ``pos``."""
        data = self.data
        if pos + 8 > len(data):
            raise self._fail(pos, "element header cut off")
        # one unpack reads tag and the implicit 32-bit length; explicit VRs re-read below
        group, elem, length = self._implicit.unpack_from(data, pos)
        tag = (group << 16) | elem
        if group == 0xFFFE or not self.explicit:  # items and delimiters are always implicit
            return tag, None, length, pos + 8
        vr = data[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(data):
                raise self._fail(pos, "element header cut off")
            return tag, vr, self._long.unpack_from(data, pos + 8)[0], pos + 12
        return tag, vr, self._short.unpack_from(data, pos + 6)[0], pos + 8

    def dataset(self, pos: int, stop: int, until_item_end: bool = False, top: bool = False) -> int:
        while pos < stop:
            tag, vr, length, value = self.header(pos)
            if top and length != _UNDEFINED:
                self.top[tag] = (vr, value, length)
            if tag == _ITEM_END and until_item_end:
                return value
            if length == _UNDEFINED:
                pos = self.undefined_element(tag, vr, value)
                continue
            if value + length > len(self.data):
                raise self._fail(
                    pos,
                    f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) declares {length} bytes, "
                    f"{len(self.data) - value} remain",
                )
            # A defined length that fits is all a cut can break: what lies inside was written
            # before the end of the file, so it is not walked (its structure is pydicom's
            # business when the header is parsed).
            pos = value + length
        if until_item_end:
            raise self._fail(pos, "item without its delimiter")
        return pos

    def undefined(self, tag: int, vr: bytes | None, pos: int) -> int:
        """Skip an undefined-length sequence or encapsulated pixel data; return what follows."""
        while True:
            item_tag, _, length, value = self.header(pos)
            if item_tag == _SEQ_END:
                return value
            if item_tag != _ITEM:
                raise self._fail(
                    pos, f"undefined-length ({tag >> 16:04X},{tag & 0xFFFF:04X}) holds a non-item"
                )
            if length == _UNDEFINED:
                pos = self.dataset(value, len(self.data), until_item_end=True)
                continue
            if value + length > len(self.data):
                raise self._fail(
                    pos, f"item declares {length} bytes, {len(self.data) - value} remain"
                )
            pos = value + length

    def undefined_element(self, tag: int, vr: bytes | None, pos: int) -> int:
        if vr == b"UN":
            # PS3.5 6.2.2: UN of undefined length is a sequence in implicit VR little endian
            return _Walker(self.data, explicit=False, little=True).undefined(tag, b"SQ", pos)
        return self.undefined(tag, vr, pos)


def check_complete(
    data: bytes, body_offset: int, transfer_syntax_uid: str
) -> tuple[ElementIndex, bool, bool] | None:
    """Raise :class:`InvalidDicom` unless every element from ``body_offset`` on is complete.

    Returns the top-level elements found on the way with the data set's (explicit VR, little
    endian) encoding, or ``None`` for a deflated data set (which is not walked: its inflation
    proves the stream whole).
    """
    if transfer_syntax_uid in DEFLATED:
        return None
    explicit = transfer_syntax_uid != IMPLICIT_VR_LITTLE_ENDIAN
    if explicit and body_offset + 6 <= len(data):
        # Some writers encode the data set in implicit VR under an explicit transfer syntax;
        # like pydicom, trust the first element's bytes over the declared syntax.
        vr = data[body_offset + 4 : body_offset + 6]
        explicit = vr.isalpha() and vr.isupper()
    little = transfer_syntax_uid != EXPLICIT_VR_BIG_ENDIAN
    walker = _Walker(data, explicit=explicit, little=little)
    walker.dataset(body_offset, len(data), top=True)
    return walker.top, explicit, little


def read_meta(data: bytes) -> tuple[int, dict[int, bytes]]:
    """Where the data set starts in a Part 10 file, and the raw values of its meta group."""
    pos = 132
    walker = _Walker(data, explicit=True, little=True)
    meta: dict[int, bytes] = {}
    while pos + 4 <= len(data):
        (group,) = struct.unpack_from("<H", data, pos)
        if group != 0x0002:
            break
        tag, _, length, value = walker.header(pos)
        if length == _UNDEFINED or value + length > len(data):
            raise InvalidDicom("file meta information is cut off or malformed")
        meta[tag] = data[value : value + length]
        pos = value + length
    return pos, meta


def body_offset(data: bytes) -> int:
    """Where the data set starts in a Part 10 file: after the preamble and the meta group."""
    return read_meta(data)[0]
