"""TotalSegmentator on CT (or MR with its MR tasks), with weights the site installed: listed
as unavailable, not failing, until they are (``kahu models import``)."""

from __future__ import annotations

from kahu.flow import Resources, Workflow, python_operator
from kahu.flow.model import model_parameter
from kahu.operators import dicom_to_volume, get_input, labels_to_seg_operator, store_results
from kahu.operators.totalseg import HOW, segment_task

WORKFLOW = Workflow(
    name="totalsegmentator",
    version="1.0",
    title="TotalSegmentator",
    description=(
        "Segments the anatomy of a CT (117 structures with the 'total' task) with "
        "TotalSegmentator and stores a DICOM SEG whose segments carry its class names, "
        "SNOMED CT codes and colours. Runs with weights the site installed; never downloads."
    ),
    parameters={
        "type": "object",
        "properties": {
            "model": model_parameter(
                "The installed TotalSegmentator weights",
                formats=["totalsegmentator"],
                default="totalsegmentator",
            ),
            "task": {
                "type": "string",
                "default": "total",
                "pattern": "^[a-z0-9_]{1,40}$",
                "description": "TotalSegmentator task (total, total_mr, lung_vessels, ...)",
            },
            "fast": {"type": "boolean", "default": False, "description": "3 mm model (faster)"},
        },
        "additionalProperties": False,
    },
    expected_input={"Modality": ["CT", "MR"]},
    results_may_leave=True,
    requires=("torch", "nnunetv2", "totalsegmentator"),
    requires_models=("totalsegmentator",),
    install=HOW,
    operators=(
        get_input(),
        dicom_to_volume(inputs=["get-input"]),
        python_operator(
            "totalsegmentator",
            segment_task,
            inputs=["dicom-to-volume"],
            resources=Resources(cpu=2, memory_mb=16384),
            models=["model"],
            description="TotalSegmentator with the installed weights (GPU when present)",
        ),
        labels_to_seg_operator(
            "to-seg", labels_from="totalsegmentator", segments={}, algorithm="TotalSegmentator"
        ),
        store_results(["to-seg"]),
    ),
)
