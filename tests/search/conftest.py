"""The search fixture catalog: real test files, some with attributes set for the queries."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from kahu.core import Kahu
from kahu.settings import Settings
from tests.conftest import sample_path

CT = "CT_small.dcm"
#: label -> (real file, attributes to set, dataset at ingest)
FIXTURE: dict[str, tuple[str, dict[str, Any], str | None]] = {
    "ct_chest": (
        CT,
        {
            "SeriesDescription": "CHEST W CONTRAST",
            "BodyPartExamined": "CHEST",
            "StudyDate": "20210315",
            "PatientAge": "045Y",
            "Manufacturer": "SIEMENS",
            "ContrastBolusAgent": "Iomeron 350",
            "PatientSex": "M",
        },
        None,
    ),
    "ct_scout": (
        CT,
        {
            "SeriesDescription": "Scout AP",
            "ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"],
            "BodyPartExamined": "CHEST",
            "StudyDate": "20210315",
            "PatientAge": "045Y",
            "Manufacturer": "SIEMENS",
            "SliceThickness": "1",
            "ContrastBolusAgent": None,
        },
        None,
    ),
    "ct_abdomen": (
        CT,
        {
            "SeriesDescription": "Abdomen 5mm",
            "BodyPartExamined": "ABDOMEN",
            "StudyDate": "20200229",
            "PatientAge": "038Y",
            "Manufacturer": "Siemens Healthineers",
            "PatientSex": "F",
            "SliceThickness": "2.5",
            "ContrastBolusAgent": None,
        },
        None,
    ),
    "ct_lung": (
        CT,
        {
            "SeriesDescription": "Lung 1.25mm 50% [test]",
            "BodyPartExamined": "LUNG",
            "StudyDate": "20191231",
            "PatientAge": "006M",
            "Manufacturer": "Philips",
            "PatientName": "O'Brien^Mary",
            "SliceThickness": "1.25",
            "ContrastBolusAgent": None,
        },
        "LUNGS",
    ),
    "ect": (
        "eCT_Supplemental.dcm",
        {"SeriesDescription": "Lung perfusion", "BodyPartExamined": "LUNG"},
        "LUNGS",
    ),
    "ct_ge": (CT, {}, None),
    "mr_small": ("MR_small.dcm", {}, None),
    "mr_head": ("emri_small.dcm", {}, None),
    "seg_liver": ("liver.dcm", {}, None),
    "rtdose": ("rtdose.dcm", {}, None),
    "sr": ("test-SR.dcm", {}, None),
}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def catalog(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Kahu, dict[str, str]]]:
    """The fixture catalog, once per backend; maps each SeriesInstanceUID to its label."""
    url = "" if request.param == "sqlite" else request.getfixturevalue("postgres").new_database()
    kahu = Kahu(Settings(home=tmp_path_factory.mktemp("search"), database_url=url))
    labels: dict[str, str] = {}
    for label, (name, attributes, dataset) in FIXTURE.items():
        ds = pydicom.dcmread(sample_path(name))
        if name == CT:  # one file, several series
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        for keyword, value in attributes.items():
            if value is None:
                del ds[keyword]
            else:
                setattr(ds, keyword, value)
        out = io.BytesIO()
        ds.save_as(out)
        result = kahu.ingestor.ingest(out.getvalue(), dataset=dataset)
        assert result.status == "stored", (label, result)
        labels[str(ds.SeriesInstanceUID)] = label
    yield kahu, labels
    kahu.stop()
