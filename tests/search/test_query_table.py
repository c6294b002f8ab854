"""The query language, pinned by a table of queries and the series each must find.

The fixture catalog is made of real test files (pydicom's and pydicom-data's), some with
attributes set to what the queries need; the whole table runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import pytest

from kahu.core import Kahu
from kahu.errors import InvalidInput
from kahu.search.query import QueryError
from kahu.search.series import search_series
from tests.conftest import SYSTEM
from tests.search.conftest import FIXTURE

ALL = set(FIXTURE)
CTS = {"ct_chest", "ct_scout", "ct_abdomen", "ct_lung", "ect", "ct_ge"}

TABLE: list[tuple[str, set[str]]] = [
    ("", ALL),
    ("*", ALL),
    ("Modality:CT", CTS),
    ("modality:ct", CTS),
    ("Modality:(CT OR MR)", CTS | {"mr_small", "mr_head"}),
    ("Modality:CT AND NOT SeriesDescription:*scout*", CTS - {"ct_scout"}),
    ("NOT Modality:CT", ALL - CTS),
    ("-Modality:CT", ALL - CTS),
    ("Modality:CT -BodyPartExamined:CHEST", {"ct_abdomen", "ct_lung", "ect", "ct_ge"}),
    ("+Modality:SEG", {"seg_liver"}),
    ("Modality:CT^2 AND BodyPartExamined:LUNG", {"ct_lung", "ect"}),
    ("BodyPartExamined:(CHEST OR LUNG)", {"ct_chest", "ct_scout", "ct_lung", "ect"}),
    ("StudyDate:[2020-01-01 TO 2021-12-31]", {"ct_chest", "ct_scout", "ct_abdomen"}),
    ("StudyDate:[20200101 TO 20211231]", {"ct_chest", "ct_scout", "ct_abdomen"}),
    ("StudyDate:{2020-02-29 TO 2021-03-15}", set()),
    ("StudyDate:{2020-02-28 TO 2021-03-15]", {"ct_chest", "ct_scout", "ct_abdomen"}),
    ("StudyDate:[2020 TO *]", {"ct_chest", "ct_scout", "ct_abdomen"}),
    ("StudyDate:2021", {"ct_chest", "ct_scout"}),
    ("StudyDate:2020-02", {"ct_abdomen"}),
    ("StudyDate:20191231", {"ct_lung"}),
    ("StudyDate:<2004-01-19", {"mr_head", "seg_liver", "rtdose"}),
    ("StudyDate:<=2004-01-19", {"mr_head", "seg_liver", "rtdose", "ct_ge"}),
    ("StudyDate:2004*", {"ct_ge", "mr_small"}),
    ("PatientAge:>=40", {"ct_chest", "ct_scout", "seg_liver", "ect"}),
    ("PatientAge:[30 TO 50}", {"ct_chest", "ct_scout", "ct_abdomen"}),
    ("PatientAge:<1", {"ct_ge", "ct_lung"}),
    ("PatientAge:0.5", {"ct_lung"}),
    ("SliceThickness:[2 TO 5]", {"ct_chest", "ct_abdomen", "ct_ge"}),
    ("Rows:64", {"mr_small", "mr_head"}),
    ("_exists_:ContrastBolusAgent", {"ct_chest", "ct_ge"}),  # CT_small has ISOVUE300/100
    ("ContrastBolusAgent:*", {"ct_chest", "ct_ge"}),
    ("ContrastBolusAgent:iomeron*", {"ct_chest"}),
    ("ContrastBolusAgentSequence.CodeMeaning:Iohexol", {"ect"}),
    (
        "_exists_:ContrastBolusAgent OR _exists_:ContrastBolusAgentSequence.CodeMeaning",
        {"ct_chest", "ct_ge", "ect"},
    ),
    ("NOT _exists_:BodyPartExamined", {"ct_ge", "mr_small", "seg_liver", "rtdose", "sr"}),
    ("SeriesDescription:*scout*", {"ct_scout"}),
    ('SeriesDescription:"CHEST W CONTRAST"', {"ct_chest"}),
    ('SeriesDescription:"chest w contrast"', {"ct_chest"}),
    ("SeriesDescription:chest", set()),  # a term is the whole value; wildcards find parts
    ("SeriesDescription:lung*", {"ect", "ct_lung"}),
    ("SeriesDescription:*50%*", {"ct_lung"}),
    ("SeriesDescription:*50_*", set()),  # _ is no wildcard
    (r"SeriesDescription:*\[test\]", {"ct_lung"}),
    ("SeriesDescription:Abdomen?5mm", {"ct_abdomen"}),
    ("Manufacturer:siemens", {"ct_chest", "ct_scout"}),
    ("Manufacturer:siemens*", {"ct_chest", "ct_scout", "ct_abdomen"}),
    ('Manufacturer:"Siemens Healthineers"', {"ct_abdomen"}),
    ("ImageType:LOCALIZER", {"ct_scout"}),
    ("ImageType:(DERIVED AND PRIMARY)", {"seg_liver", "ect"}),
    ("ImageType:AXIAL AND ImageType:ORIGINAL", {"ct_chest", "ct_abdomen", "ct_lung", "ct_ge"}),
    ("is_localizer:true", {"ct_scout"}),
    ("modality_curated:CT-LOCALIZER", {"ct_scout"}),
    ("PatientSex:F", {"ct_abdomen", "mr_small"}),
    ("PatientName.FamilyName:O'Brien", {"ct_lung"}),
    ("patientname.familyname:o'brien", {"ct_lung"}),
    ("dataset:LUNGS", {"ct_lung", "ect"}),
    ("dataset:lungs AND Modality:CT", {"ct_lung", "ect"}),
    ("_exists_:dataset", {"ct_lung", "ect"}),
    ("lung", {"ct_lung", "ect"}),
    ("LIVER", {"seg_liver"}),
    ('"w contrast"', {"ct_chest"}),
    ("lung perfusion", {"ect"}),
    ("instance_count:1", ALL),
    ("size_bytes:>0", ALL),
    ("received_at:[2000-01-01 TO *]", ALL),
    ("received_at:<2000", set()),
    (
        "(Modality:CT AND (BodyPartExamined:CHEST OR PatientAge:<1)) OR Modality:SEG",
        {"ct_chest", "ct_scout", "ct_ge", "ct_lung", "seg_liver"},
    ),
    (
        "Modality:CT AND BodyPartExamined:(CHEST OR LUNG) AND StudyDate:[2019-01-01 TO 2021-12-31]"
        " AND NOT SeriesDescription:*scout* AND PatientAge:>=0",
        {"ct_chest", "ct_lung"},
    ),
    # SQL in a query is text to look for, nothing more
    ('Modality:"CT\'; DROP TABLE series; --"', set()),
]


@pytest.mark.parametrize(("query", "expected"), TABLE, ids=[q or "<empty>" for q, _ in TABLE])
def test_query_finds_exactly(
    catalog: tuple[Kahu, dict[str, str]], query: str, expected: set[str]
) -> None:
    kahu, labels = catalog
    rows, total = search_series(kahu.catalog, SYSTEM, query, limit=1000)
    assert {labels[r.series_instance_uid] for r in rows} == expected
    assert total == len(expected)


def test_table_covers_forty_queries() -> None:
    assert len(TABLE) >= 40


def test_pages_and_total(catalog: tuple[Kahu, dict[str, str]]) -> None:
    kahu, _ = catalog
    first, total = search_series(kahu.catalog, SYSTEM, "Modality:CT", limit=4)
    rest, again = search_series(kahu.catalog, SYSTEM, "Modality:CT", limit=4, offset=4)
    assert (len(first), len(rest), total, again) == (4, 2, 6, 6)
    assert not {r.series_instance_uid for r in first} & {r.series_instance_uid for r in rest}


def test_hostile_sql_leaves_the_catalog_whole(catalog: tuple[Kahu, dict[str, str]]) -> None:
    kahu, _ = catalog
    search_series(kahu.catalog, SYSTEM, 'SeriesDescription:"\'); DELETE FROM series; --"')
    assert kahu.catalog.counts(SYSTEM).series == len(FIXTURE)


BAD = [
    ("Foo:bar", "unknown field 'Foo' at position 1"),
    ("Modality:CT AND Nonsense:1", "unknown field 'Nonsense' at position 17"),
    ("_exists_:Nonsense", "unknown field 'Nonsense'"),
    ("Modality:(CT", "syntax error"),
    ("Modality:CT AND", "syntax error"),
    ("Rows:abc", "Rows takes a number, not 'abc' at position 6"),
    ("PatientAge:>=old", "PatientAge takes a number"),
    ("Rows:1*", "wildcards apply to text, date and time fields, not Rows"),
    ("StudyDate:2020-13-01", "is not a date"),
    ("StudyDate:yesterday", "is not a date"),
    ('StudyTime:"25:00"', "is not a time"),
    ("x' OR '1'='1", "syntax error: Illegal character"),
    ("StudyDate:[2021 TO 2020]", "empty range"),
    ("PatientAge:[50 TO 40]", "empty range"),
    ("is_localizer:maybe", "takes true or false"),
    ("is_localizer:[true TO false]", "not a range"),
    ("PixelData:*", "holds no searchable value"),
    ("ReferencedSeriesSequence:x", "holds no searchable value"),
    ("[1 TO 2]", "a range needs a field"),
    ("lung~2", "fuzzy search"),
    ('"lung ct"~3', "proximity search"),
    ("/lu.g/", "regular expressions"),
    ("Modality:CT && Rows:64", "use AND, OR and NOT"),
    ("x" * 5000, "longer than 4096"),
    ("(" * 300 + "CT" + ")" * 300, "nested deeper"),
    ("Modality:" + "(" * 41 + "CT" + ")" * 41, "nested deeper"),
]


@pytest.mark.parametrize(("query", "message"), BAD, ids=[q[:40] for q, _ in BAD])
def test_bad_queries_are_refused_with_a_reason(sqlite_kahu: Kahu, query: str, message: str) -> None:
    with pytest.raises(QueryError, match=message.replace("(", r"\(").replace("[", r"\[")):
        search_series(sqlite_kahu.catalog, SYSTEM, query)


@pytest.mark.parametrize(
    ("query", "sort", "expected"),
    [
        (
            "Modality:CT",
            "StudyDate",
            ["ct_ge", "ect", "ct_lung", "ct_abdomen", "ct_scout", "ct_chest"],
        ),
        (
            "*",
            "-PatientAge",
            # series without an age come last, newest first
            [
                "seg_liver",
                "ect",
                "ct_scout",
                "ct_chest",
                "ct_abdomen",
                "ct_lung",
                "ct_ge",
                "sr",
                "rtdose",
                "mr_head",
                "mr_small",
            ],
        ),
        ("Modality:(MR OR SEG)", "modality, -studydate", ["mr_small", "mr_head", "seg_liver"]),
        ("Modality:CT AND StudyDate:2021", "-received_at", ["ct_scout", "ct_chest"]),
    ],
)
def test_sorted_results(
    catalog: tuple[Kahu, dict[str, str]], query: str, sort: str, expected: list[str]
) -> None:
    kahu, labels = catalog
    rows, _ = search_series(kahu.catalog, SYSTEM, query, sort=sort)
    assert [labels[r.series_instance_uid] for r in rows] == expected


@pytest.mark.parametrize(
    ("sort", "message"),
    [
        ("Colour", "unknown field 'Colour'"),
        ("dataset", "cannot be sorted"),
        (",".join("x" * 9), "8 fields"),
    ],
)
def test_bad_sorts_say_why(sqlite_kahu: Kahu, sort: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        search_series(sqlite_kahu.catalog, SYSTEM, "", sort=sort)
