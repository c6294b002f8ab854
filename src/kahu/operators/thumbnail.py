"""Series thumbnails: the middle image rendered as a small PNG (a typed placeholder for a series
without one), kept in the blob store beside the series so the gallery and WADO-RS serve it
without decoding the images again."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, internal_operator

if TYPE_CHECKING:
    from kahu.flow.services import OperatorServices


def make_thumbnail(ctx: TaskContext, services: OperatorServices) -> None:
    """Per series: render the middle image, or the placeholder of an SR, a PDF, a plan."""
    from kahu.catalog.thumbnails import make_thumbnail as picture

    uid = ctx.series_uid
    if uid is None:
        raise ValueError("thumbnails run per series")
    rows = services.instances(uid)
    if not rows:
        raise ValueError(f"series {uid} has no instances")
    png, shows = picture(rows, services.read, lambda: services.series(uid).modality or "")
    if shows == "placeholder":
        ctx.log.info("series %s has no image to render: a placeholder", uid)
    services.put_thumbnail(uid, png)
    (ctx.out_dir / "thumbnail.png").write_bytes(png)


def thumbnails(name: str = "thumbnails") -> Operator:
    """Per series: a PNG thumbnail of the middle image, stored for the gallery."""
    return internal_operator(
        name,
        "kahu.operators.thumbnail:make_thumbnail",
        resources=Resources(cpu=0.5, memory_mb=256),
        description="Render a thumbnail of each series",
    )
