"""Writing the Part 10 file meta header (PS3.10 7.1) directly, without building a Dataset.

pydicom's FileMetaDataset validates every assignment; on the C-STORE hot path that costs more
than storing the file. These six elements are simple enough to encode by hand (explicit VR
little endian, always), and a test checks pydicom reads the result back identically.
"""

from __future__ import annotations

import struct

#: Identifies file meta headers that Kahu generated (PS3.7 D.3.3.2); a UUID-derived 2.25 root.
IMPLEMENTATION_CLASS_UID = "2.25.94287463281196405219287193625394622711"
IMPLEMENTATION_VERSION_NAME = "KAHU_1"


def _element(element: int, vr: bytes, value: bytes, pad: bytes) -> bytes:
    if len(value) % 2:
        value += pad
    if vr == b"OB":
        return struct.pack("<HH2sHI", 0x0002, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def file_meta_header(
    sop_class_uid: str,
    sop_instance_uid: str,
    transfer_syntax_uid: str,
    source_ae_title: str | None = None,
) -> bytes:
    """Preamble, ``DICM`` and a file meta group for a data set with these identifiers."""
    body = b"".join(
        [
            _element(0x0001, b"OB", b"\x00\x01", b"\x00"),
            _element(0x0002, b"UI", sop_class_uid.encode("ascii"), b"\x00"),
            _element(0x0003, b"UI", sop_instance_uid.encode("ascii"), b"\x00"),
            _element(0x0010, b"UI", transfer_syntax_uid.encode("ascii"), b"\x00"),
            _element(0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii"), b"\x00"),
            _element(0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii"), b" "),
        ]
    )
    if source_ae_title:
        body += _element(0x0016, b"AE", source_ae_title.strip().encode("ascii"), b" ")
    group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(body))
    return b"\x00" * 128 + b"DICM" + group_length + body
