"""A MONAI bundle (the MONAI Model Zoo's format) installed as a model runs on each series:
its own inference config, network and transforms, and a SEG with its labels."""

from __future__ import annotations

from kahu.flow import Resources, Workflow, python_operator
from kahu.flow.model import model_parameter
from kahu.operators import dicom_to_volume, get_input, labels_to_seg_operator, store_results
from kahu.operators.bundle import predict_task

WORKFLOW = Workflow(
    name="monai-bundle",
    version="1.0",
    title="MONAI bundle inference",
    description=(
        "Segments each series with an installed MONAI bundle: the bundle's own inference "
        "config (network, weights, preprocessing, inferer, postprocessing), the model loaded "
        "once for the run. Stores a DICOM SEG with the bundle's labels, naming the bundle and "
        "its version, linked to the source series."
    ),
    parameters={
        "type": "object",
        "properties": {
            "model": model_parameter("The installed MONAI bundle", formats=["monai-bundle"]),
            "config": {
                "type": "string",
                "default": "inference",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$",
                "description": "The bundle's config to run (configs/<config>.json or .yaml)",
            },
        },
        "required": ["model"],
        "additionalProperties": False,
    },
    results_may_leave=True,
    requires=("torch", "monai"),
    install="pip install 'kahu[ai]' (torch and monai install offline; docs/models.md)",
    operators=(
        get_input(),
        dicom_to_volume(inputs=["get-input"]),
        python_operator(
            "bundle",
            predict_task,
            inputs=["dicom-to-volume"],
            per="run",  # the bundle is parsed and its weights loaded once for every series
            resources=Resources(cpu=2, memory_mb=8192),
            models=["model"],
            description="The bundle's inference (GPU when present)",
        ),
        labels_to_seg_operator("to-seg", labels_from="bundle", segments={}, algorithm="monai"),
        store_results(["to-seg"]),
    ),
)
