"""Which fields series have and their commonest values (autocomplete), on both backends."""

from __future__ import annotations

import pytest

from kahu.core import Kahu
from kahu.search.facts import field_counts, field_values
from kahu.search.fields import FieldType, UnknownField, resolve
from tests.conftest import SYSTEM
from tests.search.conftest import FIXTURE

Catalog = tuple[Kahu, dict[str, str]]


class TestResolve:
    @pytest.mark.parametrize(
        ("name", "canonical", "kind"),
        [
            ("modality", "Modality", FieldType.TEXT),
            ("STUDYDATE", "StudyDate", FieldType.DATE),
            ("PatientAge", "PatientAge", FieldType.NUMBER),
            ("SliceThickness", "SliceThickness", FieldType.NUMBER),
            ("StudyTime", "StudyTime", FieldType.TIME),
            ("AcquisitionDateTime", "AcquisitionDateTime", FieldType.DATETIME),
            ("patientname.familyname", "PatientName.FamilyName", FieldType.TEXT),
            (
                "AnatomicRegionSequence.CodeMeaning",
                "AnatomicRegionSequence.CodeMeaning",
                FieldType.TEXT,
            ),
            ("is_localizer", "is_localizer", FieldType.BOOLEAN),
            ("instance_count", "instance_count", FieldType.NUMBER),
            ("Segment_Labels", "segment_labels", FieldType.TEXT),
        ],
    )
    def test_names_resolve_case_insensitively_with_their_type(
        self, name: str, canonical: str, kind: FieldType
    ) -> None:
        field = resolve(name)
        assert (field.name, field.type) == (canonical, kind)

    @pytest.mark.parametrize(
        "name", ["Colour", "Modality.CodeMeaning", "PatientName.Colour", "PixelData", "", "a..b"]
    )
    def test_unknown_and_unsearchable_names_are_refused(self, name: str) -> None:
        with pytest.raises(UnknownField):
            resolve(name)


class TestFieldFacts:
    def test_field_counts(self, catalog: Catalog) -> None:
        kahu, _ = catalog
        counts = {f.name: f for f in field_counts(kahu.catalog)}
        assert counts["Modality"].series == len(FIXTURE)
        assert counts["Modality"].type == "text"
        assert counts["StudyDate"].type == "date"
        assert counts["BodyPartExamined"].series == 6  # chest x2, abdomen, lung x2, head
        assert counts["dataset"].series == 2
        assert counts["instance_count"].series == len(FIXTURE)
        assert counts["PatientName.FamilyName"].series >= 1
        assert "_invalid" not in counts

    def test_commonest_values_first(self, catalog: Catalog) -> None:
        kahu, _ = catalog
        values = field_values(kahu.catalog, SYSTEM, "modality")
        assert values[0].value == "CT"
        assert values[0].series == 6
        assert {v.value for v in values} == {"CT", "MR", "SEG", "RTDOSE", "SR"}

    def test_values_by_prefix_ignore_case(self, catalog: Catalog) -> None:
        kahu, _ = catalog
        assert [
            (v.value, v.series)
            for v in field_values(kahu.catalog, SYSTEM, "Manufacturer", prefix="sie")
        ] == [
            ("SIEMENS", 2),
            ("Siemens Healthineers", 1),
        ]
        assert field_values(kahu.catalog, SYSTEM, "Manufacturer", prefix="%") == []
        assert [v.value for v in field_values(kahu.catalog, SYSTEM, "ImageType", prefix="LOC")] == [
            "LOCALIZER"
        ]
        assert [v.value for v in field_values(kahu.catalog, SYSTEM, "dataset")] == ["LUNGS"]

    def test_numbers_come_back_as_numbers(self, catalog: Catalog) -> None:
        kahu, _ = catalog
        rows = {v.value: v.series for v in field_values(kahu.catalog, SYSTEM, "Rows", limit=100)}
        assert rows[64] == 2
