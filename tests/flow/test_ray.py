"""The same workflows on a local Ray cluster (a real one, started by the test)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kahu.core import Kahu
from kahu.flow.job import RunPaths
from tests.flow.conftest import add_series, flow_settings, run_workflow, start_kahu

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    import ray  # in the test extras: `make test` installs it

    # workers import the test operators from the checkout
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def ray_kahu(make_settings: Any, ray_cluster: None) -> Iterator[Kahu]:
    instance = start_kahu(flow_settings(make_settings, executor="ray"))
    yield instance
    instance.stop()


@pytest.mark.timeout(300)
def test_chain_with_failures_and_retries_on_ray(ray_kahu: Kahu) -> None:
    assert ray_kahu.flow.executor.name == "ray"
    series = add_series(ray_kahu, 3)
    run_id = run_workflow(ray_kahu, "test-chain", series, {"threshold": 3})
    assert ray_kahu.flow.wait_idle(run_id, 240) == "succeeded", [
        (t.operator, t.state, t.error) for t in ray_kahu.runs.tasks(run_id) if t.error
    ]
    paths = RunPaths(ray_kahu.settings.runs_root, run_id)
    for uid in series:
        seen = json.loads((paths.out_dir("mark", uid) / "seen.json").read_text())
        assert seen["params"]["threshold"] == 3
        assert len(seen["inputs"]) == 2
    failing = run_workflow(ray_kahu, "test-failing", series, {"bad": [series[0]]})
    assert ray_kahu.flow.wait_idle(failing, 240) == "failed"
    states = {(t.operator, t.series_uid): t.state for t in ray_kahu.runs.tasks(failing)}
    assert states[("work", series[0])] == "failed"
    assert states[("work", series[1])] == "succeeded"
    flaky = run_workflow(ray_kahu, "test-flaky", series[:1])
    assert ray_kahu.flow.wait_idle(flaky, 240) == "succeeded"


@pytest.mark.timeout(300)
def test_timeout_and_commands_on_ray(ray_kahu: Kahu) -> None:
    series = add_series(ray_kahu, 1)
    run_id = run_workflow(ray_kahu, "test-timeout", series)
    assert ray_kahu.flow.wait_idle(run_id, 240) == "failed"
    (task,) = ray_kahu.runs.tasks(run_id)
    assert "timed out after 1 s" in task.error
    # the node killed the whole process group: the grandchild too
    pid = int((RunPaths(ray_kahu.settings.runs_root, run_id).root / "grandchild.pid").read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
    shell = run_workflow(ray_kahu, "test-command", series)
    assert ray_kahu.flow.wait_idle(shell, 240) == "succeeded"
    out = RunPaths(ray_kahu.settings.runs_root, shell).out_dir("shell", series[0])
    assert (out / "batch.txt").read_text().split() == series
