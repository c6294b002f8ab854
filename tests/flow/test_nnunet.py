"""nnU-Net v2 through Kahu, on the CPU: a tiny configuration learns a synthetic task of two
labels (balls and boxes in noise) from CT series with their SEGs; the model enters the
registry with its training report in the catalog, and the inference workflow segments an
unseen series into a SEG with the model's labels and colours (Dice > 0.9 per label)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from kahu.core import Kahu
from kahu.flow.job import RunModel, RunPaths
from kahu.operators.metrics import dice
from kahu.operators.nnunet import ensemble
from kahu.operators.seg import seg_to_arrays, volume_to_seg
from tests.conftest import SYSTEM
from tests.flow.conftest import run_workflow
from tests.synthetic import series_from_volume

SIZE = 32


def _case(rng: np.random.Generator) -> tuple[Any, np.ndarray]:
    """A noisy volume with a bright ball (1) and a dark box (2), and its label map."""
    import SimpleITK as sitk

    z, y, x = np.indices((SIZE, SIZE, SIZE))
    centre, radius = rng.uniform(11, 21, 3), rng.uniform(5, 8)
    labels = np.zeros((SIZE, SIZE, SIZE), np.uint8)
    labels[((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) < radius**2] = 1
    corner, side = rng.integers(2, SIZE - 12, 3), int(rng.integers(6, 11))
    box = np.zeros_like(labels, bool)
    box[
        corner[0] : corner[0] + side, corner[1] : corner[1] + side, corner[2] : corner[2] + side
    ] = True
    labels[box & (labels == 0)] = 2
    values = rng.normal(0, 1, labels.shape) + 3.0 * (labels == 1) - 3.0 * (labels == 2)
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing((1.0, 1.0, 1.0))
    return image, labels


def _store(kahu: Kahu, image: Any, patient: str) -> tuple[str, list[pydicom.Dataset]]:
    files = series_from_volume(image, modality="CT", patient_id=patient)
    [uid] = {r.series_instance_uid for r in kahu.ingestor.ingest_many(files)}
    assert uid is not None
    return uid, [pydicom.dcmread(io.BytesIO(f)) for f in files]


def _seg(kahu: Kahu, ct: list[pydicom.Dataset], labels: np.ndarray, names: dict[int, str]) -> str:
    seg = volume_to_seg(labels, ct, names, algorithm=("annotator", "1"), series_description="GT")
    out = io.BytesIO()
    seg.save_as(out, enforce_file_format=True)
    return str(kahu.ingestor.ingest(out.getvalue()).series_instance_uid)


@pytest.mark.timeout(600)  # training on the CPU: about 4 minutes
def test_train_install_and_segment(local_kahu: Kahu) -> None:
    kahu = local_kahu
    rng = np.random.default_rng(7)
    segs = []
    for index in range(6):  # one SEG each; label names in any case
        image, labels = _case(rng)
        _, ct = _store(kahu, image, f"TRAIN{index}")
        names = {1: "BALL" if index == 0 else "ball", 2: "Box"}
        segs.append(_seg(kahu, ct, labels, names))
    image, labels = _case(rng)  # one image, two SEGs: merged
    _, ct = _store(kahu, image, "TRAIN6")
    segs.append(_seg(kahu, ct, (labels == 1).astype(np.uint8), {1: "ball"}))
    segs.append(_seg(kahu, ct, (labels == 2).astype(np.uint8), {1: "box"}))
    image, labels = _case(rng)  # two SEGs that claim the same voxels: refused
    overlapping_uid, ct = _store(kahu, image, "TRAIN7")
    segs.append(_seg(kahu, ct, (labels > 0).astype(np.uint8), {1: "ball"}))
    segs.append(_seg(kahu, ct, (labels == 2).astype(np.uint8), {1: "box"}))

    params = {"model_name": "spheres", "version": "1", "epochs": 20,
              "iterations_per_epoch": 20, "max_features": 64}  # fmt: skip
    run_id = run_workflow(kahu, "nnunet-training", segs, params)
    state = kahu.flow.wait_idle(run_id, 900)
    assert state == "succeeded", [(t.operator, t.error) for t in kahu.runs.tasks(run_id)]
    paths = RunPaths(kahu.settings.runs_root, run_id)
    collection = json.loads((paths.out_dir("collect", "") / "collection.json").read_text())
    assert collection["labels"] == ["ball", "box"]
    assert len(collection["cases"]) == 7
    assert [c for c in collection["cases"] if len(c["segs"]) == 2]  # the merged case
    [refused] = collection["rejected"]
    assert refused["image_series"] == overlapping_uid
    assert refused["reason"].startswith("labels ball and box overlap in")

    model = kahu.models.get("spheres", "1")
    assert (model.format, model.projects) == ("nnunetv2", ("default",))
    assert [label.name for label in model.manifest.labels.values()] == ["ball", "box"]
    assert model.source.startswith(f"run {run_id}")
    assert "Validation (fold 0)" in model.readme
    training = json.loads((paths.out_dir("report", "") / "training.json").read_text())
    assert len(training["log"]["train_losses"]) == 20
    assert set(training["validation"]) == {"ball", "box"}
    reports = [s for s in kahu.catalog.list_series(SYSTEM, limit=200)[0] if s.modality == "DOC"]
    assert [s.series_description for s in reports] == ["nnU-Net training report"]

    image, truth = _case(rng)
    target, _ = _store(kahu, image, "UNSEEN")
    run_id = run_workflow(kahu, "nnunet-inference", [target], {"model": "spheres"})
    state = kahu.flow.wait_idle(run_id, 300)
    assert state == "succeeded", [(t.operator, t.error) for t in kahu.runs.tasks(run_id)]
    assert kahu.runs.run(run_id).params["model"] == "spheres@1"
    [result] = [r["series_uid"] for r in kahu.lineage.of(target)["results"]]
    [instance] = kahu.catalog.instances(SYSTEM, series_uid=result)
    seg = pydicom.dcmread(Path(str(kahu.store.local_path(instance.blob_key))))
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["ball", "box"]
    assert all("RecommendedDisplayCIELabValue" in s for s in seg.SegmentSequence)
    algorithm = seg.SegmentSequence[0].SegmentAlgorithmName
    assert (algorithm, seg.SeriesDescription) == ("spheres", "spheres 1")
    ct_uids = [
        i.sop_instance_uid
        for i in sorted(
            kahu.catalog.instances(SYSTEM, series_uid=target), key=lambda i: i.instance_number or 0
        )
    ]
    arrays, _ = seg_to_arrays(seg, ct_uids)
    predicted = arrays["labels"]
    for value in (1, 2):
        assert dice(truth == value, predicted == value) > 0.9, value

    # an ensemble of two models (here a second copy): their probabilities averaged
    copy = shutil.copytree(model.path, kahu.settings.home / "spheres-copy")
    kahu.models.install(copy, overrides={"name": "spheres-b", "version": "2"})
    params = {"model": "spheres", "ensemble_with": "spheres-b"}
    run_id = run_workflow(kahu, "nnunet-inference", [target], params)
    state = kahu.flow.wait_idle(run_id, 300)
    assert state == "succeeded", [(t.operator, t.error) for t in kahu.runs.tasks(run_id)]
    assert kahu.runs.run(run_id).params["ensemble_with"] == "spheres-b@2"
    [result] = [
        r["series_uid"] for r in kahu.lineage.of(target)["results"] if r["series_uid"] != result
    ]
    [instance] = kahu.catalog.instances(SYSTEM, series_uid=result)
    seg = pydicom.dcmread(Path(str(kahu.store.local_path(instance.blob_key))))
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "spheres + spheres-b"
    assert seg.SeriesDescription == "spheres + spheres-b 1 + 2"
    arrays, _ = seg_to_arrays(seg, ct_uids)
    for value in (1, 2):
        assert dice(truth == value, arrays["labels"] == value) > 0.9, value


def test_an_ensemble_needs_the_same_labels(tmp_path: Path) -> None:
    def model(name: str, labels: list[str]) -> RunModel:
        manifest = {"labels": {str(v): {"name": n} for v, n in enumerate(labels, start=1)}}
        return RunModel(name, "1", "nnunetv2", "", tmp_path, manifest)

    both = [model("a", ["ball", "box"]), model("b", ["ball", "box"])]
    assert ensemble(both) == ("a + b", "1 + 1")
    with pytest.raises(ValueError, match="b 1 and a 1 do not have the same labels"):
        ensemble([model("a", ["ball", "box"]), model("b", ["box", "ball"])])


@pytest.mark.parametrize("count", [3])
def test_too_few_cases_is_a_clear_failure(local_kahu: Kahu, count: int) -> None:
    rng = np.random.default_rng(3)
    segs = []
    for index in range(count):
        image, labels = _case(rng)
        _, ct = _store(local_kahu, image, f"FEW{index}")
        segs.append(_seg(local_kahu, ct, labels, {1: "ball", 2: "box"}))
    run_id = run_workflow(local_kahu, "nnunet-training", segs, {"model_name": "few"})
    assert local_kahu.flow.wait_idle(run_id, 300) == "failed"
    [failed] = [t for t in local_kahu.runs.tasks(run_id) if t.state == "failed"]
    assert failed.operator == "collect"
    assert "needs at least 5 cases; 3 are usable" in str(failed.error)
    assert local_kahu.models.all() == []
