"""Exports of a cohort as a zip to download: the DICOM files as stored, or one NIfTI or NRRD
volume per series."""

from __future__ import annotations

from kahu.flow import Workflow
from kahu.operators import dicom_to_volume, get_input, zip_outputs

_DOWNLOAD = "Download the zip from the run's files (GET /api/v1/runs/{id}/files)."

EXPORT_DICOM = Workflow(
    name="export-dicom-zip",
    version="1.0",
    title="Export as DICOM zip",
    description="Packs the cohort's DICOM files, one folder per series. " + _DOWNLOAD,
    parameters={"type": "object", "properties": {}, "additionalProperties": False},
    operators=(get_input(), zip_outputs(["get-input"])),
)

EXPORT_VOLUMES = Workflow(
    name="export-volumes-zip",
    version="1.0",
    title="Export as NIfTI or NRRD zip",
    description=(
        "Converts each series to a volume (series with missing slices or uneven spacing "
        "fail with the reason; the others are exported) and packs them. " + _DOWNLOAD
    ),
    parameters={
        "type": "object",
        "properties": {
            "format": {
                "type": "string",
                "enum": ["nifti", "nrrd"],
                "default": "nifti",
                "description": "NIfTI (.nii.gz) or NRRD (.nrrd)",
            }
        },
        "additionalProperties": False,
    },
    operators=(
        get_input(),
        dicom_to_volume(inputs=["get-input"]),
        zip_outputs(["dicom-to-volume"]),
    ),
)

WORKFLOWS = [EXPORT_DICOM, EXPORT_VOLUMES]
