"""Facets over a query's series, exact on the fixture catalog, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kahu.core import Kahu
from kahu.errors import InvalidInput
from kahu.search.aggregations import DateHistogram, Distinct, Histogram, Terms, aggregate
from tests.conftest import SYSTEM

Catalog = tuple[Kahu, dict[str, str]]


def buckets(result: object) -> list[tuple[object, int]]:
    return [(b.key, b.count) for b in result.buckets]  # type: ignore[attr-defined]


def test_terms_with_missing(catalog: Catalog) -> None:
    kahu, _ = catalog
    total, facets = aggregate(
        kahu.catalog,
        SYSTEM,
        "Modality:CT",
        {
            "body": Terms("BodyPartExamined"),
            "maker": Terms("manufacturer", size=2),
            "type": Terms("ImageType", size=3),
        },
    )
    assert total == 6
    assert buckets(facets["body"]) == [("CHEST", 2), ("LUNG", 2), ("ABDOMEN", 1)]
    assert facets["body"].missing == 1
    assert buckets(facets["maker"]) == [("SIEMENS", 2), ("Acme Medical Devices", 1)]
    assert buckets(facets["type"]) == [("PRIMARY", 6), ("ORIGINAL", 5), ("AXIAL", 4)]
    assert facets["type"].missing == 0


def test_everything_without_a_query(catalog: Catalog) -> None:
    kahu, labels = catalog
    total, facets = aggregate(
        kahu.catalog,
        SYSTEM,
        "",
        {"modality": Terms("Modality", size=2), "dataset": Terms("dataset")},
    )
    assert total == len(labels)
    assert buckets(facets["modality"]) == [("CT", 6), ("MR", 2)]
    assert buckets(facets["dataset"]) == [("LUNGS", 2)]
    assert facets["dataset"].missing == len(labels) - 2


def test_numeric_histogram(catalog: Catalog) -> None:
    kahu, labels = catalog
    _, facets = aggregate(kahu.catalog, SYSTEM, "*", {"age": Histogram("PatientAge", 10)})
    assert buckets(facets["age"]) == [(0, 2), (30, 1), (40, 2), (50, 1), (60, 1)]
    assert facets["age"].missing == len(labels) - 7
    _, facets = aggregate(kahu.catalog, SYSTEM, "*", {"n": Histogram("instance_count", 5)})
    assert buckets(facets["n"]) == [(0, len(labels))]


def test_date_histograms(catalog: Catalog) -> None:
    kahu, labels = catalog
    _, facets = aggregate(
        kahu.catalog,
        SYSTEM,
        "",
        {
            "years": DateHistogram("StudyDate", "year"),
            "arrived": DateHistogram("received_at", "year"),
        },
    )
    assert buckets(facets["years"]) == [
        ("2000", 1),
        ("2003", 2),
        ("2004", 2),
        ("2006", 1),
        ("2019", 1),
        ("2020", 1),
        ("2021", 2),
    ]
    assert facets["years"].missing == 1  # the SR has an empty StudyDate
    assert buckets(facets["arrived"]) == [(str(datetime.now(UTC).year), len(labels))]
    _, facets = aggregate(
        kahu.catalog,
        SYSTEM,
        "Modality:CT AND StudyDate:[2020 TO *]",
        {"months": DateHistogram("StudyDate", "month"), "days": DateHistogram("StudyDate", "day")},
    )
    assert buckets(facets["months"]) == [("2020-02", 1), ("2021-03", 2)]
    assert buckets(facets["days"]) == [("2020-02-29", 1), ("2021-03-15", 2)]


def test_distinct_counts(catalog: Catalog) -> None:
    kahu, _ = catalog
    total, facets = aggregate(
        kahu.catalog,
        SYSTEM,
        "Modality:CT",
        {"p": Distinct("patients"), "st": Distinct("studies"), "se": Distinct("series")},
    )
    # the four edited copies of CT_small share its patient; each has a study of its own
    assert (total, facets["se"].count, facets["st"].count, facets["p"].count) == (6, 6, 6, 2)


@pytest.mark.parametrize(
    ("facet", "message"),
    [
        (Histogram("Modality", 10), "a histogram needs a number field"),
        (Histogram("PatientAge", 0), "interval must be above 0"),
        (DateHistogram("PatientAge"), "a date histogram needs a date field"),
        (Terms("Colour"), "unknown field 'Colour'"),
        (Terms("Modality", size=0), "between 1 and 1000"),
    ],
)
def test_bad_facets_say_why(catalog: Catalog, facet: object, message: str) -> None:
    kahu, _ = catalog
    with pytest.raises(InvalidInput, match=message):
        aggregate(kahu.catalog, SYSTEM, "", {"f": facet})  # type: ignore[dict-item]
