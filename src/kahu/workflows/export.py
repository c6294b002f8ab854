"""Exports of a cohort as a zip to download: the DICOM files as stored, or one NIfTI or NRRD
volume per series."""

from __future__ import annotations

from kahu.flow import Workflow
from kahu.operators import deidentify, dicom_to_volume, get_input, zip_outputs
from kahu.operators.deidentification import PARAMETERS as DEIDENTIFY_PARAMETERS

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

EXPORT_DEIDENTIFIED = Workflow(
    name="export-deidentified-zip",
    version="1.0",
    title="Export de-identified DICOM zip",
    description=(
        "De-identifies the cohort by the DICOM PS3.15 Basic Application Level Confidentiality "
        "Profile (pseudonyms per patient, new UIDs with references kept, private attributes "
        "removed; options: shifted dates, patient characteristics, cleaned descriptors) and "
        "packs it, one folder per new SeriesInstanceUID. " + _DOWNLOAD
    ),
    parameters={
        "type": "object",
        "properties": DEIDENTIFY_PARAMETERS,
        "additionalProperties": False,
    },
    operators=(
        get_input(),
        deidentify(["get-input"]),
        zip_outputs(["deidentify"], by_series=False),
    ),
)

WORKFLOWS = [EXPORT_DICOM, EXPORT_VOLUMES, EXPORT_DEIDENTIFIED]
