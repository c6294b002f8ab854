"""`make bench` stays runnable: both suites at a tiny scale (figures are not checked here)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench import federation, ingest, models, search, web


def test_ingest_suite_runs(dcmtk: None) -> None:
    rows = ingest.run(count=8, rounds=1, associations=(1, 2))
    systems = ["bare pynetdicom SCP", "bare SCP + fsync", "kahu"]
    assert [r["system"] for r in rows] == systems * 2
    assert all(r["instances"] == 8 and r["instances_per_s"] > 0 for r in rows)
    assert all("ratio_to_bare" in r for r in rows if r["system"] != systems[0])


@pytest.mark.timeout(300)
def test_web_suite_runs() -> None:
    stow, metadata = web.run(count=12, clients=2, batch=5, metadata_runs=3, rounds=2)
    assert stow["instances"] == 12
    assert len(stow["seconds"]) == 2
    assert stow["median_instances_per_s"] > 0
    assert metadata["runs"] >= 3
    assert metadata["p50_ms"] > 0


@pytest.mark.timeout(300)
def test_federation_suite_runs() -> None:
    rows = federation.run(runs=2, sequential=3)
    assert [r["runs"] for r in rows] == [2, 2, 2, 3]
    assert rows[-1]["lost_or_failed"] == 0
    assert all(r["p50_s"] > 0 for r in rows[:3])


@pytest.mark.timeout(600)
def test_models_suite_runs() -> None:
    """The deepbet and MONAI bundle pairs (the nnU-Net pair trains a model first: bench
    only)."""
    rows = models.deepbet(rounds=1)
    assert [r["system"] for r in rows] == ["deepbet-cli (NIfTI)", "kahu (DICOM -> SEG + SR)"]
    assert all(r["median_s"] > 0 and r["peak_mb"] > 0 for r in rows)
    assert rows[1]["ratio_to_bare"] > 0
    rows = models.bundle(rounds=1, resolution=2)
    assert [r["system"] for r in rows] == ["monai.bundle.run (NIfTI)", "kahu (DICOM -> SEG)"]
    assert all(r["median_s"] > 0 and r["peak_mb"] > 0 for r in rows)


@pytest.fixture
def idc_parquet(tmp_path: Path) -> Path:
    """A parquet file with the IDC index's columns: 40 series instead of a million."""
    import duckdb

    parquet = tmp_path / "idc.parquet"
    rows = [
        (
            f"P{n % 7}", f"1.2.{n % 11}", f"1.2.3.{n}", f"{30 + n:03d}Y", "MF"[n % 2],
            f"20{n % 20:02d}-01-0{1 + n % 9}", "study", ["CHEST", "ABDOMEN", None][n % 3],
            ["CT", "MR"][n % 2], ["SIEMENS", "GE"][n % 2], "model", None,
            ["Lung 1mm", "scout", "LUNG window"][n % 3], str(n), "1.2.840.10008.5.1.4.1.1.2",
            n, 1.5, f"collection-{n % 4}",
        )
        for n in range(40)
    ]  # fmt: skip
    con = duckdb.connect()
    types = {"instanceCount": "BIGINT", "series_size_MB": "DOUBLE"}
    con.execute(
        "CREATE TABLE idc ("
        + ", ".join(f"{c} {types.get(c, 'VARCHAR')}" for c in search.COLUMNS)
        + ")"
    )
    con.executemany(f"INSERT INTO idc VALUES ({', '.join('?' * len(search.COLUMNS))})", rows)
    con.execute(f"COPY idc TO '{parquet}' (FORMAT parquet)")
    return parquet


def test_search_suite_runs(idc_parquet: Path) -> None:
    table = search.run(runs=2, backends=("sqlite",), parquet=idc_parquet)
    figures = {row["measure (ms)"]: row for row in table}
    assert figures["series"]["sqlite p50"] == 40
    assert figures["cohort matches"]["sqlite p50"] == 7  # CT, CHEST, SIEMENS: n % 6 == 0
    assert figures["first 100"]["DuckDB p50"] > 0


def test_authorization_suite_runs(idc_parquet: Path) -> None:
    from bench import authz

    table = authz.run(runs=2, backends=("sqlite",), parquet=idc_parquet)
    figures = {row["measure (ms, p50)"]: row for row in table}
    assert figures["series"]["sqlite all"] == 40
    assert figures["cohort"]["sqlite all"] == 7
    assert 0 < figures["scoped"]["sqlite all"] < 7  # two of four projects
    assert figures["facets"]["sqlite scoped"] > 0


def test_flow_suite_runs() -> None:
    """The engine benchmark's no-op workflow over a handful of series (local executor)."""
    from bench import flow

    row = flow._measure("local", flow._series_files(6), 2)
    assert row["state"] == "succeeded"
    assert row["series"] == 6
    assert row["scheduler ms/task"] >= 0


def test_ui_suite_runs(idc_parquet: Path) -> None:
    """The Explore page benchmark in Chromium, on the 40-series parquet."""
    from bench import ui

    rows = ui.run(count=40, runs=2, parquet=idc_parquet)
    assert [r["measure"] for r in rows] == [
        "first meaningful render",
        "facet click to updated results",
    ]
    assert all(r["p50 ms"] > 0 and r["series"] == 40 for r in rows)
