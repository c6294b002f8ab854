"""The end-to-end example: segment a CT by Hounsfield thresholds, store the segmentation as a
DICOM SEG and the segment volumes as a DICOM SR, both with lineage to the CT."""

from __future__ import annotations

import json
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

SEGMENTS = {1: "bone", 2: "soft tissue"}
VERSION = "1.0"


def threshold(ctx: TaskContext) -> None:
    """Label bone (HU >= bone_min) and soft tissue (soft_min <= HU < soft_max); write the
    label volume and the volumes and mean densities as measurement JSON."""
    import SimpleITK as sitk

    [volume_file] = sorted(ctx.in_dir.glob("*.nii.gz"))
    image = sitk.ReadImage(str(volume_file))
    hu = sitk.GetArrayFromImage(image)
    bone_min, soft_min, soft_max = (
        float(ctx.params["bone_min"]),
        float(ctx.params["soft_min"]),
        float(ctx.params["soft_max"]),
    )
    if not soft_min < soft_max:
        raise ValueError(f"soft_min ({soft_min:g}) must be below soft_max ({soft_max:g})")
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[(hu >= soft_min) & (hu < soft_max)] = 2
    labels[hu >= bone_min] = 1
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(ctx.out_dir / "labels.nii.gz"), useCompression=True)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000.0
    groups: list[dict[str, Any]] = []
    for number, name in SEGMENTS.items():
        inside = labels == number
        count = int(inside.sum())
        if not count:
            continue
        groups.append(
            {
                "name": name,
                "finding": name.capitalize(),
                "measurements": [
                    {"name": "Volume", "value": round(count * voxel_ml, 3), "unit": "ml"},
                    {
                        "name": "Mean",
                        "value": round(float(hu[inside].mean()), 1),
                        "unit": "[hnsf'U]",
                    },
                ],
            }
        )
    if not groups:
        raise ValueError("no voxel within the thresholds: nothing to segment")
    report = {
        "algorithm": {"name": "kahu-threshold", "version": WORKFLOW.version},
        "groups": groups,
    }
    (ctx.out_dir / "measurements.json").write_text(json.dumps(report, indent=2))
    ctx.log.info(
        "%s", ", ".join(f"{g['name']}: {g['measurements'][0]['value']} ml" for g in groups)
    )


WORKFLOW = Workflow(
    name="ct-threshold-segmentation",
    version=VERSION,
    title="CT threshold segmentation (example)",
    description=(
        "Segments bone and soft tissue in a CT by Hounsfield thresholds, stores the result "
        "as a DICOM SEG and the segment volumes as a DICOM SR (TID 1500), both linked to the "
        "CT. A small, complete example of a workflow."
    ),
    parameters={
        "type": "object",
        "properties": {
            "bone_min": {
                "type": "number",
                "default": 300,
                "description": "Lowest HU counted as bone",
            },
            "soft_min": {
                "type": "number",
                "default": -100,
                "description": "Lowest HU counted as soft tissue",
            },
            "soft_max": {
                "type": "number",
                "default": 300,
                "description": "HU from which on tissue is no longer soft",
            },
        },
        "additionalProperties": False,
    },
    expected_input={"Modality": ["CT"]},
    results_may_leave=True,
    operators=(
        get_input(),
        dicom_to_volume(inputs=["get-input"]),
        python_operator(
            "threshold",
            threshold,
            inputs=["dicom-to-volume"],
            resources=Resources(cpu=1, memory_mb=2048),
            description="Label bone and soft tissue by HU thresholds",
        ),
        labels_to_seg_operator(
            "to-seg",
            labels_from="threshold",
            segments=SEGMENTS,
            algorithm="kahu-threshold",
            algorithm_version="1.0",
            series_description="Threshold segmentation",
        ),
        json_to_sr_operator(
            "to-sr", measurements_from="threshold", series_description="Threshold volumes"
        ),
        store_results(["to-seg", "to-sr"]),
    ),
)
