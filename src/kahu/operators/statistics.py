"""Cohort statistics that may leave a site: series counts by modality, body part and
manufacturer, and the volume of one SEG segment (n, mean, standard deviation), with small-cell
suppression (a count below k is not released, nor a pair of cells that would give it away), and
their aggregation across sites at a coordinator."""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from typing import TYPE_CHECKING, Any

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, internal_operator

if TYPE_CHECKING:
    from kahu.flow.services import OperatorServices

FIELDS = ("Modality", "BodyPartExamined", "Manufacturer")
SUPPRESSED = "(suppressed)"
MISSING = "(none)"
RESULT = "statistics.json"
AGGREGATE = "aggregate.json"
BUCKET = "federation"


def _value(value: Any) -> str:
    if isinstance(value, list):
        value = value[0] if value else None
    text = str(value).strip() if value is not None else ""
    return text[:64] or MISSING


def suppress(counts: Counter[str], k: int) -> dict[str, int]:
    """The counts of at least ``k``, the rest as one ``(suppressed)`` cell when it reaches
    ``k``; when the suppressed total would be below ``k`` (a total minus the released cells
    would give it away) the smallest released cells are suppressed with it until it is not."""
    released = {key: n for key, n in counts.items() if n >= k}
    hidden = sum(n for n in counts.values() if n < k)
    while 0 < hidden < k and released:
        smallest = min(released, key=lambda key: (released[key], key))
        hidden += released.pop(smallest)
    if hidden >= k:
        released[SUPPRESSED] = hidden
    return dict(sorted(released.items()))


def _segment_volume_ml(data: bytes, label: str) -> float | None:
    """The volume of segment ``label`` of one SEG instance (None: no such segment)."""
    import numpy as np
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    numbers = [
        int(s.SegmentNumber)
        for s in getattr(ds, "SegmentSequence", [])
        if str(getattr(s, "SegmentLabel", "")).lower() == label.lower()
    ]
    if not numbers:
        return None
    shared = ds.SharedFunctionalGroupsSequence[0]
    measures = shared.PixelMeasuresSequence[0]
    dy, dx = (float(v) for v in measures.PixelSpacing)
    dz = float(getattr(measures, "SpacingBetweenSlices", None) or measures.SliceThickness)
    frames = np.asarray(ds.pixel_array).reshape(int(getattr(ds, "NumberOfFrames", 1)), -1)
    voxels = 0
    for index, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        # one segment only: its identification is shared by every frame
        ident = getattr(group, "SegmentIdentificationSequence", None) or getattr(
            shared, "SegmentIdentificationSequence", None
        )
        if ident and int(ident[0].ReferencedSegmentNumber) in numbers:
            voxels += int(np.count_nonzero(frames[index]))
    return voxels * dx * dy * dz / 1000.0


def cohort_statistics_task(ctx: TaskContext, services: OperatorServices) -> None:
    """Once per run: the suppressed counts (and SEG volume summary) of the run's cohort."""
    k = int(ctx.params.get("min_cell_count") or 5)
    label = str(ctx.params.get("seg_label") or "")
    counts: dict[str, Counter[str]] = {f: Counter() for f in FIELDS}
    volumes: list[float] = []
    for uid in ctx.series:
        row = services.series(uid)
        for name in FIELDS:
            counts[name][_value(row.document.get(name))] += 1
        if label and (row.modality or "") == "SEG":
            for instance in services.instances(uid):
                volume = _segment_volume_ml(services.read(instance), label)
                if volume is not None:
                    volumes.append(volume)
    total = len(ctx.series)
    result: dict[str, Any] = {
        "min_cell_count": k,
        "series": total if total >= k else None,
        "by": {name: suppress(counts[name], k) for name in FIELDS},
    }
    if label:
        n = len(volumes)
        released = n >= k
        mean = sum(volumes) / n if n else 0.0
        var = sum((v - mean) ** 2 for v in volumes) / (n - 1) if n > 1 else 0.0
        result["segment_volume_ml"] = {
            "label": label,
            "n": n if released else None,
            "mean": round(mean, 3) if released else None,
            "sd": round(math.sqrt(var), 3) if released else None,
        }
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    (ctx.out_dir / RESULT).write_text(json.dumps(result, indent=1, sort_keys=True))
    ctx.log.info("statistics of %d series (cells below %d suppressed)", total, k)


def _pool(parts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """n, mean and sd of the union of groups given by their own n, mean and sd."""
    parts = [p for p in parts if p.get("n")]
    if not parts:
        return None
    n = sum(int(p["n"]) for p in parts)
    mean = sum(int(p["n"]) * float(p["mean"]) for p in parts) / n
    squares = sum(
        (int(p["n"]) - 1) * float(p["sd"]) ** 2 + int(p["n"]) * (float(p["mean"]) - mean) ** 2
        for p in parts
    )
    return {"n": n, "mean": round(mean, 3), "sd": round(math.sqrt(squares / (n - 1)), 3)}


def aggregate_statistics_task(ctx: TaskContext, services: OperatorServices) -> None:
    """At the coordinator: add up the statistics each site of the federated run sent."""
    run = str(ctx.params["federated_run"])
    store = services.objects()
    sites: dict[str, dict[str, Any]] = {}
    for info in store.objects(BUCKET, f"{run}/"):
        site, _, name = info.key[len(run) + 1 :].partition("/")
        if name != "statistics":
            continue
        with store.open(BUCKET, info.key) as handle:
            sites[site] = json.load(handle)
    if not sites:
        raise ValueError(f"no site sent statistics for {run}")
    by: dict[str, Counter[str]] = {name: Counter() for name in FIELDS}
    for stats in sites.values():
        for name in FIELDS:
            by[name].update({k: int(v) for k, v in (stats.get("by") or {}).get(name, {}).items()})
    volumes = [s["segment_volume_ml"] for s in sites.values() if s.get("segment_volume_ml")]
    result: dict[str, Any] = {
        "federated_run": run,
        "sites": sorted(sites),
        "series": sum(int(s.get("series") or 0) for s in sites.values()),
        "sites_with_suppressed_total": sorted(
            n for n, s in sites.items() if s.get("series") is None
        ),
        "by": {name: dict(sorted(by[name].items())) for name in FIELDS},
        "per_site": sites,
    }
    if volumes:
        result["segment_volume_ml"] = {"label": volumes[0].get("label"), **(_pool(volumes) or {})}
    data = json.dumps(result, indent=1, sort_keys=True).encode()
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    (ctx.out_dir / AGGREGATE).write_bytes(data)
    store.put_bytes(BUCKET, f"{run}/{AGGREGATE}", data)
    ctx.log.info("aggregated the statistics of %d sites", len(sites))


def cohort_statistics(name: str = "statistics") -> Operator:
    return internal_operator(
        name,
        "kahu.operators.statistics:cohort_statistics_task",
        per="run",
        resources=Resources(cpu=0.5, memory_mb=256),
        description="Series counts by modality, body part, manufacturer; SEG volume summary",
    )


def aggregate_statistics(name: str = "aggregate") -> Operator:
    return internal_operator(
        name,
        "kahu.operators.statistics:aggregate_statistics_task",
        per="run",
        resources=Resources(cpu=0.25, memory_mb=256),
        description="Add up the statistics the sites of a federated run sent",
    )
