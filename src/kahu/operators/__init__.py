"""Built-in operators. Workflows (Kahu's own and everyone else's) use them through this
public API::

    from kahu.operators import get_input, dicom_to_volume, labels_to_seg_operator, store_results

Each function returns an :class:`~kahu.flow.model.Operator` to put in a workflow; the
conversions they run are plain functions in the modules below, usable on their own.
"""

from kahu.operators.catalog import get_input, store_results
from kahu.operators.documents import (
    binary_to_dicom_operator,
    dicom_to_binary_operator,
    pdf_to_dicom_operator,
)
from kahu.operators.export import zip_outputs
from kahu.operators.maintenance import cleanup, delete_series
from kahu.operators.seg import labels_to_seg_operator, seg_to_volume_operator
from kahu.operators.send import send_to_node
from kahu.operators.sr import json_to_sr_operator, sr_to_json_operator
from kahu.operators.thumbnails import thumbnails
from kahu.operators.volumes import dicom_to_volume

__all__ = [
    "binary_to_dicom_operator",
    "cleanup",
    "delete_series",
    "dicom_to_binary_operator",
    "dicom_to_volume",
    "get_input",
    "json_to_sr_operator",
    "labels_to_seg_operator",
    "pdf_to_dicom_operator",
    "seg_to_volume_operator",
    "send_to_node",
    "sr_to_json_operator",
    "store_results",
    "thumbnails",
    "zip_outputs",
]
