"""multipart/related (RFC 2387) as PS3.18 uses it: parsing STOW bodies, streaming WADO replies."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from kahu.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class MediaType:
    type: str
    params: dict[str, str]


def _split(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside double quotes (a quoted boundary may hold ';' or ',')."""
    out: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            out.append("".join(current))
            current = []
        else:
            current.append(char)
    out.append("".join(current))
    return out


def parse_media_type(header: str) -> MediaType:
    """``multipart/related; type="application/dicom"; boundary=x`` into its parts."""
    pieces = _split(header, ";")
    params: dict[str, str] = {}
    for piece in pieces[1:]:
        key, sep, value = piece.partition("=")
        if sep:
            params[key.strip().lower()] = value.strip().strip('"')
    return MediaType(pieces[0].strip().lower(), params)


def parse_accept(header: str | None) -> list[MediaType]:
    """The media ranges of an Accept header, in the order given (quality values ignored)."""
    if not header:
        return []
    return [parse_media_type(r) for r in _split(header, ",") if r.strip()]


def split_related(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a multipart body as (lower-cased headers, content)."""
    if not boundary or len(boundary) > 200:
        raise InvalidInput("multipart body without a usable boundary parameter")
    delimiter = b"--" + boundary.encode("latin-1")
    position = body.find(delimiter)
    if position < 0:
        raise InvalidInput("multipart body does not contain its boundary")
    position += len(delimiter)
    parts: list[tuple[dict[str, str], bytes]] = []
    while True:
        if body[position : position + 2] == b"--":
            return parts
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            raise InvalidInput("multipart body is truncated")
        position = line_end + 2
        headers: dict[str, str] = {}
        if body[position : position + 2] == b"\r\n":
            content_start = position + 2
        else:
            header_end = body.find(b"\r\n\r\n", position)
            if header_end < 0:
                raise InvalidInput("multipart part headers are not terminated")
            for line in body[position:header_end].split(b"\r\n"):
                name, sep, value = line.decode("latin-1").partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            content_start = header_end + 4
        end = body.find(b"\r\n" + delimiter, content_start)
        if end < 0:
            raise InvalidInput("multipart body is truncated (no closing boundary)")
        parts.append((headers, body[content_start:end]))
        position = end + 2 + len(delimiter)


def new_boundary() -> str:
    return uuid.uuid4().hex


def related_stream(parts: Iterable[tuple[str, bytes]], boundary: str) -> Iterator[bytes]:
    """Encode (content type, content) pairs as a multipart/related body, part by part."""
    delimiter = b"--" + boundary.encode("ascii")
    for content_type, content in parts:
        yield delimiter + b"\r\nContent-Type: " + content_type.encode("ascii") + b"\r\n\r\n"
        yield content
        yield b"\r\n"
    yield delimiter + b"--\r\n"
