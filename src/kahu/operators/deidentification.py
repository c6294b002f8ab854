"""De-identifying series (PS3.15, :mod:`kahu.dicom.deidentify`) for export and, later,
federation: the site's key makes pseudonyms, UIDs and date shifts the same in every run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, internal_operator

if TYPE_CHECKING:
    from kahu.flow.services import OperatorServices

#: the run parameters that choose the PS3.15 options (booleans) and the date shift
PARAMETERS = {
    "retain_dates": {
        "type": "boolean",
        "default": False,
        "description": "keep dates, moved back by the same number of days per patient "
        "(Retain Longitudinal Temporal Information with Modified Dates)",
    },
    "retain_patient_characteristics": {
        "type": "boolean",
        "default": False,
        "description": "keep age, sex, size, weight and similar (Retain Patient Characteristics)",
    },
    "clean_descriptors": {
        "type": "boolean",
        "default": False,
        "description": "keep study, series and protocol descriptions with the patient's names "
        "and identifiers cut out (Clean Descriptors)",
    },
    "max_shift_days": {
        "type": "integer",
        "minimum": 1,
        "maximum": 3650,
        "default": 365,
        "description": "dates move back by 1 to this many days",
    },
}


def deidentify_task(ctx: TaskContext, services: OperatorServices) -> None:
    """Per series: each input file de-identified into ``<new series UID>/<new SOP UID>.dcm``
    (no original identifier in a path either)."""
    import pydicom

    from kahu.dicom.deidentify import Deidentifier, Options

    params = ctx.params
    options = Options(
        retain_dates=bool(params.get("retain_dates", False)),
        retain_patient_characteristics=bool(params.get("retain_patient_characteristics", False)),
        clean_descriptors=bool(params.get("clean_descriptors", False)),
        max_shift_days=int(params.get("max_shift_days", 365)),
    )
    deidentifier = Deidentifier(services.deidentification_key(), options)
    files = sorted(p for p in ctx.in_dir.rglob("*") if p.is_file())
    if not files:
        raise ValueError(f"no files to de-identify in {ctx.in_dir.name}")
    for path in files:
        ds = pydicom.dcmread(path)
        deidentifier.dataset(ds)
        target = ctx.out_dir / str(ds.SeriesInstanceUID) / f"{ds.SOPInstanceUID}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(target, enforce_file_format=True)
    ctx.log.info(
        "de-identified %d files (%s)", len(files), ", ".join(c[2] for c in options.codes())
    )


def deidentify(inputs: Sequence[str] = ("get-input",), name: str = "deidentify") -> Operator:
    """Per series: de-identify the files of ``inputs[0]`` by the PS3.15 Basic Application
    Level Confidentiality Profile and the options the run's parameters choose
    (:data:`PARAMETERS`)."""
    return internal_operator(
        name,
        "kahu.operators.deidentification:deidentify_task",
        inputs=tuple(inputs),
        resources=Resources(cpu=1, memory_mb=512),
        description="De-identify each series (PS3.15 basic profile and options)",
    )
