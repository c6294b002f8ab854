"""A started Kahu with the test workflows registered, on each catalog backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kahu.core import Kahu
from kahu.flow.cohort import RunInput
from kahu.flow.launch import launch
from kahu.settings import FlowSettings
from tests.flow.ops import WORKFLOWS
from tests.synthetic import ct_series


def flow_settings(make_settings: Any, database_url: str = "", **flow: Any) -> Any:
    settings = make_settings(database_url, enabled=False)
    options = {
        "poll_seconds": 0.2,
        "cpus": 2.0,
        "min_free_disk_mb": 0,
        "thumbnails_on_arrival": False,
        **flow,
    }
    return settings.model_copy(update={"flow": FlowSettings(**options)})


def start_kahu(settings: Any) -> Kahu:
    instance = Kahu(settings)
    for workflow in WORKFLOWS:
        instance.workflows.add(workflow)
    instance.start()
    return instance


@pytest.fixture
def flow_kahu(make_settings: Any, database_url: str) -> Iterator[Kahu]:
    instance = start_kahu(flow_settings(make_settings, database_url))
    yield instance
    instance.stop()


@pytest.fixture
def local_kahu(make_settings: Any) -> Iterator[Kahu]:
    """SQLite only, for tests about processes rather than the database."""
    instance = start_kahu(flow_settings(make_settings))
    yield instance
    instance.stop()


def add_series(kahu: Kahu, count: int, instances: int = 2) -> list[str]:
    uids = []
    for index in range(count):
        files = ct_series(instances, size=16, patient_id=f"P{index}")
        results = kahu.ingestor.ingest_many(files)
        uids.append(results[0].series_instance_uid)
    return [u for u in uids if u]


Run = Callable[..., str]


def run_workflow(
    kahu: Kahu, name: str, series: list[str], params: dict[str, Any] | None = None
) -> str:
    return launch(
        kahu.catalog,
        kahu.workflows,
        kahu.flow,
        name,
        params,
        RunInput(series_uids=series),
        audit=kahu.audit,
        path="test",
    )[0]
