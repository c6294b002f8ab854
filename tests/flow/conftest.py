"""A started Kahu with the test workflows registered, on each catalog backend."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kahu.core import Kahu
from kahu.flow.cohort import RunInput
from kahu.flow.job import Job, TaskContext
from kahu.flow.launch import launch
from kahu.flow.services import OperatorServices
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


def internal_task(
    kahu: Kahu,
    run_dir: Path,
    *,
    project: str = "default",
    series_uid: str = "",
    launched_by: str = "",
    params: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[TaskContext, OperatorServices]:
    """The context and services an internal operator of one task gets, as the engine builds
    them, for a run in ``project`` launched by ``launched_by`` (to call the operator's
    function directly, with cohorts a launch would refuse)."""
    job = Job(
        task_id=0, attempt=1, run_id=run_dir.name, workflow="test", version="1",
        operator="op", kind="internal", per="series", series_uid=series_uid, inputs={},
        params=params or {}, run_dir=str(run_dir), series=(), timeout_s=60, cpu=0.5,
        memory_mb=64, gpu_memory_mb=0, options=options or {}, project=project,
        launched_by=launched_by,
    )  # fmt: skip
    job.out_dir.mkdir(parents=True, exist_ok=True)
    assert kahu.flow.services is not None
    return TaskContext(job, logging.getLogger("kahu.test")), kahu.flow.services(job)
