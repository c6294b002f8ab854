"""Packing a run's outputs for download: one zip of what an operator wrote for every series."""

from __future__ import annotations

import zipfile
from collections.abc import Sequence

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, python_operator

#: already compressed: stored as they are
_COMPRESSED = (".gz", ".zip", ".png", ".jpg", ".jpeg", ".nrrd")


def zip_task(ctx: TaskContext) -> None:
    """Once per run: ``<run_id>.zip`` of the first input's per-series folders, one folder
    per series (``<SeriesInstanceUID>/<file>``)."""
    name = next(iter(ctx.job.inputs))
    folders = ctx.series_dirs(name)
    by_series = bool(ctx.options.get("by_series", True))
    if not folders:
        raise ValueError(f"no series has output from {name}: nothing to export")
    target = ctx.out_dir / f"{ctx.run_id}.zip"
    count = 0
    with zipfile.ZipFile(target, "w", compresslevel=1) as archive:
        for uid, folder in sorted(folders.items()):
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                method = (
                    zipfile.ZIP_STORED
                    if path.name.lower().endswith(_COMPRESSED)
                    else zipfile.ZIP_DEFLATED
                )
                inside = str(path.relative_to(folder))
                archive.write(
                    path, f"{uid}/{inside}" if by_series else inside, compress_type=method
                )
                count += 1
    ctx.log.info("%s: %d files of %d series", target.name, count, len(folders))


def zip_outputs(inputs: Sequence[str], name: str = "zip", *, by_series: bool = True) -> Operator:
    """Once per run: a zip of the per-series outputs of ``inputs[0]``, downloadable from
    ``GET /api/v1/runs/{id}/files/<name>/<run_id>.zip``; each series' files in a folder named
    by its SeriesInstanceUID unless ``by_series`` is False (de-identified files name their
    own folders)."""
    return python_operator(
        name,
        zip_task,
        inputs=inputs,
        per="run",
        resources=Resources(cpu=1, memory_mb=512),
        description="Pack the per-series outputs into one zip",
        options={"by_series": by_series},
    )
