"""Segmentation evaluation: SEGs of the same images, a reference (ground truth) against each
prediction, scored label by label with Dice, HD95 and surface Dice; the dataset's table
(CSV, JSON) goes to the object store, the report (box plots) to the catalog as PDF and image.
"""

from __future__ import annotations

from kahu.flow import Workflow
from kahu.operators import (
    evaluate,
    get_input,
    get_referenced,
    put_objects,
    report_to_dicom,
    seg_masks,
    store_results,
)

WORKFLOW = Workflow(
    name="segmentation-evaluation",
    version="1.0",
    title="Segmentation evaluation",
    description=(
        "Compares SEGs of the same images: the reference (the SEG drawn by hand, or the one "
        "whose description, creator or algorithm contains 'reference') against every other, "
        "label by label (matched by name) with Dice, HD95 and surface Dice. Writes a table "
        "(CSV, JSON) to the object store and a report with box plots to the catalog."
    ),
    parameters={
        "type": "object",
        "properties": {
            "reference": {
                "type": "string",
                "default": "",
                "maxLength": 64,
                "description": "Text in the reference SEG's description, creator or algorithm "
                "(empty: the SEG drawn by hand)",
            },
            "tolerance_mm": {
                "type": "number",
                "default": 1.0,
                "minimum": 0,
                "maximum": 100,
                "description": "Surface Dice tolerance in mm",
            },
            "title": {"type": "string", "default": "Segmentation evaluation", "maxLength": 64},
            "bucket": {
                "type": "string",
                "default": "evaluations",
                "pattern": "^[a-z0-9][a-z0-9.-]{1,62}$",
                "description": "Object store bucket of the tables",
            },
        },
        "additionalProperties": False,
    },
    expected_input={"Modality": ["SEG"]},
    results_may_leave=True,
    requires=("scipy", "matplotlib"),
    install="pip install 'kahu[ai]' (docs/models.md)",
    operators=(
        get_input(),
        get_referenced(),
        seg_masks(),
        evaluate(),
        report_to_dicom(),
        store_results(["report-to-dicom"], per="run"),
        put_objects(["evaluate"]),
    ),
)
