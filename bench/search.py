"""Search at a million series: Kahu on SQLite and PostgreSQL beside DuckDB on the same data.

The series come from the NCI Imaging Data Commons index that the PyPI package
``idc-index-data`` ships (1,044,191 series: real modality, body part, manufacturer, dates,
descriptions, instance counts). Kahu's catalog is filled through its own metadata write path
(:meth:`kahu.catalog.repository.Catalog.add_series`, the one that creates series at ingest);
DuckDB holds the same parquet file in memory: the analytic ceiling on this machine. Each
measurement runs the same question through the functions the HTTP API calls, repeated, and
reports p50 and p95.
"""

from __future__ import annotations

import gc
import importlib.resources
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import text

from kahu.auth.policy import EVERYTHING
from kahu.catalog.records import InstanceFacts
from kahu.catalog.repository import NewSeries
from kahu.core import Kahu
from kahu.dicom import values
from kahu.search.aggregations import DateHistogram, Distinct, Terms, aggregate
from kahu.search.series import search_series
from kahu.settings import Settings

COLUMNS = (
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "PatientAge",
    "PatientSex",
    "StudyDate",
    "StudyDescription",
    "BodyPartExamined",
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "SeriesDate",
    "SeriesDescription",
    "SeriesNumber",
    "SOPClassUID",
    "instanceCount",
    "series_size_MB",
    "collection_id",
)

COHORT = "Modality:CT AND BodyPartExamined:CHEST AND Manufacturer:SIEMENS"
COHORT_SQL = (
    "lower(Modality) = 'ct' AND lower(BodyPartExamined) = 'chest' "
    "AND lower(Manufacturer) = 'siemens'"
)
WILDCARD = "SeriesDescription:*lung*"
WILDCARD_SQL = "SeriesDescription ILIKE '%lung%'"
FACET_QUERY = "Modality:CT"
FACET_SQL = "lower(Modality) = 'ct'"
FACETS = {
    "manufacturer": Terms("Manufacturer"),
    "body_part": Terms("BodyPartExamined"),
    "sex": Terms("PatientSex"),
    "study_year": DateHistogram("StudyDate", "year"),
    "patients": Distinct("patients"),
}


def parquet_path() -> Path:
    return Path(str(importlib.resources.files("idc_index_data") / "idc_index.parquet"))


def _rows(parquet: Path, limit: int | None) -> list[tuple[Any, ...]]:
    import duckdb

    con = duckdb.connect()
    sql = f"SELECT {', '.join(COLUMNS)} FROM read_parquet(?) ORDER BY SeriesInstanceUID"
    if limit:
        sql += f" LIMIT {int(limit)}"
    return con.execute(sql, [str(parquet)]).fetchall()


def _date(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return values.parse_da(text.replace("-", ""))
    except ValueError:
        return None


def series_of(row: tuple[Any, ...]) -> NewSeries:
    """A catalog entry for one row of the IDC index: facts and a typed document, as ingest
    would make them from the series' first instance."""
    r = dict(zip(COLUMNS, row, strict=True))
    age = None
    if r["PatientAge"]:
        try:
            age = values.parse_as(r["PatientAge"])
        except ValueError:
            age = None
    number = None
    if r["SeriesNumber"]:
        try:
            number = values.parse_is(r["SeriesNumber"])
        except ValueError:
            number = None
    document = {
        "PatientID": r["PatientID"],
        "StudyInstanceUID": r["StudyInstanceUID"],
        "SeriesInstanceUID": r["SeriesInstanceUID"],
        "SOPClassUID": r["SOPClassUID"],
        "PatientAge": age,
        "PatientSex": r["PatientSex"] or None,
        "StudyDate": _date(r["StudyDate"]),
        "StudyDescription": r["StudyDescription"] or None,
        "BodyPartExamined": r["BodyPartExamined"] or None,
        "Modality": r["Modality"] or None,
        "Manufacturer": r["Manufacturer"] or None,
        "ManufacturerModelName": r["ManufacturerModelName"] or None,
        "SeriesDate": _date(r["SeriesDate"]),
        "SeriesDescription": r["SeriesDescription"] or None,
        "SeriesNumber": number,
        "ClinicalTrialProtocolID": r["collection_id"],
    }
    document = {k: v for k, v in document.items() if v is not None}
    facts = InstanceFacts(
        sop_instance_uid="",
        sop_class_uid=r["SOPClassUID"] or "",
        series_instance_uid=r["SeriesInstanceUID"],
        study_instance_uid=r["StudyInstanceUID"],
        transfer_syntax_uid="",
        patient_id=(r["PatientID"] or "")[:64],
        issuer_of_patient_id="",
        patient_name=None,
        patient_birth_date=None,
        patient_sex=(r["PatientSex"] or None),
        study_date=document.get("StudyDate"),
        study_time=None,
        accession_number=None,
        study_id=None,
        study_description=(r["StudyDescription"] or "")[:256] or None,
        referring_physician_name=None,
        modality=(r["Modality"] or "")[:16] or None,
        series_number=number,
        series_description=(r["SeriesDescription"] or "")[:256] or None,
        body_part_examined=(r["BodyPartExamined"] or "")[:64] or None,
        series_date=document.get("SeriesDate"),
        instance_number=None,
        number_of_frames=None,
        rows=None,
        columns=None,
    )
    size = int((r["series_size_MB"] or 0) * 1_000_000)
    return NewSeries(facts, document, int(r["instanceCount"] or 0), size)


def _times(fn: Callable[[], Any], runs: int, warmup: int = 2) -> dict[str, float]:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "p50": round(statistics.median(samples), 2),
        "p95": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 2),
    }


def duckdb_figures(parquet: Path, runs: int, limit: int | None) -> dict[str, dict[str, float]]:
    import duckdb

    con = duckdb.connect()
    source = "read_parquet(?)" if not limit else f"(SELECT * FROM read_parquet(?) LIMIT {limit})"
    con.execute(f"CREATE TABLE idc AS SELECT * FROM {source}", [str(parquet)])
    uid = con.execute(
        "SELECT SeriesInstanceUID FROM idc ORDER BY SeriesInstanceUID LIMIT 1 OFFSET ?",
        [min(1000, con.execute("SELECT count(*) - 1 FROM idc").fetchone()[0])],  # type: ignore[index]
    ).fetchone()
    assert uid is not None

    def q(sql: str, *params: Any) -> Callable[[], Any]:
        return lambda: con.execute(sql, list(params)).fetchall()

    def facets() -> None:
        for column in ("Manufacturer", "BodyPartExamined", "PatientSex"):
            con.execute(
                f"SELECT {column}, count(*) FROM idc WHERE {FACET_SQL} "
                "GROUP BY 1 ORDER BY 2 DESC LIMIT 10"
            ).fetchall()
        con.execute(
            f"SELECT substr(StudyDate, 1, 4), count(*) FROM idc WHERE {FACET_SQL} GROUP BY 1"
        ).fetchall()
        con.execute(f"SELECT count(DISTINCT PatientID) FROM idc WHERE {FACET_SQL}").fetchall()

    return {
        "first 100": _times(q(f"SELECT * FROM idc WHERE {COHORT_SQL} LIMIT 100"), runs),
        "count": _times(q(f"SELECT count(*) FROM idc WHERE {COHORT_SQL}"), runs),
        "wildcard": _times(q(f"SELECT count(*) FROM idc WHERE {WILDCARD_SQL}"), runs),
        "facets": _times(facets, runs),
        "document": _times(q("SELECT * FROM idc WHERE SeriesInstanceUID = ?", uid[0]), runs),
    }


@contextmanager
def _backend(name: str) -> Iterator[str]:
    if name == "sqlite":
        yield ""
        return
    from tests.postgres import PostgresCluster

    cluster = PostgresCluster()
    try:
        yield cluster.new_database()
    finally:
        cluster.stop()


def kahu_figures(
    backend: str, rows: list[tuple[Any, ...]], runs: int, batch: int = 5000
) -> dict[str, Any]:
    with _backend(backend) as url, tempfile.TemporaryDirectory(prefix="kahu-bench-") as home:
        settings = Settings(home=Path(home), database_url=url)
        settings.dicom.enabled = False
        with Kahu(settings) as kahu:
            start = time.perf_counter()
            for offset in range(0, len(rows), batch):
                kahu.catalog.add_series([series_of(r) for r in rows[offset : offset + batch]])
            load_s = time.perf_counter() - start
            # what an operator does after a bulk load (and autovacuum would do within minutes,
            # competing with the measurements meanwhile): statistics for the planner
            with kahu.db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE" if backend == "postgresql" else "ANALYZE"))
            index = kahu.search_index
            assert index is not None
            gc.collect()
            start = time.perf_counter()
            snapshot = index.current()
            index_s = time.perf_counter() - start
            uid = rows[min(1000, len(rows) - 1)][2]
            catalog = kahu.catalog
            figures: dict[str, Any] = {
                "series": len(snapshot.pks),
                "load series/s": round(len(rows) / load_s),
                "index load s": round(index_s, 2),
                "index MB": round(
                    sum(a.nbytes for a in snapshot.codes.values()) / 1e6
                    + 5 * len(snapshot.pks) * 8 / 1e6,
                    1,
                ),
                "first 100": _times(
                    lambda: search_series(catalog, EVERYTHING, COHORT, limit=100, index=index), runs
                ),
                "count": _times(
                    lambda: search_series(catalog, EVERYTHING, COHORT, limit=0, index=index), runs
                ),
                "wildcard": _times(
                    lambda: search_series(catalog, EVERYTHING, WILDCARD, limit=0, index=index), runs
                ),
                "facets": _times(
                    lambda: aggregate(catalog, EVERYTHING, FACET_QUERY, FACETS, index=index), runs
                ),
                "document": _times(
                    lambda: catalog.get_series(EVERYTHING, uid).full_document(), runs
                ),
                # the same questions without the column index: what SQL alone does
                "sql first 100": _times(
                    lambda: search_series(catalog, EVERYTHING, COHORT, limit=100), 3, warmup=1
                ),
                "sql count": _times(
                    lambda: search_series(catalog, EVERYTHING, COHORT, limit=0), 1, warmup=0
                ),
                "sql wildcard": _times(
                    lambda: search_series(catalog, EVERYTHING, WILDCARD, limit=0), 1, warmup=0
                ),
                "sql facets": _times(
                    lambda: aggregate(catalog, EVERYTHING, FACET_QUERY, FACETS), 1, warmup=0
                ),
            }
            _, total = search_series(catalog, EVERYTHING, COHORT, limit=0, index=index)
            _, sql_total = search_series(catalog, EVERYTHING, COHORT, limit=0)
            assert total == sql_total, (total, sql_total)
            figures["cohort matches"] = total
            return figures


TARGETS = {
    "first 100": "p50 < 20 ms",
    "count": "<= 2x DuckDB",
    "wildcard": "<= 2x DuckDB",
    "facets": "< 100 ms",
    "document": "< 5 ms",
}


def run(
    runs: int = 20,
    limit: int | None = None,
    backends: tuple[str, ...] = ("sqlite", "postgresql"),
    parquet: Path | None = None,
) -> list[dict[str, Any]]:
    """The table of figures; ``parquet`` is the IDC index unless another file with its
    columns is given (the smoke test's)."""
    parquet = parquet or parquet_path()
    rows = _rows(parquet, limit)
    duck = duckdb_figures(parquet, runs, limit)
    kahu = {backend: kahu_figures(backend, rows, runs) for backend in backends}
    out: list[dict[str, Any]] = []
    for name, target in TARGETS.items():
        line: dict[str, Any] = {"measure (ms)": name, "target": target}
        for backend, figures in kahu.items():
            line[f"{backend} p50"] = figures[name]["p50"]
            line[f"{backend} p95"] = figures[name]["p95"]
            line[f"{backend} / DuckDB"] = round(figures[name]["p50"] / duck[name]["p50"], 2)
        line["DuckDB p50"] = duck[name]["p50"]
        line["DuckDB p95"] = duck[name]["p95"]
        out.append(line)
    for name in ("sql first 100", "sql count", "sql wildcard", "sql facets"):
        line = {"measure (ms)": name, "target": "(no column index)"}
        for backend, figures in kahu.items():
            line[f"{backend} p50"] = figures[name]["p50"]
        out.append(line)
    for name in ("series", "cohort matches", "load series/s", "index load s", "index MB"):
        line = {"measure (ms)": name, "target": ""}
        for backend, figures in kahu.items():
            line[f"{backend} p50"] = figures[name]
        out.append(line)
    return out
