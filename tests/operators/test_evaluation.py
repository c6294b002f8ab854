"""Segmentation evaluation: the metrics against MONAI's, and the workflow on SEGs in the
catalog (reference vs predictions, label by label, the table and the report)."""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pydicom
import pytest

from kahu.auth.policy import EVERYTHING
from kahu.core import Kahu
from kahu.flow.job import RunPaths
from kahu.operators.metrics import scores
from kahu.operators.seg import volume_to_seg
from kahu.workflows.evaluation import WORKFLOW
from tests.flow.conftest import flow_settings, run_workflow, start_kahu
from tests.synthetic import ct_volume

SPACING = (2.5, 0.8, 0.8)  # ct_volume's slices, rows, columns


def ball(shape: tuple[int, ...], centre: tuple[float, ...], radius_mm: float) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    distance = sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, SPACING, strict=True))
    return distance < radius_mm**2


class TestMetrics:
    @pytest.mark.parametrize("seed", [0, 1, 2, 3])
    def test_the_same_as_monai(self, seed: int) -> None:
        import torch
        from monai.metrics import compute_hausdorff_distance, compute_surface_dice

        rng = np.random.default_rng(seed)
        shape = (16, 32, 32)
        ref = ball(shape, tuple(rng.uniform(6, 10, 3)), rng.uniform(5, 9))
        pred = ball(shape, tuple(rng.uniform(6, 10, 3)), rng.uniform(5, 9))
        ours = scores(ref, pred, SPACING, tolerance_mm=1.5)

        def tensor(a: np.ndarray) -> Any:
            return torch.tensor(a[None, None].astype(np.float32))

        with warnings.catch_warnings():  # MONAI's deprecation of its own helper's argument
            warnings.simplefilter("ignore", FutureWarning)
            hd95 = compute_hausdorff_distance(
                tensor(pred), tensor(ref), percentile=95, spacing=list(SPACING)
            )
            nsd = compute_surface_dice(
                tensor(pred), tensor(ref), class_thresholds=[1.5], spacing=list(SPACING),
                include_background=True,
            )  # fmt: skip
        assert ours.hd95 == pytest.approx(hd95.item(), abs=1e-4)
        assert ours.surface_dice == pytest.approx(nsd.item(), abs=1e-4)
        overlap = (ref & pred).sum() * 2 / (ref.sum() + pred.sum())
        assert ours.dice == pytest.approx(overlap)

    def test_identical_empty_and_missing(self) -> None:
        mask = ball((12, 20, 20), (6, 10, 10), 6)
        same = scores(mask, mask, SPACING)
        assert (same.dice, same.hd95, same.surface_dice) == (1.0, 0.0, 1.0)
        empty = np.zeros_like(mask)
        assert scores(empty, empty, SPACING).dice == 1.0
        missed = scores(mask, empty, SPACING)
        assert (missed.dice, missed.hd95, missed.surface_dice) == (0.0, None, 0.0)
        with pytest.raises(ValueError, match="shapes"):
            scores(mask, mask[1:], SPACING)


def _seg(ct: list[pydicom.Dataset], labels: np.ndarray, names: dict[int, str], what: str) -> bytes:
    seg = volume_to_seg(labels, ct, names, algorithm=(what, "1"), series_description=what)
    out = io.BytesIO()
    seg.save_as(out, enforce_file_format=True)
    return out.getvalue()


@pytest.fixture
def kahu(make_settings: Any) -> Iterator[Kahu]:
    instance = start_kahu(flow_settings(make_settings))
    yield instance
    instance.stop()


def test_the_workflow_scores_each_prediction_label_by_label(kahu: Kahu) -> None:
    """Image 1: a reference and two predictions (one perfect, one shifted); image 2: only a
    reference, left out with the reason."""
    kahu.workflows.get(WORKFLOW.name)  # the installed workflow, by its entry point
    seg_uids: list[str] = []
    expected: dict[tuple[str, str], float] = {}
    for patient in ("EVAL1", "EVAL2"):
        files, _ = ct_volume(12, 32, patient_id=patient, shuffle=False)
        kahu.ingestor.ingest_many(files)
        ct = [pydicom.dcmread(io.BytesIO(f)) for f in files]
        shape = (12, 32, 32)
        body, lesion = ball(shape, (6, 16, 16), 9), ball(shape, (6, 20, 12), 3.5)
        reference = np.where(lesion, 2, np.where(body, 1, 0)).astype(np.uint8)
        segs = [("Ground truth", reference)]
        if patient == "EVAL1":
            shifted = np.roll(reference, 2, axis=2)
            segs += [("model A", reference.copy()), ("model B", shifted)]
            for name, value in (("liver", 1), ("tumour", 2)):
                expected[("model A", name)] = 1.0
                expected[("model B", name)] = scores(
                    reference == value, shifted == value, SPACING
                ).dice
        for what, labels in segs:
            result = kahu.ingestor.ingest(_seg(ct, labels, {1: "Liver", 2: "tumour"}, what))
            seg_uids.append(str(result.series_instance_uid))

    run_id = run_workflow(kahu, WORKFLOW.name, seg_uids, {"reference": "ground truth"})
    assert kahu.flow.wait_idle(run_id, 120) == "succeeded", _task_errors(kahu, run_id)
    out = RunPaths(kahu.settings.runs_root, run_id).out_dir("evaluate", "")
    report = json.loads((out / "evaluation.json").read_text())
    got = {(r["prediction"], r["label"]): r["dice"] for r in report["rows"]}
    assert got == pytest.approx(expected, abs=1e-6)
    assert {r["label"] for r in report["rows"]} == {"liver", "tumour"}  # names matched
    [left_out] = report["skipped"]
    assert left_out["reason"] == "no SEG besides the reference"
    assert report["summary"]["liver"]["dice"]["n"] == 2
    assert (out / "boxplot.png").read_bytes().startswith(b"\x89PNG")
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF-")
    with open(out / "evaluation.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 4

    made = [
        s.modality for s in kahu.catalog.list_series(EVERYTHING, limit=100)[0]
        if s.modality in ("DOC", "OT")
    ]  # fmt: skip
    assert sorted(made) == ["DOC", "OT"]
    keys = [o.key for o in kahu.objects.of_project("default").objects("evaluations", run_id)]
    assert f"{run_id}/evaluate/evaluation.csv" in keys


def test_no_reference_is_a_clear_failure(kahu: Kahu) -> None:
    files, _ = ct_volume(8, 16, patient_id="EVAL3", shuffle=False)
    kahu.ingestor.ingest_many(files)
    ct = [pydicom.dcmread(io.BytesIO(f)) for f in files]
    labels = ball((8, 16, 16), (4, 8, 8), 5).astype(np.uint8)
    uids = [
        str(kahu.ingestor.ingest(_seg(ct, labels, {1: "liver"}, what)).series_instance_uid)
        for what in ("model A", "model B")
    ]
    run_id = run_workflow(kahu, WORKFLOW.name, uids)  # reference "": the one drawn by hand
    assert kahu.flow.wait_idle(run_id, 120) == "failed"
    [task] = [t for t in kahu.runs.tasks(run_id) if t.state == "failed"]
    assert "0 SEGs drawn by hand (MANUAL); one is the reference" in str(task.error)


def _task_errors(kahu: Kahu, run_id: str) -> list[str]:
    return [f"{t.operator}: {t.error}" for t in kahu.runs.tasks(run_id) if t.error]
