"""Catalog services as workflows: sending a cohort to a DICOM node, deleting it, and
extracting its metadata again."""

from __future__ import annotations

from kahu.flow import Workflow
from kahu.operators import delete_series, reindex, send_to_node

SEND = Workflow(
    name="send-to-node",
    version="1.0",
    title="Send to a DICOM node",
    description=(
        "Sends each series, byte for byte as stored, to a DICOM node configured with "
        "`kahu nodes add` (C-STORE). A series the node refuses fails with the node's status."
    ),
    parameters={
        "type": "object",
        "properties": {
            "node": {"type": "string", "minLength": 1, "description": "Name of the DICOM node"}
        },
        "required": ["node"],
        "additionalProperties": False,
    },
    results_may_leave=True,
    operators=(send_to_node(),),
)

DELETE = Workflow(
    name="delete-series",
    version="1.0",
    title="Delete series",
    description="Deletes each series of the cohort from the catalog and the store.",
    parameters={
        "type": "object",
        "properties": {
            "confirm": {
                "type": "boolean",
                "const": True,
                "description": "Must be true: the series are deleted for good",
            }
        },
        "required": ["confirm"],
        "additionalProperties": False,
    },
    operators=(delete_series(),),
)

REINDEX = Workflow(
    name="reindex-metadata",
    version="1.0",
    title="Re-index metadata",
    description=(
        "Extracts each series' metadata again from its stored files and replaces what search "
        "and the facets see (after an upgrade of Kahu's extraction, or to repair a series)."
    ),
    parameters={"type": "object", "properties": {}, "additionalProperties": False},
    operators=(reindex(),),
)

WORKFLOWS = [SEND, DELETE, REINDEX]
