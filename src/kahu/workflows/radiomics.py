"""Radiomics: IBSI features of each label of the cohort's SEGs on their images (MIRP); a TID
1500 SR per SEG in the catalog, JSON per series and the dataset's table (CSV, Parquet) in the
object store."""

from __future__ import annotations

from kahu.flow import Resources, Workflow, python_operator
from kahu.operators import (
    get_input,
    get_referenced,
    json_to_sr_operator,
    put_objects,
    seg_masks,
    store_results,
)
from kahu.operators.radiomics import FAMILIES, features_task, table_task

WORKFLOW = Workflow(
    name="radiomics",
    version="1.0",
    title="Radiomics (IBSI, MIRP)",
    description=(
        "Computes IBSI radiomics features (shape, intensity, histogram, texture) of each "
        "label of every SEG on its image with MIRP. Stores a DICOM SR (TID 1500) per SEG "
        "linked to the image, the features as JSON and the dataset's table as CSV and Parquet."
    ),
    parameters={
        "type": "object",
        "properties": {
            "families": {
                "type": "array",
                "items": {"enum": list(FAMILIES)},
                "default": list(FAMILIES),
                "minItems": 1,
                "description": "Feature families",
            },
            "bins": {
                "type": "integer",
                "default": 32,
                "minimum": 2,
                "maximum": 512,
                "description": "Grey levels of the texture features (fixed bin number)",
            },
            "bucket": {
                "type": "string",
                "default": "radiomics",
                "pattern": "^[a-z0-9][a-z0-9.-]{1,62}$",
            },
        },
        "additionalProperties": False,
    },
    expected_input={"Modality": ["SEG"]},
    results_may_leave=True,
    requires=("mirp", "pandas", "pyarrow"),
    install="pip install 'kahu[ai]' (docs/models.md)",
    operators=(
        get_input(),
        get_referenced(),
        seg_masks(image=True),
        python_operator(
            "features",
            features_task,
            inputs=["seg-masks"],
            resources=Resources(cpu=1, memory_mb=4096),
            description="IBSI features of each label (MIRP)",
        ),
        json_to_sr_operator(
            "to-sr",
            measurements_from="features",
            source_from="get-referenced",
            series_description="Radiomics features",
        ),
        python_operator(
            "table",
            table_task,
            inputs=["features"],
            per="run",
            resources=Resources(cpu=1, memory_mb=2048),
            description="The dataset's features as CSV and Parquet",
        ),
        store_results(["to-sr"]),
        put_objects(["features", "table"]),
    ),
)
