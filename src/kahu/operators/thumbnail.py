"""Series thumbnails: the middle instance rendered as a small PNG, kept in the blob store
beside the series so the gallery and WADO-RS serve it without decoding the images again."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, internal_operator

if TYPE_CHECKING:
    from kahu.flow.services import OperatorServices


def make_thumbnail(ctx: TaskContext, services: OperatorServices) -> None:
    """Per series: render the middle instance; a series without pixels (SR, PDF) is skipped."""
    import pydicom

    from kahu.catalog.thumbnails import SIZE
    from kahu.dicom.render import CannotRender, render

    uid = ctx.series_uid
    if uid is None:
        raise ValueError("thumbnails run per series")
    rows = services.instances(uid)
    if not rows:
        raise ValueError(f"series {uid} has no instances")
    row = rows[len(rows) // 2]
    try:
        data = io.BytesIO(services.read(row))
        png = render(pydicom.dcmread(data), viewport=(SIZE, SIZE))
    except CannotRender as exc:
        ctx.log.info("no thumbnail for %s: %s", uid, exc)
        return
    services.put_thumbnail(uid, png)
    (ctx.out_dir / "thumbnail.png").write_bytes(png)


def thumbnails(name: str = "thumbnails") -> Operator:
    """Per series: a PNG thumbnail of the middle instance, stored for the gallery."""
    return internal_operator(
        name,
        "kahu.operators.thumbnail:make_thumbnail",
        resources=Resources(cpu=0.5, memory_mb=256),
        description="Render a thumbnail of each series",
    )
