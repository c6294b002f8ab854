"""A MONAI bundle as a model: a real bundle (MONAI's inference.json layout, with its
evaluator, transforms that reorient and resample, sliding-window inference and weights)
installed from its folder segments an MR series into a SEG with the bundle's label, and the
labels are exactly those of running the same bundle directly (``monai.bundle.run``)
on the same volume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from kahu.core import Kahu
from kahu.models.archive import tree_digest
from kahu.operators.bundle import config_file
from kahu.operators.metrics import dice
from kahu.operators.seg import seg_to_arrays
from kahu.operators.volumes import convert_series
from tests.conftest import SYSTEM
from tests.flow.conftest import run_workflow
from tests.synthetic import series_from_volume

pytest.importorskip("monai")

PRE = [
    {"_target_": "LoadImaged", "keys": "image"},
    {"_target_": "EnsureChannelFirstd", "keys": "image"},
    {"_target_": "Orientationd", "keys": "image", "axcodes": "RAS"},
    {"_target_": "Spacingd", "keys": "image", "pixdim": [2.0, 2.0, 2.0], "mode": "bilinear"},
    {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": 0, "a_max": 4095,
     "b_min": 0.0, "b_max": 1.0, "clip": True},
    {"_target_": "EnsureTyped", "keys": "image"},
]  # fmt: skip
POST = [
    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
    {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
     "nearest_interp": False, "to_tensor": True},
    {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
    {"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "resample": False,
     "output_dtype": "$np.uint8", "separate_folder": False},
]  # fmt: skip
INFERENCE = {
    "imports": ["$import glob", "$import numpy as np"],
    "bundle_root": ".",
    "output_dir": "$@bundle_root + '/eval'",
    "dataset_dir": "/workspace/data",
    "datalist": "$list(sorted(glob.glob(@dataset_dir + '/*.nii.gz')))",
    "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "network_def": {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 2,
                    "kernel_size": 1},
    "network": "$@network_def.to(@device)",
    "preprocessing": {"_target_": "Compose", "transforms": PRE},
    "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]",
                "transform": "@preprocessing"},
    "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1,
                   "shuffle": False, "num_workers": 0},
    "inferer": {"_target_": "SlidingWindowInferer", "roi_size": [24, 24, 24],
                "sw_batch_size": 1, "overlap": 0.25},
    "postprocessing": {"_target_": "Compose", "transforms": POST},
    "handlers": [{"_target_": "CheckpointLoader", "load_path": "$@bundle_root + '/models/model.pt'",
                  "load_dict": {"model": "@network"}}],
    "evaluator": {"_target_": "SupervisedEvaluator", "device": "@device",
                  "val_data_loader": "@dataloader", "network": "@network", "inferer": "@inferer",
                  "postprocessing": "@postprocessing", "val_handlers": "@handlers",
                  "amp": False},
    "initialize": ["$monai.utils.set_determinism(seed=0)"],
    "run": ["$@evaluator.run()"],
}  # fmt: skip


#: ``python -m monai.bundle run`` without its command-line package (fire)
DIRECT = "import json, sys; from monai.bundle import run; run(**json.loads(sys.argv[1]))"


def _bundle(root: Path, out_channels: int = 2) -> Path:
    """A MONAI bundle whose network (a 1x1x1 convolution) calls a voxel foreground when its
    scaled intensity is above one half."""
    import torch

    folder = root / "ball_mr_segmentation"
    for part in ("configs", "models", "docs"):
        (folder / part).mkdir(parents=True)
    meta = {
        "name": "Ball MR",
        "version": "0.1.0",
        "authors": "Kahu tests",
        "network_data_format": {
            "inputs": {"image": {"modality": "MR", "num_channels": 1}},
            "outputs": {"pred": {"channel_def": {"0": "background", "1": "ball"}}},
        },
    }
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    (folder / "configs" / "inference.json").write_text(json.dumps(INFERENCE, indent=1))
    (folder / "docs" / "README.md").write_text("# Ball\nFinds the bright ball.\n")
    (folder / "LICENSE").write_text("Apache License 2.0")
    network = torch.nn.Conv3d(1, out_channels, 1)
    with torch.no_grad():
        network.weight[:] = torch.linspace(-10, 10, out_channels).reshape(-1, 1, 1, 1, 1)
        network.bias[:] = torch.linspace(5, -5, out_channels)
    torch.save(network.state_dict(), folder / "models" / "model.pt")
    return folder


def _ball() -> tuple[Any, np.ndarray]:
    """A noisy MR volume (anisotropic, one axis flipped) with a bright ball, and the ball."""
    import SimpleITK as sitk

    z, y, x = np.indices((30, 40, 44))
    ball = ((z - 15) * 2.5) ** 2 + ((y - 20) * 1.2) ** 2 + ((x - 22) * 1.5) ** 2 < 18**2
    rng = np.random.default_rng(3)
    values = np.clip(rng.normal(600, 150, ball.shape) + 2800 * ball, 0, None)
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing((1.5, 1.2, 2.5))
    image.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
    image.SetOrigin((-30.0, 20.0, 4.0))
    return image, ball


def _files(kahu: Kahu, series_uid: str) -> list[Path]:
    instances = kahu.catalog.instances(SYSTEM, series_uid=series_uid)
    return [Path(str(kahu.store.local_path(i.blob_key))) for i in instances]


def test_a_bundle_segments_as_the_bundle_run_directly(local_kahu: Kahu, tmp_path: Path) -> None:
    import SimpleITK as sitk

    kahu = local_kahu
    model = kahu.models.install(_bundle(tmp_path / "bundles"))
    assert (model.name, model.version, model.format) == ("ball-mr", "0.1.0", "monai-bundle")
    image, ball = _ball()
    files = series_from_volume(image, modality="MR", patient_id="BALL")
    [uid] = {r.series_instance_uid for r in kahu.ingestor.ingest_many(files)}
    assert uid is not None

    run_id = run_workflow(kahu, "monai-bundle", [uid], {"model": "ball-mr"})
    state = kahu.flow.wait_idle(run_id, 300)
    assert state == "succeeded", [(t.operator, t.error) for t in kahu.runs.tasks(run_id)]
    assert kahu.runs.run(run_id).params["model"] == "ball-mr@0.1.0"
    [result] = [r["series_uid"] for r in kahu.lineage.of(uid)["results"]]
    [seg_file] = _files(kahu, result)
    seg = pydicom.dcmread(seg_file)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["ball"]
    assert seg.SegmentSequence[0].SegmentAlgorithmName == "ball-mr"
    assert seg.SeriesDescription == "ball-mr 0.1.0"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == uid
    ordered = sorted(
        kahu.catalog.instances(SYSTEM, series_uid=uid), key=lambda i: i.instance_number or 0
    )
    arrays, _ = seg_to_arrays(seg, [i.sop_instance_uid for i in ordered])
    predicted = arrays["labels"] > 0
    assert predicted.shape == ball.shape
    assert dice(predicted, ball) > 0.95
    # nothing was saved into the installed (read-only) folder: its digest is the same
    assert not (model.path / "eval").exists()
    assert tree_digest(model.path).sha256 == model.sha256

    # the same bundle run as its users run it, on the same volume
    data = convert_series(_files(kahu, uid), tmp_path / "data", "ball")
    out = tmp_path / "direct"
    bundle = model.path
    args = {"config_file": str(bundle / "configs" / "inference.json"),
            "meta_file": str(bundle / "configs" / "metadata.json"), "bundle_root": str(bundle),
            "dataset_dir": str(data.parent), "output_dir": str(out)}  # fmt: skip
    direct_run = subprocess.run(
        [sys.executable, "-c", DIRECT, json.dumps(args)],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert direct_run.returncode == 0, direct_run.stderr[-3000:]
    [direct_file] = out.glob("*.nii.gz")
    labels = sitk.ReadImage(str(direct_file))
    # its slices in the order of the series' instances (the volume's order is along the
    # slice normal, which this series' flipped axis reverses)
    slices = [labels.TransformPhysicalPointToIndex([float(v) for v in pydicom.dcmread(
        Path(str(kahu.store.local_path(i.blob_key))), stop_before_pixels=True
    ).ImagePositionPatient])[2] for i in ordered]  # fmt: skip
    direct = sitk.GetArrayFromImage(labels)[slices] > 0
    assert direct.shape == predicted.shape
    assert int((direct != predicted).sum()) == 0


def test_weights_that_do_not_fit_the_network_fail_the_run_clearly(
    local_kahu: Kahu, tmp_path: Path
) -> None:
    folder = _bundle(tmp_path / "bundles")
    _bundle(tmp_path / "other", out_channels=3)  # its weights, in the first one's folder
    (tmp_path / "other" / "ball_mr_segmentation" / "models" / "model.pt").replace(
        folder / "models" / "model.pt"
    )
    local_kahu.models.install(folder)
    image, _ = _ball()
    files = series_from_volume(image, modality="MR", patient_id="BALL")
    [uid] = {r.series_instance_uid for r in local_kahu.ingestor.ingest_many(files)}
    run_id = run_workflow(local_kahu, "monai-bundle", [str(uid)], {"model": "ball-mr"})
    assert local_kahu.flow.wait_idle(run_id, 300) == "failed"
    [failed] = [t for t in local_kahu.runs.tasks(run_id) if t.state == "failed"]
    assert failed.operator == "bundle"
    assert "size mismatch" in str(failed.error), failed.error
    assert local_kahu.lineage.of(str(uid))["results"] == []


def test_a_config_the_bundle_lacks_is_named(tmp_path: Path) -> None:
    folder = _bundle(tmp_path)
    assert config_file(folder, "inference") == folder / "configs" / "inference.json"
    with pytest.raises(ValueError, match=r"the bundle has no configs/evaluate\.json"):
        config_file(folder, "evaluate")
