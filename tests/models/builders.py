"""Model folders and archives as the formats lay them out (the weights are stand-in bytes:
the registry checks layout and digests, it does not load weights)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any


def nnunet_folder(root: Path, *, labels: dict[str, int] | None = None, folds: int = 1) -> Path:
    """``Dataset101_Spheres/nnUNetTrainer__nnUNetPlans__3d_fullres`` with its JSON files."""
    folder = root / "Dataset101_Spheres" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    folder.mkdir(parents=True)
    dataset = {
        "name": "Spheres",
        "description": "Two kinds of spheres in noise",
        "labels": labels or {"background": 0, "big": 1, "small": 2},
        "channel_names": {"0": "CT"},
        "numTraining": 8,
        "file_ending": ".nii.gz",
        "licence": "CC-BY-4.0",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset))
    plans = {
        "dataset_name": "Dataset101_Spheres",
        "configurations": {"3d_fullres": {"spacing": [3.0, 1.5, 1.5]}},
    }
    (folder / "plans.json").write_text(json.dumps(plans))
    for fold in range(folds):
        (folder / f"fold_{fold}").mkdir()
        (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(bytes(range(256)) * 64)
    return folder


def monai_bundle(root: Path) -> Path:
    folder = root / "spleen_ct_segmentation"
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "docs").mkdir()
    meta = {
        "name": "Spleen CT segmentation",
        "version": "0.5.9",
        "authors": "MONAI team",
        "network_data_format": {
            "inputs": {"image": {"modality": "CT"}},
            "outputs": {"pred": {"channel_def": {"0": "background", "1": "spleen"}}},
        },
    }
    (folder / "configs" / "metadata.json").write_text(json.dumps(meta))
    (folder / "configs" / "inference.json").write_text("{}")
    (folder / "models" / "model.pt").write_bytes(b"\x80\x02weights" * 100)
    (folder / "docs" / "README.md").write_text("# Spleen\nSegments the spleen on CT.\n")
    (folder / "LICENSE").write_text("Apache License 2.0")
    return folder


def manifest_folder(root: Path, **manifest: Any) -> Path:
    """A TorchScript model described by its own ``kahu-model.json``."""
    folder = root / "torch-model"
    folder.mkdir(parents=True)
    (folder / "model.ts").write_bytes(b"PK-not-really-torchscript" * 10)
    (folder / "README.md").write_text("# A model\n")
    data = {
        "name": "liver",
        "version": "2.0",
        "format": "torchscript",
        "licence": "MIT",
        "entry": "model.ts",
        "labels": {"1": {"name": "liver", "code": ["SCT", "10200004", "Liver"]}},
        "inputs": {"modality": ["CT"]},
        "resources": {"memory_mb": 2048, "gpu": "optional"},
        **manifest,
    }
    (folder / "kahu-model.json").write_text(json.dumps(data))
    return folder


def zip_of(folder: Path, target: Path, *, prefix: str = "") -> Path:
    with zipfile.ZipFile(target, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, prefix + path.relative_to(folder).as_posix())
    return target
