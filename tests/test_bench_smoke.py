"""`make bench` stays runnable: both suites at a tiny scale (figures are not checked here)."""

from __future__ import annotations

import pytest
from bench import ingest, web


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
