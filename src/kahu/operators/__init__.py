"""Built-in operators. Workflows (Kahu's own and everyone else's) use them through this
public API::

    from kahu.operators import get_input, dicom_to_volume, labels_to_seg_operator, store_results

Each function returns an :class:`~kahu.flow.model.Operator` to put in a workflow; the
conversions they run are plain functions in the modules below, usable on their own. The names
load on first use: a task process importing a workflow module pays only for what it uses.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kahu.operators.catalog import get_input, get_referenced, store_results
    from kahu.operators.deidentification import deidentify
    from kahu.operators.documents import (
        binary_to_dicom_operator,
        dicom_to_binary_operator,
        pdf_to_dicom_operator,
    )
    from kahu.operators.evaluation import evaluate, report_to_dicom, seg_masks
    from kahu.operators.export import zip_outputs
    from kahu.operators.maintenance import cleanup, delete_series, reindex
    from kahu.operators.objects import get_objects, put_objects
    from kahu.operators.seg import labels_to_seg_operator, seg_to_volume_operator
    from kahu.operators.send import send_to_node
    from kahu.operators.sr import json_to_sr_operator, sr_to_json_operator
    from kahu.operators.statistics import aggregate_statistics, cohort_statistics
    from kahu.operators.thumbnail import thumbnails
    from kahu.operators.volumes import dicom_to_volume

_WHERE = {
    "aggregate_statistics": "statistics",
    "binary_to_dicom_operator": "documents",
    "cleanup": "maintenance",
    "cohort_statistics": "statistics",
    "delete_series": "maintenance",
    "deidentify": "deidentification",
    "dicom_to_binary_operator": "documents",
    "dicom_to_volume": "volumes",
    "evaluate": "evaluation",
    "get_input": "catalog",
    "get_objects": "objects",
    "get_referenced": "catalog",
    "json_to_sr_operator": "sr",
    "labels_to_seg_operator": "seg",
    "pdf_to_dicom_operator": "documents",
    "put_objects": "objects",
    "reindex": "maintenance",
    "report_to_dicom": "evaluation",
    "send_to_node": "send",
    "seg_masks": "evaluation",
    "seg_to_volume_operator": "seg",
    "sr_to_json_operator": "sr",
    "store_results": "catalog",
    "thumbnails": "thumbnail",
    "zip_outputs": "export",
}

__all__ = [
    "aggregate_statistics",
    "binary_to_dicom_operator",
    "cleanup",
    "cohort_statistics",
    "deidentify",
    "delete_series",
    "dicom_to_binary_operator",
    "dicom_to_volume",
    "evaluate",
    "get_input",
    "get_objects",
    "get_referenced",
    "json_to_sr_operator",
    "labels_to_seg_operator",
    "pdf_to_dicom_operator",
    "put_objects",
    "reindex",
    "report_to_dicom",
    "seg_masks",
    "seg_to_volume_operator",
    "send_to_node",
    "sr_to_json_operator",
    "store_results",
    "thumbnails",
    "zip_outputs",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"kahu.operators.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'kahu.operators' has no attribute {name!r}")
