"""What every model's inference operator shares: a model loaded once segments each series'
volume of the run, and leaves per series ``labels.nii.gz`` on the series' own grid and
``seg.json`` (the model's labels as SEG segments) for ``labels_to_seg_operator``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kahu.flow.job import RunModel, TaskContext

#: (series volume, folder to write ``labels.nii.gz`` in) -> None
Segment = Callable[[Path, Path], None]


def each_series(
    ctx: TaskContext,
    model: RunModel,
    segment: Segment,
    where: str,
    algorithm: tuple[str, str] | None = None,
) -> None:
    """Run-level: ``segment`` on the volume of each series of the run's first input. A
    series that fails is logged and left without labels (its SEG task then fails naming
    it); the others go on. Every series failing fails the task. The SEG names
    ``algorithm`` (name, version), the model's by default."""
    failed = []
    for uid, folder in ctx.series_dirs(next(iter(ctx.job.inputs))).items():
        out = ctx.job.paths.out_dir(ctx.job.operator, uid)
        try:
            [volume] = sorted(folder.glob("*.nii.gz"))
            out.mkdir(parents=True, exist_ok=True)
            segment(volume, out)
        except Exception as exc:  # one bad series does not stop the others
            failed.append(uid)
            ctx.log.error("series %s: %s: %s", uid, type(exc).__name__, exc)
            (out / "labels.nii.gz").unlink(missing_ok=True)
            continue
        write_seg_spec(out, model.labels, algorithm or (model.name, model.version))
    ctx.log.info("%s %s on the %s; %d series failed", model.name, model.version, where, len(failed))
    if failed and len(failed) == len(ctx.series):
        raise RuntimeError(f"every series failed: {', '.join(failed[:5])}")


def write_seg_spec(
    out_dir: Path, labels: dict[int, dict[str, Any]], algorithm: tuple[str, str]
) -> None:
    """``seg.json``: the model's labels as SEG segments (for ``labels_to_seg_operator``)."""
    segments = {
        str(value): {
            "label": label["name"],
            "type": label.get("code"),
            "category": label.get("category"),
            "colour": label.get("colour", ""),
        }
        for value, label in sorted(labels.items())
    }
    spec = {"segments": segments, "algorithm": list(algorithm),
            "series_description": f"{algorithm[0]} {algorithm[1]}"}  # fmt: skip
    (out_dir / "seg.json").write_text(json.dumps(spec, indent=2))
