"""Operators that talk to the catalog: fetching a run's series as DICOM files, and storing
results back through the one ingest path with their lineage."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, internal_operator

if TYPE_CHECKING:
    from kahu.flow.services import OperatorServices

#: files stored in one ingest transaction
_BATCH = 64


def _write_series(services: OperatorServices, series_uid: str, folder: Path) -> int:
    """The series' files as ``<SOPInstanceUID>.dcm`` in ``folder``; how many (none for a
    series outside the run's project)."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for instance in services.instances(series_uid):
        services.copy_to(instance, folder / f"{instance.sop_instance_uid}.dcm")
        count += 1
    return count


def fetch_series(ctx: TaskContext, services: OperatorServices) -> None:
    """Write the task's series as ``<SOPInstanceUID>.dcm`` files into the output folder."""
    uid = ctx.series_uid
    if uid is None:
        raise ValueError("get-input runs per series")
    count = _write_series(services, uid, ctx.out_dir)
    if count == 0:
        raise ValueError(f"series {uid} has no instances in project {services.project}")
    ctx.log.info("fetched %d instances of %s", count, uid)


def fetch_referenced(ctx: TaskContext, services: OperatorServices) -> None:
    """The series the task's series refers to (a SEG's CT, an SR's images), each in
    ``<out>/<SeriesInstanceUID>/``. A reference missing from the run's project (absent, or
    only in another project) fails the task naming it, unless the operator was made with
    ``missing="skip"``."""
    uid = ctx.series_uid
    if uid is None:
        raise ValueError("get-referenced runs per series")
    referenced = services.series(uid).document.get("referenced_series", [])
    missing = []
    for ref in referenced:
        if _write_series(services, ref, ctx.out_dir / ref) == 0:
            (ctx.out_dir / ref).rmdir()
            missing.append(ref)
    if missing and ctx.options.get("missing") != "skip":
        raise ValueError(
            f"series {uid} refers to {len(missing)} series not in project "
            f"{services.project}: " + ", ".join(missing)
        )
    ctx.log.info(
        "fetched %d referenced series of %s%s",
        len(referenced) - len(missing),
        uid,
        f" ({len(missing)} missing: {', '.join(missing)})" if missing else "",
    )


def _files(folders: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for folder in folders:
        if folder.is_dir():
            found += sorted(p for p in folder.rglob("*") if p.is_file())
    return found


def ingest_results(ctx: TaskContext, services: OperatorServices) -> None:
    """Ingest every file under the inputs' folders; record which run made each series and
    from which source series. A file that is not valid DICOM fails the task by name."""
    job = ctx.job
    folders = []
    for name, per in job.inputs.items():
        if per == "series" and not job.series_uid:
            folders += list(ctx.series_dirs(name).values())
        else:
            folders.append(job.in_dir(name))
    files = _files(folders)
    source = f"workflow:{job.workflow}:{job.run_id}"
    stored: dict[str, None] = {}
    rejected: list[str] = []
    for start in range(0, len(files), _BATCH):
        chunk = files[start : start + _BATCH]
        results = services.ingest([p.read_bytes() for p in chunk], source=source)
        for path, result in zip(chunk, results, strict=True):
            if result.status == "rejected":
                rejected.append(f"{path.name}: {result.reason}")
            elif result.series_instance_uid:
                stored[result.series_instance_uid] = None
    for series_uid in stored:
        if job.series_uid:
            sources = [job.series_uid]
        else:
            doc = services.series(series_uid).document
            sources = [r for r in doc.get("referenced_series", []) if r in job.series]
        services.record_lineage(series_uid, sources)
    ctx.log.info("stored %d files in %d series", len(files) - len(rejected), len(stored))
    if rejected:
        raise ValueError(f"{len(rejected)} files were not stored: " + "; ".join(rejected[:5]))


def get_input(name: str = "get-input", *, cpu: float = 0.5, memory_mb: int = 256) -> Operator:
    """Per series: the series' DICOM files in ``batch/<uid>/<name>/`` (Kaapana's
    ``get-input-data``)."""
    return internal_operator(
        name,
        "kahu.operators.catalog:fetch_series",
        resources=Resources(cpu=cpu, memory_mb=memory_mb),
        retries=2,
        retry_delay_s=2.0,
        description="Fetch the series' DICOM files from the catalog",
    )


def get_referenced(name: str = "get-referenced", *, missing: str = "fail") -> Operator:
    """Per series: the series it refers to, ``<out>/<SeriesInstanceUID>/*.dcm`` (Kaapana's
    ``get-ref-series``); ``missing="skip"`` goes on without those not in the catalog."""
    if missing not in ("fail", "skip"):
        raise ValueError("missing is 'fail' or 'skip'")
    return internal_operator(
        name,
        "kahu.operators.catalog:fetch_referenced",
        resources=Resources(cpu=0.5, memory_mb=256),
        retries=2,
        retry_delay_s=2.0,
        description="Fetch the series each series refers to",
        options={"missing": missing},
    )


def store_results(
    inputs: Sequence[str], name: str = "store-results", *, per: str = "series"
) -> Operator:
    """Store the DICOM files the ``inputs`` wrote into Kahu (one ingest path), with lineage."""
    return internal_operator(
        name,
        "kahu.operators.catalog:ingest_results",
        inputs=tuple(inputs),
        per="series" if per == "series" else "run",
        resources=Resources(cpu=0.5, memory_mb=512),
        description="Store result DICOM files in the catalog with their lineage",
    )
