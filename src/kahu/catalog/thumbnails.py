"""Series thumbnails: where one is kept (a small PNG in the blob store beside the series,
made by the thumbnails workflow) and how one is made. Every series gets one: its middle image
rendered, or a typed placeholder naming what it is when it has no image to show."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

from kahu.catalog.records import InstanceRow
from kahu.dicom.uids import validate_uid

#: the edge of a stored thumbnail (WADO-RS's default thumbnail viewport)
SIZE = 128


def thumbnail_key(series_uid: str) -> str:
    return f"thumbnails/{validate_uid(series_uid, 'SeriesInstanceUID')}.png"


def make_thumbnail(
    instances: Sequence[InstanceRow],
    read: Callable[[InstanceRow], bytes],
    modality: Callable[[], str],
    *,
    size: tuple[int, int] = (SIZE, SIZE),
    media_type: str = "image/png",
) -> tuple[bytes, str]:
    """A picture of the series of ``instances`` (in their catalog order) fitted into
    ``size``, and what it shows: "image" (the middle image, the middle frame of a
    multi-frame one) or "placeholder" (no instance has pixels, or none Kahu can decode;
    only then is ``modality`` asked for, to name it)."""
    import pydicom

    from kahu.dicom.placeholder import placeholder
    from kahu.dicom.render import CannotRender, render, representative_frame

    images = [row for row in instances if row.rows]
    sop_class = instances[len(instances) // 2].sop_class_uid if instances else ""
    note = "no image"
    # the middle image first, then outwards: one undecodable slice does not blank a series
    middle = len(images) // 2
    for index in sorted(range(len(images)), key=lambda i: abs(i - middle))[:3]:
        row = images[index]
        try:
            ds = pydicom.dcmread(io.BytesIO(read(row)))
            picture = render(
                ds,
                frame=representative_frame(ds),
                viewport=size,
                media_type=media_type,
                quality=80,
            )
            return picture, "image"
        except CannotRender:
            sop_class, note = row.sop_class_uid, "cannot decode"
    return placeholder(modality(), sop_class, note=note, size=size, media_type=media_type), (
        "placeholder"
    )
