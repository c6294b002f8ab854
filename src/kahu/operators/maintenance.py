"""Operators that change or tidy the catalog and the run folders: deleting series,
extracting their metadata again, removing a run's intermediate files once its results are
stored."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from kahu.flow.job import BATCH_NAME, TaskContext
from kahu.flow.model import Operator, Resources, internal_operator

if TYPE_CHECKING:
    from kahu.flow.services import OperatorServices


def delete_series_task(ctx: TaskContext, services: OperatorServices) -> None:
    """Per series: delete it from the catalog and the store (its files, thumbnail)."""
    uid = ctx.series_uid
    if uid is None:
        raise ValueError("delete-series runs per series")
    if ctx.params.get("confirm") is not True:
        raise ValueError("deleting series needs the run parameter confirm=true")
    removed = services.delete_series(uid)
    ctx.log.info("deleted series %s (%d files)", uid, removed)


def reindex_task(ctx: TaskContext, services: OperatorServices) -> None:
    """Per series: extract its metadata again from its first stored instance (after an
    upgrade of the extraction, or a repair) and replace the series' document."""
    uid = ctx.series_uid
    if uid is None:
        raise ValueError("reindex runs per series")
    source = services.reindex_series(uid)
    ctx.log.info("re-indexed %s from %s", uid, source)


def cleanup_task(ctx: TaskContext, services: OperatorServices) -> None:
    """Once per run, last: remove the per-series and run-level outputs of the operators
    named in ``ctx.options["operators"]`` (all but this one when empty); logs, the
    configuration and this operator's folder stay."""
    root = ctx.workflow_dir
    keep = {"conf", "logs", ctx.job.operator}
    wanted = set(ctx.options.get("operators") or [])
    freed = 0
    candidates = [p for p in (root / BATCH_NAME).glob("*/*") if p.is_dir()]
    candidates += [p for p in root.iterdir() if p.is_dir() and p.name != BATCH_NAME]
    for folder in candidates:
        if folder.name in keep or (wanted and folder.name not in wanted):
            continue
        freed += sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        shutil.rmtree(folder)
    for element in (root / BATCH_NAME).glob("*"):
        if element.is_dir() and not any(element.iterdir()):
            element.rmdir()
    ctx.log.info("removed %.1f MB of intermediate files", freed / 1e6)


def delete_series(name: str = "delete-series") -> Operator:
    """Per series: delete it (the run must pass ``confirm=true``)."""
    return internal_operator(
        name,
        "kahu.operators.maintenance:delete_series_task",
        resources=Resources(cpu=0.25, memory_mb=128),
        description="Delete each series from the catalog and the store",
    )


def reindex(name: str = "reindex") -> Operator:
    """Per series: extract the series' metadata again from its stored files."""
    return internal_operator(
        name,
        "kahu.operators.maintenance:reindex_task",
        resources=Resources(cpu=0.5, memory_mb=256),
        description="Extract each series' metadata again from its files",
    )


def cleanup(
    inputs: list[str], name: str = "cleanup", *, operators: list[str] | None = None
) -> Operator:
    """Once per run after ``inputs``: remove intermediate outputs (of ``operators``, or of
    every operator) from the run folder."""
    return internal_operator(
        name,
        "kahu.operators.maintenance:cleanup_task",
        inputs=tuple(inputs),
        per="run",
        resources=Resources(cpu=0.25, memory_mb=128),
        description="Remove intermediate files from the run folder",
        options={"operators": list(operators or [])},
    )
