"""Where a series' thumbnail is kept: a small PNG in the blob store beside the series, made
by the thumbnails workflow and served by the gallery and WADO-RS."""

from __future__ import annotations

from kahu.dicom.uids import validate_uid

#: the edge of a stored thumbnail (WADO-RS's default thumbnail viewport)
SIZE = 128


def thumbnail_key(series_uid: str) -> str:
    return f"thumbnails/{validate_uid(series_uid, 'SeriesInstanceUID')}.png"
