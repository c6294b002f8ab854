"""Datasets (explicit, query-defined, frozen) and tags, on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.uid import generate_uid

from kahu.core import Kahu
from kahu.errors import Conflict, InvalidInput, NotFound
from kahu.search.aggregations import Terms, aggregate
from kahu.search.facts import field_counts, field_values
from kahu.search.series import search_series
from tests.conftest import SYSTEM, sample_path


def _store(kahu: Kahu, name: str, **attributes: str) -> str:
    ds = pydicom.dcmread(sample_path(name))
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    out = io.BytesIO()
    ds.save_as(out)
    assert kahu.ingestor.ingest(out.getvalue()).status == "stored"
    return str(ds.SeriesInstanceUID)


def _found(kahu: Kahu, query: str) -> set[str]:
    rows, total = search_series(kahu.catalog, SYSTEM, query, limit=1000)
    assert total == len(rows)
    return {r.series_instance_uid for r in rows}


@pytest.fixture
def series(kahu: Kahu) -> dict[str, str]:
    return {
        "ct1": _store(kahu, "CT_small.dcm", BodyPartExamined="CHEST"),
        "ct2": _store(kahu, "CT_small.dcm", BodyPartExamined="ABDOMEN"),
        "mr": _store(kahu, "MR_small.dcm"),
        "seg": _store(kahu, "liver.dcm"),
    }


class TestExplicitDatasets:
    def test_create_add_remove_delete(self, kahu: Kahu, series: dict[str, str]) -> None:
        info = kahu.curation.create_dataset("Picked", series=[series["ct1"], series["mr"]])
        assert (info.kind, info.series_count, info.query) == ("explicit", 2, None)
        assert _found(kahu, "dataset:picked") == {series["ct1"], series["mr"]}
        assert kahu.curation.add_series("picked", [series["seg"], series["ct1"]]).series_count == 3
        assert kahu.curation.remove_series("PICKED", [series["ct1"]]).series_count == 2
        assert _found(kahu, "dataset:Picked AND Modality:MR") == {series["mr"]}
        [row] = [r for r in search_series(kahu.catalog, SYSTEM, "Modality:MR")[0]]
        assert kahu.catalog.get_series(SYSTEM, row.series_instance_uid).full_document()[
            "dataset"
        ] == ["Picked"]
        kahu.curation.delete_dataset("Picked")
        assert _found(kahu, "dataset:Picked") == set()
        assert kahu.catalog.counts(SYSTEM).series == 4  # the series stay

    def test_a_removed_series_rejoins_when_sent_to_its_ae_title_again(
        self, kahu: Kahu, series: dict[str, str]
    ) -> None:
        data = sample_path("CT_small.dcm").read_bytes()
        uid = str(pydicom.dcmread(sample_path("CT_small.dcm")).SeriesInstanceUID)
        kahu.ingestor.ingest(data, dataset="STUDY1")
        kahu.curation.remove_series("STUDY1", [uid])
        assert kahu.curation.dataset("STUDY1").series_count == 0
        kahu.ingestor.ingest(data, dataset="STUDY1")
        assert kahu.curation.dataset("STUDY1").series_count == 1

    @pytest.mark.parametrize(
        ("call", "error", "message"),
        [
            (lambda c, s: c.create_dataset("bad/name"), InvalidInput, "a dataset name is"),
            (lambda c, s: c.create_dataset(" lead"), InvalidInput, "a dataset name is"),
            (lambda c, s: c.create_dataset("x" * 65), InvalidInput, "a dataset name is"),
            (lambda c, s: c.create_dataset("q", query="Colour:red"), InvalidInput, "unknown field"),
            (
                lambda c, s: c.create_dataset("q", query="Modality:CT", series=[s["mr"]]),
                InvalidInput,
                "not both",
            ),
            (lambda c, s: c.create_dataset("d", series=["1.2.3"]), NotFound, "no series 1.2.3"),
            (
                lambda c, s: c.create_dataset("d", series=["1.2.x"]),
                InvalidInput,
                "SeriesInstanceUID",
            ),
            (lambda c, s: c.add_series("nothing", [s["mr"]]), NotFound, "no dataset"),
            (lambda c, s: c.freeze("nothing"), NotFound, "no dataset"),
        ],
    )
    def test_bad_requests_say_why(
        self, kahu: Kahu, series: dict[str, str], call: object, error: type, message: str
    ) -> None:
        with pytest.raises(error, match=message):
            call(kahu.curation, series)  # type: ignore[operator]
        assert kahu.curation.datasets() == []

    def test_names_are_unique_regardless_of_case(self, kahu: Kahu, series: dict[str, str]) -> None:
        kahu.curation.create_dataset("Cohort")
        with pytest.raises(Conflict, match="exists"):
            kahu.curation.create_dataset("COHORT")


class TestQueryDatasets:
    def test_follows_its_query_until_frozen(self, kahu: Kahu, series: dict[str, str]) -> None:
        info = kahu.curation.create_dataset("CTs", query="Modality:CT", description="all CT")
        assert (info.kind, info.series_count, info.origin) == ("query", 2, "query")
        assert _found(kahu, "dataset:cts") == {series["ct1"], series["ct2"]}
        late = _store(kahu, "CT_small.dcm", BodyPartExamined="HEAD")
        assert kahu.curation.dataset("CTs").series_count == 3  # a new CT joins on its own
        with pytest.raises(InvalidInput, match="freeze it"):
            kahu.curation.add_series("CTs", [series["mr"]])
        frozen = kahu.curation.freeze("cts")
        assert (frozen.kind, frozen.series_count, frozen.query) == ("frozen", 3, "Modality:CT")
        assert frozen.frozen_at is not None
        _store(kahu, "CT_small.dcm", BodyPartExamined="KNEE")  # after freezing: stays out
        assert _found(kahu, "dataset:CTs") == {series["ct1"], series["ct2"], late}
        assert kahu.curation.remove_series("CTs", [late]).series_count == 2
        with pytest.raises(Conflict, match="was frozen"):
            kahu.curation.freeze("CTs")

    def test_datasets_built_on_datasets(self, kahu: Kahu, series: dict[str, str]) -> None:
        kahu.curation.create_dataset("CTs", query="Modality:CT")
        kahu.curation.create_dataset("Chest CTs", query="dataset:CTs AND BodyPartExamined:CHEST")
        assert kahu.curation.dataset("Chest CTs").series_count == 1
        assert _found(kahu, 'dataset:"chest cts"') == {series["ct1"]}
        assert _found(kahu, "dataset:*cts") == {series["ct1"], series["ct2"]}
        listed = {d.name: d.series_count for d in kahu.curation.datasets()}
        assert listed == {"CTs": 2, "Chest CTs": 1}

    def test_a_circle_of_queries_is_refused(self, kahu: Kahu, series: dict[str, str]) -> None:
        kahu.curation.create_dataset("A", query="dataset:B OR Modality:CT")
        with pytest.raises(InvalidInput, match="circle: a -> b -> a"):
            kahu.curation.create_dataset("B", query="dataset:A")
        with pytest.raises(InvalidInput, match="circle: c -> c"):
            kahu.curation.create_dataset("C", query="Modality:CT OR dataset:c")
        assert [d.name for d in kahu.curation.datasets()] == ["A"]
        assert _found(kahu, "dataset:A") == {series["ct1"], series["ct2"]}


class TestTags:
    def test_tag_search_untag(self, kahu: Kahu, series: dict[str, str]) -> None:
        both = [series["ct1"], series["mr"]]
        tags = kahu.curation.tag(both, add=["good quality", "Review"])
        assert tags == {
            series["ct1"]: ["Review", "good quality"],
            series["mr"]: ["Review", "good quality"],
        }
        assert kahu.curation.tag([series["ct1"]], add=["review"])[series["ct1"]] == [
            "Review",
            "good quality",
        ]  # no case-variant duplicates
        assert _found(kahu, 'tags:"good quality"') == set(both)
        assert _found(kahu, "tags:rev*") == set(both)
        assert _found(kahu, "_exists_:tags") == set(both)
        kahu.curation.tag([series["mr"]], remove=["REVIEW"])
        assert _found(kahu, "tags:review") == {series["ct1"]}
        assert _found(kahu, "NOT _exists_:tags") == {series["ct2"], series["seg"]}
        doc = kahu.catalog.get_series(SYSTEM, series["ct1"]).full_document()
        assert doc["tags"] == ["Review", "good quality"]
        assert _found(kahu, "review") == {series["ct1"]}  # bare terms look at tags too
        values = field_values(kahu.catalog, SYSTEM, "tags", prefix="GOOD")
        assert [(v.value, v.series) for v in values] == [("good quality", 2)]
        assert {f.name: f.series for f in field_counts(kahu.catalog)}["tags"] == 2
        total, facets = aggregate(kahu.catalog, SYSTEM, "*", {"tags": Terms("tags")})
        assert [(b.key, b.count) for b in facets["tags"].buckets] == [
            ("good quality", 2),
            ("Review", 1),
        ]
        assert facets["tags"].missing == total - 2

    @pytest.mark.parametrize("tag", ["", "   ", "x" * 65, "bad\nline"])
    def test_bad_tags_are_refused(self, kahu: Kahu, series: dict[str, str], tag: str) -> None:
        with pytest.raises(InvalidInput, match="a tag is"):
            kahu.curation.tag([series["mr"]], add=[tag])

    def test_unknown_series_tags_nothing(self, kahu: Kahu, series: dict[str, str]) -> None:
        with pytest.raises(NotFound, match=r"no series 1\.2\.3"):
            kahu.curation.tag([series["mr"], "1.2.3"], add=["x"])
        assert kahu.curation.tags_of([series["mr"]]) == {series["mr"]: []}

    def test_tags_and_memberships_go_with_a_deleted_series(
        self, kahu: Kahu, series: dict[str, str]
    ) -> None:
        kahu.curation.tag([series["mr"]], add=["x"])
        kahu.curation.create_dataset("D", series=[series["mr"]])
        kahu.ingestor.delete_series(series["mr"])
        assert _found(kahu, "tags:x") == set()
        assert kahu.curation.dataset("D").series_count == 0
