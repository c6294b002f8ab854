"""Brain extraction of a T1-weighted MR with deepbet (Fisch et al. 2024), whose TorchScript
weights ship inside its wheel: nothing is downloaded. The brain mask is stored as a DICOM SEG
and the brain volume as a DICOM SR (TID 1500), both referencing the MR. It runs on a GPU when
one is present, on the CPU otherwise (seconds for a 1 mm head). Needs ``pip install
'kahu[ai]'`` (torch, deepbet)."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from kahu.flow import Resources, TaskContext, Workflow, python_operator
from kahu.operators import (
    dicom_to_volume,
    get_input,
    json_to_sr_operator,
    labels_to_seg_operator,
    store_results,
)

SEGMENTS = {
    1: {
        "label": "brain",
        "category": ("SCT", "123037004", "Anatomical Structure"),
        "type": ("SCT", "12738006", "Brain"),
    }
}


def _deepbet_version() -> str:
    try:
        return version("deepbet")
    except PackageNotFoundError:
        return "not installed"


def extract_brain(ctx: TaskContext) -> None:
    """deepbet's mask of the brain on the MR's own grid, and its volume in ml."""
    import SimpleITK as sitk

    try:
        import nibabel as nib
        import torch
        from deepbet import BrainExtraction
    except ImportError as exc:  # launch refuses it first; a worker may lack what the server has
        raise RuntimeError(WORKFLOW.unavailable() or str(exc)) from None

    [volume_file] = sorted(ctx.in_dir.glob("*.nii.gz"))
    image: Any = nib.load(volume_file)
    if len(image.shape) != 3 or min(image.shape) < 16:
        raise ValueError(f"deepbet needs a 3D head volume, not one of shape {image.shape}")
    gpu = torch.cuda.is_available()
    ctx.log.info("deepbet %s on the %s", _deepbet_version(), "GPU" if gpu else "CPU")
    extractor = BrainExtraction(no_gpu=not gpu)
    _, mask, brain_ml = extractor.run(
        image, threshold=float(ctx.params["threshold"]), n_dilate=int(ctx.params["dilate"])
    )
    labels = np.asarray(mask.dataobj).astype(np.uint8)  # the file's voxel order, (x, y, z)
    if not labels.any():
        raise ValueError("deepbet found no brain in this series")
    out = sitk.GetImageFromArray(labels.transpose(2, 1, 0))  # SimpleITK's order, (z, y, x)
    out.CopyInformation(sitk.ReadImage(str(volume_file)))
    sitk.WriteImage(out, str(ctx.out_dir / "labels.nii.gz"), useCompression=True)
    report = {
        "algorithm": {"name": "deepbet", "version": _deepbet_version()},
        "groups": [
            {
                "name": "brain",
                "finding": "Brain",
                "measurements": [
                    {"name": "Volume", "value": round(float(brain_ml), 3), "unit": "ml"}
                ],
            }
        ],
    }
    (ctx.out_dir / "measurements.json").write_text(json.dumps(report, indent=2))
    ctx.log.info("brain volume %.1f ml", brain_ml)


WORKFLOW = Workflow(
    name="brain-extraction",
    version="1.0",
    title="Brain extraction (deepbet)",
    description=(
        "Extracts the brain from a T1-weighted MR with deepbet, a pretrained network whose "
        "weights come with its package (no download). Stores the brain mask as a DICOM SEG "
        "and the brain volume as a DICOM SR, both linked to the MR. GPU when present, else CPU."
    ),
    parameters={
        "type": "object",
        "properties": {
            "threshold": {
                "type": "number",
                "default": 0.5,
                "minimum": 0.01,
                "maximum": 0.99,
                "description": "Probability from which on a voxel is brain",
            },
            "dilate": {
                "type": "integer",
                "default": 0,
                "minimum": -5,
                "maximum": 5,
                "description": "Grow (or, negative, shrink) the mask by this many voxels",
            },
        },
        "additionalProperties": False,
    },
    expected_input={"Modality": ["MR"]},
    results_may_leave=True,
    requires=("torch", "deepbet", "nibabel"),
    install="pip install 'kahu[ai]' (both install offline; docs/models.md)",
    operators=(
        get_input(),
        dicom_to_volume(inputs=["get-input"]),
        python_operator(
            "deepbet",
            extract_brain,
            inputs=["dicom-to-volume"],
            resources=Resources(cpu=2, memory_mb=4096),
            description="Brain mask and volume with deepbet (GPU when present)",
        ),
        labels_to_seg_operator(
            "to-seg",
            labels_from="deepbet",
            segments=SEGMENTS,
            algorithm="deepbet",
            algorithm_version=_deepbet_version(),
            series_description="Brain mask (deepbet)",
        ),
        json_to_sr_operator(
            "to-sr", measurements_from="deepbet", series_description="Brain volume (deepbet)"
        ),
        store_results(["to-seg", "to-sr"]),
    ),
)
