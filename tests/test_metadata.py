from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset

from kahu.dicom.metadata import DERIVED_FIELDS, flatten
from tests.conftest import sample_path


def _doc(name: str) -> dict[str, object]:
    return flatten(pydicom.dcmread(sample_path(name), force=True), "1.2.840.10008.1.2.1")


class TestFlatten:
    def test_ct_fields_are_typed(self) -> None:
        doc = _doc("CT_small.dcm")
        assert doc["Modality"] == "CT"
        assert doc["StudyDate"] == "2004-01-19"
        assert doc["StudyTime"] == "07:27:30"
        assert doc["SliceThickness"] == 5.0
        assert doc["Rows"] == 128
        assert doc["ImageType"] == ["ORIGINAL", "PRIMARY", "AXIAL"]
        assert doc["PatientName"] == "CompressedSamples^CT1"
        assert doc["PatientName.FamilyName"] == "CompressedSamples"
        assert doc["modality_curated"] == "CT"

    def test_pixel_data_and_private_tags_are_excluded(self) -> None:
        ds = pydicom.dcmread(sample_path("CT_small.dcm"))
        ds.add_new(0x00091001, "LO", "private value")
        doc = flatten(ds)
        assert "PixelData" not in doc
        assert all(v != "private value" for v in doc.values())
        assert not any(key.startswith("(0009") for key in doc)

    def test_rtstruct_roi_names_and_referenced_series(self) -> None:
        doc = _doc("rtstruct.dcm")
        assert doc["roi_names"] == ["patient", "Isocenter 1", "Isocenter 2"]
        assert doc["referenced_series"] == ["1.2.826.0.1.3680043.8.498.2010020400001.2.1.1"]

    def test_seg_segment_labels_algorithm_and_source_series(self) -> None:
        doc = _doc("liver.dcm")
        assert doc["Modality"] == "SEG"
        assert doc["segment_labels"]
        assert "segment_algorithms" in doc or "SegmentSequence.SegmentAlgorithmType" in doc
        assert doc["referenced_series"]

    def test_sr_code_meanings(self) -> None:
        doc = _doc("test-SR.dcm")
        assert "Diameter" in doc["code_meanings"]  # type: ignore[operator]

    def test_invalid_values_are_flagged_not_fatal(self) -> None:
        ds = pydicom.dcmread(sample_path("CT_small.dcm"), stop_before_pixels=True)
        ds["PatientAge"] = pydicom.DataElement(0x00101010, "AS", "ABCD")
        ds["StudyDate"] = pydicom.DataElement(0x00080020, "DA", "2020013")
        doc = flatten(ds)
        assert doc["_invalid"] == {"PatientAge": "ABCD", "StudyDate": "2020013"}
        assert "PatientAge" not in doc
        assert "StudyDate" not in doc

    def test_badvr_file_keeps_its_raw_text(self) -> None:
        assert _doc("badVR.dcm")["_invalid"] == {"NumberOfFrames": "1A"}

    def test_patient_age_in_years(self) -> None:
        ds = Dataset()
        ds.PatientAge = "006M"
        assert flatten(ds)["PatientAge"] == pytest.approx(0.5)

    def test_dt_uses_timezone_offset_from_utc(self) -> None:
        ds = Dataset()
        ds.TimezoneOffsetFromUTC = "+0100"
        ds.AcquisitionDateTime = "20200101120000"
        assert flatten(ds)["AcquisitionDateTime"] == "2020-01-01T11:00:00Z"

    def test_ct_localizer_is_curated(self) -> None:
        ds = pydicom.dcmread(sample_path("CT_small.dcm"), stop_before_pixels=True)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        doc = flatten(ds)
        assert doc["is_localizer"] is True
        assert doc["modality_curated"] == "CT-LOCALIZER"

    def test_nested_sequences_flatten_to_dotted_lists(self) -> None:
        doc = _doc("CT_small.dcm")
        assert isinstance(doc.get("ReferencedImageSequence.ReferencedSOPClassUID", []), list)

    def test_every_derived_field_is_documented(self) -> None:
        produced = set()
        for name in ("CT_small.dcm", "rtstruct.dcm", "liver.dcm", "test-SR.dcm", "badVR.dcm"):
            produced |= {k for k in _doc(name) if k[0].islower() or k.startswith("_")}
        assert produced <= set(DERIVED_FIELDS)
