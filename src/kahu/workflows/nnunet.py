"""nnU-Net v2 workflows: training a model on a dataset of images with their SEGs (the model
goes into the registry, its report into the catalog), and inference with an installed model
(a SEG with the model's label names, codes and colours, linked to the model version and the
source series). Needs ``pip install 'kahu[ai]'``."""

from __future__ import annotations

from kahu.flow import Resources, Workflow, internal_operator, python_operator
from kahu.flow.model import model_parameter
from kahu.operators import (
    dicom_to_volume,
    get_input,
    get_referenced,
    labels_to_seg_operator,
    put_objects,
    report_to_dicom,
    seg_masks,
    store_results,
)
from kahu.operators.nnunet import collect_task, predict_task, report_task, train_task

INSTALL = "pip install 'kahu[ai]' (nnunetv2 and torch install offline; docs/models.md)"

TRAIN = Workflow(
    name="nnunet-training",
    version="1.0",
    title="nnU-Net v2 training",
    description=(
        "Trains an nnU-Net v2 model (3d_fullres, fold 0) on the images of a dataset of SEGs: "
        "SEGs of one image are merged, label names aligned across cases, cases whose labels "
        "overlap are reported and left out. The trained model is installed in the model "
        "registry for the run's project; the training report (loss curves, validation Dice "
        "per label) is stored in the catalog as PDF."
    ),
    parameters={
        "type": "object",
        "properties": {
            "model_name": {
                "type": "string",
                "pattern": "^[a-z0-9][a-z0-9._-]{0,63}$",
                "description": "Name of the model to install",
            },
            "version": {
                "type": "string",
                "default": "",
                "pattern": "^([A-Za-z0-9][A-Za-z0-9._+-]{0,31})?$",
                "description": "Its version (empty: from the run)",
            },
            "licence": {
                "type": "string",
                "default": "Trained at this site on its own data; for use at this site.",
                "minLength": 1,
                "maxLength": 2000,
            },
            "labels": {
                "type": "string",
                "default": "",
                "maxLength": 2000,
                "description": "Comma-separated labels to train, in order (empty: all)",
            },
            "epochs": {"type": "integer", "default": 100, "minimum": 1, "maximum": 2000},
            "iterations_per_epoch": {
                "type": "integer",
                "default": 250,
                "minimum": 1,
                "maximum": 5000,
            },
            "seed": {
                "type": "integer",
                "default": 0,
                "minimum": 0,
                "description": "Seed of the random numbers (runs repeat as far as threads allow)",
            },
            "max_features": {
                "type": "integer",
                "default": 0,
                "minimum": 0,
                "maximum": 512,
                "description": "At most this many feature maps per stage (0: nnU-Net's plan)",
            },
            "bucket": {
                "type": "string",
                "default": "nnunet",
                "pattern": "^[a-z0-9][a-z0-9.-]{1,62}$",
            },
        },
        "required": ["model_name"],
        "additionalProperties": False,
    },
    expected_input={"Modality": ["SEG"]},
    requires=("torch", "nnunetv2", "matplotlib", "scipy"),
    install=INSTALL,
    operators=(
        get_input(),
        get_referenced(),
        seg_masks(image=True),
        python_operator(
            "collect",
            collect_task,
            inputs=["seg-masks"],
            per="run",
            resources=Resources(cpu=1, memory_mb=4096),
            description="Image/SEG pairs as an nnU-Net dataset; overlapping labels refused",
        ),
        python_operator(
            "train",
            train_task,
            inputs=["collect"],
            per="run",
            resources=Resources(cpu=2, memory_mb=12288),
            timeout_s=7 * 24 * 3600.0,
            description="Plan, preprocess, train and validate (GPU when present)",
        ),
        internal_operator(
            "install-model",
            "kahu.operators.nnunet:install_task",
            inputs=["train"],
            per="run",
            description="Install the trained model in the registry",
        ),
        python_operator(
            "report",
            report_task,
            inputs=["train"],
            per="run",
            description="The training report, ready for the catalog",
        ),
        report_to_dicom("report-to-dicom", report_from="report", title="nnU-Net training report"),
        store_results(["report-to-dicom"], per="run"),
        put_objects(["report"]),
    ),
)

PREDICT = Workflow(
    name="nnunet-inference",
    version="1.0",
    title="nnU-Net v2 inference",
    description=(
        "Segments each series with an installed nnU-Net v2 model (all its folds as an "
        "ensemble, or those named; optionally averaged with a second model) and stores a "
        "DICOM SEG with the model's label names, codes and colours, naming the model and its "
        "version, linked to the source series."
    ),
    parameters={
        "type": "object",
        "properties": {
            "model": model_parameter("The installed nnU-Net v2 model", formats=["nnunetv2"]),
            "ensemble_with": model_parameter(
                "Another nnU-Net v2 model with the same labels: the SEG is the average of both "
                "models' probabilities (optional)",
                formats=["nnunetv2"],
            ),
            "folds": {
                "type": "string",
                "default": "",
                "pattern": "^[0-9a-z, ]*$",
                "description": "Comma-separated folds (empty: every fold of the model)",
            },
            "mirroring": {
                "type": "boolean",
                "default": True,
                "description": "Test-time mirroring (slower, slightly better)",
            },
        },
        "required": ["model"],
        "additionalProperties": False,
    },
    results_may_leave=True,
    requires=("torch", "nnunetv2"),
    install=INSTALL,
    operators=(
        get_input(),
        dicom_to_volume(inputs=["get-input"]),
        python_operator(
            "nnunet",
            predict_task,
            inputs=["dicom-to-volume"],
            per="run",  # the model is loaded once for every series
            resources=Resources(cpu=2, memory_mb=8192),
            models=["model", "ensemble_with"],
            description="nnU-Net v2 prediction (GPU when present)",
        ),
        labels_to_seg_operator("to-seg", labels_from="nnunet", segments={}, algorithm="nnunet"),
        store_results(["to-seg"]),
    ),
)

WORKFLOWS = [TRAIN, PREDICT]
