"""The Executor contract (kahu.flow.executors.base), run against every executor: the local one
(a process per task) and Ray's (a real local cluster started here). Each submitted job's
outcome is reported exactly once: success, failure with the error, timeout, cancellation;
a command runs like a Python function."""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kahu.flow.executors.base import Executor, Outcome
from kahu.flow.job import Job

ROOT = Path(__file__).resolve().parents[2]
SERIES = "1.2.826.0.1.3680043.8.498.1"


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray  # in the test extras: `make test` installs it

    os.environ["PYTHONPATH"] = os.pathsep.join(  # workers import tests.flow.ops
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


class Reports:
    def __init__(self) -> None:
        self.queue: queue.Queue[Outcome] = queue.Queue()

    def __call__(self, outcome: Outcome) -> None:
        self.queue.put(outcome)

    def next(self, timeout: float = 120) -> Outcome:
        return self.queue.get(timeout=timeout)

    def none_within(self, seconds: float) -> bool:
        try:
            self.queue.get(timeout=seconds)
        except queue.Empty:
            return True
        return False


@pytest.fixture(params=["local", "ray"])
def executor(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Executor, Reports]]:
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
        from kahu.flow.executors.ray import RayExecutor

        instance: Executor = RayExecutor(tmp_path, queue_grace_s=60)
    else:
        from kahu.flow.executors.local import LocalExecutor

        instance = LocalExecutor(tmp_path, isolation="off")
    reports = Reports()
    instance.start(reports, preload=["tests.flow.ops"])
    yield instance, reports
    instance.stop()


def _job(tmp_path: Path, task_id: int, *, function: str = "", **fields: Any) -> Job:
    values: dict[str, Any] = {
        "task_id": task_id,
        "attempt": 1,
        "run_id": "contract",
        "workflow": "contract",
        "version": "1",
        "operator": f"op{task_id}",
        "kind": "python",
        "per": "series",
        "series_uid": SERIES,
        "inputs": {},
        "params": {},
        "run_dir": str(tmp_path / "runs" / "contract"),
        "series": (),
        "timeout_s": 60.0,
        "cpu": 0.5,
        "memory_mb": 256,
        "gpu_memory_mb": 0,
        "function": function or None,
        "isolation": "off",
    }
    values.update(fields)
    return Job(**values)


class TestExecutorContract:
    def test_a_job_that_succeeds(self, executor: tuple[Executor, Reports], tmp_path: Path) -> None:
        instance, reports = executor
        job = _job(tmp_path, 1, function="tests.flow.ops:mark", series=(SERIES,))
        instance.submit(job)
        outcome = reports.next()
        assert (outcome.task_id, outcome.attempt, outcome.ok) == (1, 1, True), outcome
        assert (job.out_dir / "seen.json").exists()  # it ran, in its own folder
        assert reports.none_within(0.5)  # reported once

    def test_a_job_that_fails_says_why(
        self, executor: tuple[Executor, Reports], tmp_path: Path
    ) -> None:
        instance, reports = executor
        job = _job(tmp_path, 2, function="tests.flow.ops:fail_for_odd", params={"bad": [SERIES]})
        instance.submit(job)
        outcome = reports.next()
        assert not outcome.ok
        assert f"cannot process {SERIES}" in outcome.error
        assert (outcome.timed_out, outcome.cancelled) == (False, False)

    def test_a_job_past_its_time_is_killed(
        self, executor: tuple[Executor, Reports], tmp_path: Path
    ) -> None:
        instance, reports = executor
        job = _job(
            tmp_path, 3, function="tests.flow.ops:sleep", params={"seconds": 60}, timeout_s=1.0
        )
        started = time.monotonic()
        instance.submit(job)
        outcome = reports.next()
        assert (outcome.ok, outcome.timed_out) == (False, True), outcome
        assert time.monotonic() - started < 50

    def test_a_cancelled_job_is_reported_cancelled(
        self, executor: tuple[Executor, Reports], tmp_path: Path
    ) -> None:
        instance, reports = executor
        job = _job(tmp_path, 4, function="tests.flow.ops:sleep", params={"seconds": 60})
        instance.submit(job)
        log = Path(job.run_dir) / "events.log"  # the workflow folder: sleep writes "start"
        deadline = time.monotonic() + 60
        while not (log.exists() and "start" in log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        instance.cancel(4)
        outcome = reports.next()
        assert (outcome.task_id, outcome.ok, outcome.cancelled) == (4, False, True), outcome
        assert reports.none_within(0.5)

    def test_a_command_runs_with_the_task_environment(
        self, executor: tuple[Executor, Reports], tmp_path: Path
    ) -> None:
        instance, reports = executor
        job = _job(
            tmp_path,
            5,
            kind="command",
            command=("sh", "-c", 'echo "$SERIES_INSTANCE_UID" > uid.txt'),  # cwd: its folder
        )
        instance.submit(job)
        outcome = reports.next()
        assert outcome.ok, (outcome, job.log_path.read_text() if job.log_path.exists() else "")
        assert (job.out_dir / "uid.txt").read_text().strip() == SERIES

    def test_several_jobs_each_reported_once(
        self, executor: tuple[Executor, Reports], tmp_path: Path
    ) -> None:
        instance, reports = executor
        for task_id in range(10, 14):
            instance.submit(_job(tmp_path, task_id, function="tests.flow.ops:noop"))
        outcomes = [reports.next() for _ in range(4)]
        assert sorted(o.task_id for o in outcomes) == [10, 11, 12, 13]
        assert all(o.ok for o in outcomes)
        assert reports.none_within(0.5)
