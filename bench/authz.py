"""The cost of authorization on search at a million series: the same questions asked as an
administrator (every series) and as a member of two of four projects (the read scope that
every route adds), on one catalog in one run.

The series are the IDC index's (as :mod:`bench.search`), spread over four projects (by a
hash of the series UID); the member's scope is the policy's own
(:func:`kahu.auth.policy.read_scope`), added to each query the way the API adds it. Target:
< 10% added latency (p50).
"""

from __future__ import annotations

import gc
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

from bench.search import (
    COHORT,
    FACET_QUERY,
    FACETS,
    WILDCARD,
    _backend,
    _rows,
    _times,
    parquet_path,
    series_of,
)
from kahu.auth.policy import EVERYTHING, read_scope
from kahu.core import Kahu
from kahu.search.aggregations import aggregate
from kahu.search.query import parse
from kahu.search.series import search_series
from kahu.settings import Settings

PROJECTS = ("p0", "p1", "p2", "p3")


def _project(row: tuple[Any, ...]) -> str:
    return PROJECTS[zlib.crc32(str(row[2]).encode()) % len(PROJECTS)]  # by SeriesInstanceUID


def figures(
    backend: str, rows: list[tuple[Any, ...]], runs: int, batch: int = 5000
) -> dict[str, Any]:
    with _backend(backend) as url, tempfile.TemporaryDirectory(prefix="kahu-bench-") as home:
        settings = Settings(home=Path(home), database_url=url)
        settings.dicom.enabled = False
        with Kahu(settings) as kahu:
            for name in PROJECTS:
                kahu.projects.create(name)
            user = kahu.accounts.create_user("member", "a long enough password")
            kahu.projects.set_member("p0", "member", "viewer")
            kahu.projects.set_member("p1", "member", "viewer")
            for offset in range(0, len(rows), batch):
                chunk = rows[offset : offset + batch]
                for name in PROJECTS:
                    mine = [series_of(r) for r in chunk if _project(r) == name]
                    kahu.catalog.add_series(mine, project=name)
            index = kahu.search_index
            assert index is not None
            gc.collect()
            index.current()
            member = read_scope(kahu.projects, user)
            catalog = kahu.catalog
            cohort, wildcard, facet = parse(COHORT), parse(WILDCARD), parse(FACET_QUERY)

            def ask(scoped: bool) -> dict[str, Any]:
                scope = member if scoped else EVERYTHING
                return {
                    "first 100": _times(
                        lambda: search_series(catalog, scope, cohort, limit=100, index=index), runs
                    ),
                    "count": _times(
                        lambda: search_series(catalog, scope, cohort, limit=0, index=index), runs
                    ),
                    "wildcard": _times(
                        lambda: search_series(catalog, scope, wildcard, limit=0, index=index), runs
                    ),
                    "facets": _times(
                        lambda: aggregate(catalog, scope, facet, FACETS, index=index), runs
                    ),
                }

            rounds = [(ask(False), ask(True)) for _ in range(3)]  # interleaved
            _, everything = search_series(catalog, EVERYTHING, cohort, limit=0, index=index)
            _, scoped = search_series(catalog, member, cohort, limit=0, index=index)
            _, scoped_sql = search_series(catalog, member, cohort, limit=0)
            assert scoped == scoped_sql, (scoped, scoped_sql)
            out: dict[str, Any] = {"series": len(rows), "cohort": everything, "scoped": scoped}
            for name in rounds[0][0]:
                out[name] = (
                    min(r[0][name]["p50"] for r in rounds),
                    min(r[1][name]["p50"] for r in rounds),
                )
            return out


def run(
    runs: int = 20,
    limit: int | None = None,
    backends: tuple[str, ...] = ("sqlite",),
    parquet: Path | None = None,
) -> list[dict[str, Any]]:
    rows = _rows(parquet or parquet_path(), limit)
    measured = {backend: figures(backend, rows, runs) for backend in backends}
    out: list[dict[str, Any]] = []
    for name in ("first 100", "count", "wildcard", "facets"):
        line: dict[str, Any] = {"measure (ms, p50)": name, "target": "scoped < 1.10x"}
        for backend, f in measured.items():
            everything, scoped = f[name]
            line[f"{backend} all"] = everything
            line[f"{backend} scoped"] = scoped
            line[f"{backend} ratio"] = round(scoped / everything, 3) if everything else ""
        out.append(line)
    for name in ("series", "cohort", "scoped"):
        line = {"measure (ms, p50)": name, "target": ""}
        for backend, f in measured.items():
            line[f"{backend} all"] = f[name]
        out.append(line)
    return out


if __name__ == "__main__":  # pragma: no cover
    start = time.perf_counter()
    for row in run(limit=20_000):
        print(row)
    print(f"{time.perf_counter() - start:.1f} s")
