"""Putting files into the object store and getting them out again (Kaapana's MinIO
operators): results for people to download, models and reference data for workflows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, internal_operator

if TYPE_CHECKING:
    from kahu.flow.services import OperatorServices


def _bucket_and_prefix(ctx: TaskContext) -> tuple[str, str]:
    bucket = str(ctx.params.get("bucket") or ctx.options.get("bucket") or "")
    prefix = str(ctx.params.get("prefix") or ctx.options.get("prefix") or "")
    if not bucket:
        raise ValueError("no bucket: give the operator one or the run parameter 'bucket'")
    return bucket, prefix.strip("/")


def put_task(ctx: TaskContext, services: OperatorServices) -> None:
    """The files the inputs wrote, as ``[<prefix>/]<run_id>/[<series>/]<input>/<path>``."""
    bucket, prefix = _bucket_and_prefix(ctx)
    job = ctx.job
    store = services.objects()  # the run's project's buckets
    count = 0
    for name in job.inputs:
        if job.inputs[name] == "series" and not job.series_uid:
            folders = {f"{uid}/{name}": path for uid, path in ctx.series_dirs(name).items()}
        else:
            element = f"{job.series_uid}/" if job.series_uid else ""
            folders = {f"{element}{name}": job.in_dir(name)}
        for where, folder in folders.items():
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                parts = [prefix, job.run_id, where, str(path.relative_to(folder))]
                store.put_file(bucket, "/".join(p for p in parts if p), path)
                count += 1
    ctx.log.info("put %d files into bucket %s", count, bucket)


def get_task(ctx: TaskContext, services: OperatorServices) -> None:
    """The objects under the prefix into the output folder, keeping their relative paths."""
    bucket, prefix = _bucket_and_prefix(ctx)
    store = services.objects()  # the run's project's buckets
    found = list(store.objects(bucket, prefix))
    if not found:
        raise ValueError(f"no object under {prefix or '(everything)'} in bucket {bucket}")
    for item in found:
        relative = item.key[len(prefix) :].lstrip("/") if prefix else item.key
        store.get_file(bucket, item.key, ctx.out_dir / relative)
    ctx.log.info("got %d objects from bucket %s", len(found), bucket)


def put_objects(
    inputs: Sequence[str],
    name: str = "put-objects",
    *,
    bucket: str = "",
    prefix: str = "",
    per: str = "run",
) -> Operator:
    """Copy what ``inputs`` wrote into ``bucket`` (run parameters ``bucket`` and ``prefix``
    override), once per run (every series) or per series."""
    return internal_operator(
        name,
        "kahu.operators.objects:put_task",
        inputs=tuple(inputs),
        per="run" if per == "run" else "series",
        resources=Resources(cpu=0.25, memory_mb=256),
        retries=2,
        retry_delay_s=5.0,
        description="Put files into the object store",
        options={"bucket": bucket, "prefix": prefix},
    )


def get_objects(
    name: str = "get-objects", *, bucket: str = "", prefix: str = "", per: str = "run"
) -> Operator:
    """Fetch the objects under ``prefix`` from ``bucket`` (a model, reference data) for the
    operators after it."""
    return internal_operator(
        name,
        "kahu.operators.objects:get_task",
        per="run" if per == "run" else "series",
        resources=Resources(cpu=0.25, memory_mb=256),
        retries=2,
        retry_delay_s=5.0,
        description="Get files from the object store",
        options={"bucket": bucket, "prefix": prefix},
    )
