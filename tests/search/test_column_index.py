"""The column index answers exactly what SQL answers: the whole query table, pages in order,
facets and autocomplete; and it follows the catalog as series come and go, from any writer."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from sqlalchemy import text

from kahu.catalog.ingest import read_instance
from kahu.catalog.records import InstanceFacts
from kahu.catalog.repository import Catalog, NewSeries
from kahu.core import Kahu
from kahu.search.aggregations import DateHistogram, Distinct, Facet, Histogram, Terms, aggregate
from kahu.search.columns import INDEXED_FIELDS, ColumnIndex
from kahu.search.facts import field_values
from kahu.search.query import And, Compare, Exists, Like, Node, Not, Or, Range, parse
from kahu.search.series import search_series
from kahu.settings import Settings
from tests.conftest import SYSTEM
from tests.search.test_query_table import TABLE
from tests.synthetic import ct_series

Fixture = tuple[Kahu, dict[str, str]]


def _fields(node: Node) -> set[str]:
    if isinstance(node, And | Or):
        return set().union(*(_fields(item) for item in node.items))
    if isinstance(node, Not):
        return _fields(node.item)
    if isinstance(node, Like):
        return {f.name for f in node.fields if f.column is None}
    if isinstance(node, Compare | Range | Exists):
        return {node.field.name} if node.field.column is None else set()
    return set()


def _on_columns(node: Node) -> bool:
    """Whether a query names a catalog column (received_at, ...), which only SQL answers."""
    if isinstance(node, And | Or):
        return any(_on_columns(item) for item in node.items)
    if isinstance(node, Not):
        return _on_columns(node.item)
    fields = node.fields if isinstance(node, Like) else getattr(node, "field", None)
    fields = fields if isinstance(fields, tuple) else (fields,) if fields else ()
    return any(f.column not in (None, "dataset", "tags") for f in fields)


#: every document field the table names, so that the index (not SQL) answers the table
TABLE_FIELDS = sorted(set(INDEXED_FIELDS).union(*(_fields(parse(q)) for q, _ in TABLE)))


@pytest.fixture(scope="module")
def index(catalog: Fixture) -> ColumnIndex:
    kahu, _ = catalog
    return ColumnIndex(kahu.catalog, fields=TABLE_FIELDS)


@pytest.mark.parametrize(("query", "expected"), TABLE, ids=[q or "<empty>" for q, _ in TABLE])
def test_the_index_answers_the_query_table(
    catalog: Fixture, index: ColumnIndex, query: str, expected: set[str]
) -> None:
    kahu, labels = catalog
    node = parse(query)
    mask = index.mask(index.current(), node)
    assert (mask is None) == _on_columns(node)  # everything else is the index's own answer
    rows, total = search_series(kahu.catalog, SYSTEM, query, limit=1000, index=index)
    assert {labels[r.series_instance_uid] for r in rows} == expected
    assert total == len(expected)


@pytest.mark.parametrize("query", ["", "Modality:CT", "NOT BodyPartExamined:CHEST", "lung"])
def test_pages_come_in_the_order_sql_gives(
    catalog: Fixture, index: ColumnIndex, query: str
) -> None:
    kahu, _ = catalog
    for offset, limit in [(0, 3), (2, 4), (5, 100), (50, 10)]:
        by_sql = search_series(kahu.catalog, SYSTEM, query, limit=limit, offset=offset)
        by_index = search_series(
            kahu.catalog, SYSTEM, query, limit=limit, offset=offset, index=index
        )
        assert [r.series_instance_uid for r in by_index[0]] == [
            r.series_instance_uid for r in by_sql[0]
        ]
        assert by_index[1] == by_sql[1]


FACETS: dict[str, Facet] = {
    "modality": Terms("Modality"),
    "top2": Terms("Modality", size=2),
    "image_type": Terms("ImageType"),  # multi-valued
    "manufacturer": Terms("Manufacturer"),
    "sex": Terms("PatientSex"),
    "localizer": Terms("is_localizer"),
    "thickness": Terms("SliceThickness"),
    "age": Histogram("PatientAge", 10),
    "fine_age": Histogram("PatientAge", 0.25),
    "years": DateHistogram("StudyDate", "year"),
    "months": DateHistogram("StudyDate", "month"),
    "days": DateHistogram("StudyDate", "day"),
    "patients": Distinct("patients"),
    "studies": Distinct("studies"),
    "series": Distinct("series"),
    "datasets": Terms("dataset"),  # memberships: read beside the index, kept to its matches
    "tags": Terms("tags"),
}


@pytest.mark.parametrize("query", ["", "Modality:CT", "NOT BodyPartExamined:CHEST", "Rows:64"])
def test_facets_count_what_sql_counts(catalog: Fixture, index: ColumnIndex, query: str) -> None:
    kahu, _ = catalog
    assert aggregate(kahu.catalog, SYSTEM, query, FACETS, index=index) == aggregate(
        kahu.catalog, SYSTEM, query, FACETS
    )


def test_tag_and_dataset_facets_count_what_sql_counts(catalog: Fixture, index: ColumnIndex) -> None:
    kahu, _ = catalog
    rows, _ = kahu.catalog.list_series(SYSTEM, limit=4)
    uids = [r.series_instance_uid for r in rows]
    kahu.curation.tag(uids[:3], add=["review"])
    kahu.curation.tag(uids[1:2], add=["urgent"])
    try:
        for query in ("", "Modality:CT", "tags:review", "NOT tags:urgent"):
            assert aggregate(kahu.catalog, SYSTEM, query, FACETS, index=index) == aggregate(
                kahu.catalog, SYSTEM, query, FACETS
            ), query
    finally:
        kahu.curation.tag(uids, remove=["review", "urgent"])


@pytest.mark.parametrize(
    ("field", "prefix"),
    [("Modality", ""), ("Manufacturer", "sie"), ("ImageType", "LOC"), ("PatientAge", "4"),
     ("StudyDate", "2021"), ("Manufacturer", "%")],
)  # fmt: skip
def test_autocomplete_offers_what_sql_offers(
    catalog: Fixture, index: ColumnIndex, field: str, prefix: str
) -> None:
    kahu, _ = catalog
    assert field_values(kahu.catalog, SYSTEM, field, prefix=prefix, index=index) == field_values(
        kahu.catalog, SYSTEM, field, prefix=prefix
    )


# -- following the catalog ---------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def kahu(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Kahu]:
    url = "" if request.param == "sqlite" else request.getfixturevalue("postgres").new_database()
    with Kahu(Settings(home=tmp_path_factory.mktemp("columns"), database_url=url)) as kahu:
        yield kahu


def _uids(kahu: Kahu, query: str) -> set[str]:
    rows, total = search_series(kahu.catalog, SYSTEM, query, limit=1000, index=kahu.search_index)
    assert total == len(rows)
    return {r.series_instance_uid for r in rows}


def _series(kahu: Kahu, description: str) -> str:
    result = kahu.ingestor.ingest(ct_series(1, 8, description=description)[0])
    assert result.status == "stored"
    assert result.series_instance_uid is not None
    return result.series_instance_uid


def test_new_and_deleted_series_are_seen_at_once(kahu: Kahu) -> None:
    assert kahu.search_index is not None
    assert _uids(kahu, "Modality:CT") == set()
    first = _series(kahu, "first")
    assert _uids(kahu, "SeriesDescription:first") == {first}
    second = _series(kahu, "second")
    assert _uids(kahu, "Modality:CT") == {first, second}
    kahu.ingestor.delete_series(first)
    assert _uids(kahu, "Modality:CT") == {second}
    third = _series(kahu, "first")  # SQLite may give it the deleted series' key
    assert _uids(kahu, "SeriesDescription:first") == {third}
    total, facets = aggregate(
        kahu.catalog, SYSTEM, "", {"d": Terms("SeriesDescription")}, index=kahu.search_index
    )
    assert (total, [(b.key, b.count) for b in facets["d"].buckets]) == (
        2,
        [("first", 1), ("second", 1)],
    )


def test_another_writer_is_seen(kahu: Kahu) -> None:
    """A second process (``kahu import`` beside the server) writes through its own catalog."""
    _series(kahu, "ours")
    assert _uids(kahu, "SeriesDescription:theirs") == set()
    other = Catalog(kahu.db.__class__(kahu.db.engine))
    template = _template(kahu, _series(kahu, "template"))
    added = other.add_series(
        [
            NewSeries(
                replace(template, series_instance_uid="1.2.3.4"), {"SeriesDescription": "theirs"}
            )
        ]
    )
    assert added == 1
    assert _uids(kahu, "SeriesDescription:theirs") == {"1.2.3.4"}


def _template(kahu: Kahu, series_uid: str) -> InstanceFacts:
    instance = kahu.catalog.instances(SYSTEM, series_uid=series_uid)[0]
    facts, _ = read_instance(kahu.store.get(instance.blob_key))
    return facts


@pytest.mark.postgres
def test_series_transactions_take_generations_in_commit_order(
    postgres: Any, tmp_path: Path
) -> None:
    """While one transaction that creates series is open, another waits for it, so a reader
    never sees a later generation committed before an earlier one (PostgreSQL; SQLite has one
    writer at a time anyway)."""
    with Kahu(Settings(home=tmp_path, database_url=postgres.new_database())) as kahu:
        _generations_wait(kahu)


def _generations_wait(kahu: Kahu) -> None:
    template = _template(kahu, _series(kahu, "before"))
    done = threading.Event()
    with kahu.db.engine.connect() as conn, conn.begin():
        conn.execute(
            text("UPDATE catalog_state SET value = value + 1 WHERE key = 'series_generation'")
        )

        def other() -> None:
            kahu.catalog.add_series(
                [NewSeries(replace(template, series_instance_uid="1.2.3.5"), {})]
            )
            done.set()

        worker = threading.Thread(target=other)
        worker.start()
        time.sleep(0.5)
        assert not done.is_set()
    worker.join(10)
    assert done.is_set()
    assert "1.2.3.5" in _uids(kahu, "")


def test_series_registered_by_metadata_alone(kahu: Kahu) -> None:
    """``Catalog.add_series``: the metadata write path of ingest, in bulk, idempotent."""
    template = _template(kahu, _series(kahu, "template"))
    batch = [
        NewSeries(
            replace(template, series_instance_uid=f"1.2.9.{n}", patient_id=f"P{n % 3}"),
            {"Modality": "MR", "SeriesDescription": f"bulk {n}", "PatientAge": 30 + n},
            instance_count=n,
            size_bytes=1000 * n,
        )
        for n in range(1, 8)
    ]
    assert kahu.catalog.add_series(batch, dataset="BULK") == 7
    assert kahu.catalog.add_series(batch[:3]) == 0  # known series stay as they are
    assert _uids(kahu, "Modality:MR AND PatientAge:>=35 AND dataset:bulk") == {
        f"1.2.9.{n}" for n in range(5, 8)
    }
    row = kahu.catalog.get_series(SYSTEM, "1.2.9.4")
    assert (row.instance_count, row.size_bytes, row.datasets) == (4, 4000, ["BULK"])
    counts = kahu.catalog.counts(SYSTEM)
    assert (counts.series, counts.patients) == (8, 4)


def test_searches_use_sql_while_the_index_first_loads(kahu: Kahu) -> None:
    index = kahu.search_index
    assert index is not None
    uid = _series(kahu, "early")
    fresh = ColumnIndex(kahu.catalog)
    with fresh._lock:  # another thread is loading it
        assert fresh.current(wait=False) is None
        rows, total = search_series(kahu.catalog, SYSTEM, "SeriesDescription:early", index=fresh)
        assert ([r.series_instance_uid for r in rows], total) == ([uid], 1)
        total, facets = aggregate(kahu.catalog, SYSTEM, "", {"m": Terms("Modality")}, index=fresh)
        assert (total, facets["m"].buckets[0].key) == (1, "CT")
    assert fresh.current(wait=False) is not None


def test_nul_characters_inside_values_are_dropped(kahu: Kahu) -> None:
    """240 series of the IDC index have a NUL inside SeriesDescription; PostgreSQL refuses
    NUL in text and JSON. The catalog stores such a series on both backends, without it."""
    ds = pydicom.dcmread(io.BytesIO(ct_series(1, 8)[0]))
    ds.SeriesDescription = "SliceInc-\0_ReconFilter-C"
    ds.PatientName = "Nul\0^Name"
    out = io.BytesIO()
    ds.save_as(out)
    assert kahu.ingestor.ingest(out.getvalue()).status == "stored"
    [uid] = _uids(kahu, "SeriesDescription:SliceInc-_ReconFilter-C")
    assert kahu.catalog.get_series(SYSTEM, uid).document["PatientName"] == "Nul^Name"
    template = _template(kahu, uid)
    bulk = NewSeries(replace(template, series_instance_uid="1.2.9.9"), {"ProtocolName": "a\0b"})
    assert kahu.catalog.add_series([bulk]) == 1
    assert kahu.catalog.get_series(SYSTEM, "1.2.9.9").document == {"ProtocolName": "ab"}


def test_codes_widen_as_a_field_gains_values(kahu: Kahu) -> None:
    """A field's codes start as bytes and widen past 256 distinct values between refreshes."""
    template = _template(kahu, _series(kahu, "template"))

    def batch(start: int, stop: int) -> list[NewSeries]:
        return [
            NewSeries(
                replace(template, series_instance_uid=f"1.2.8.{n}"), {"ProtocolName": f"p{n}"}
            )
            for n in range(start, stop)
        ]

    kahu.catalog.add_series(batch(0, 200))
    assert _uids(kahu, "ProtocolName:p7") == {"1.2.8.7"}
    index = kahu.search_index
    assert index is not None
    snapshot = index.current()
    assert snapshot is not None
    assert snapshot.codes["ProtocolName"].dtype == np.uint8
    kahu.catalog.add_series(batch(200, 400))
    assert _uids(kahu, "ProtocolName:p7 OR ProtocolName:p399") == {"1.2.8.7", "1.2.8.399"}
    snapshot = index.current()
    assert snapshot is not None
    assert snapshot.codes["ProtocolName"].dtype == np.uint16
    _, facets = aggregate(kahu.catalog, SYSTEM, "", {"p": Terms("ProtocolName", 1000)}, index=index)
    assert len(facets["p"].buckets) == 400
