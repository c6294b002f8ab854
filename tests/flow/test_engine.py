"""The engine end to end on real processes: runs, dependencies, failures, retries,
timeouts, cancel, re-run, resources, human steps and storing results."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from kahu.core import Kahu
from kahu.errors import InvalidInput, InvalidParameters
from kahu.flow.job import RunPaths
from tests.flow.conftest import add_series, run_workflow


def _paths(kahu: Kahu, run_id: str) -> RunPaths:
    return RunPaths(kahu.settings.runs_root, run_id)


def _tasks(kahu: Kahu, run_id: str) -> dict[tuple[str, str], str]:
    return {(t.operator, t.series_uid): t.state for t in kahu.runs.tasks(run_id)}


class TestRuns:
    def test_chain_runs_every_series_and_the_run_level_operator(self, flow_kahu: Kahu) -> None:
        series = add_series(flow_kahu, 3)
        run_id = run_workflow(flow_kahu, "test-chain", series, {"threshold": 7})
        assert flow_kahu.flow.wait_idle(run_id, 60) == "succeeded"
        paths = _paths(flow_kahu, run_id)
        for uid in series:
            seen = json.loads((paths.out_dir("mark", uid) / "seen.json").read_text())
            assert seen["series"] == uid
            assert seen["run_series"] == series  # from conf.json: not carried by each task
            assert seen["params"] == {"threshold": 7, "mode": "fast", "bad": [], "seconds": 0.5}
            assert seen["env"] == {
                "RUN_ID": run_id,
                "OPERATOR_OUT_DIR": "mark",
                "WORKFLOW_NAME": "test-chain",
            }
            assert len(seen["inputs"]) == 2  # the two instances fetched by get-input
            assert all(name.endswith(".dcm") for name in seen["inputs"])
        counted = json.loads((paths.out_dir("count", "") / "count.json").read_text())
        assert counted == sorted(series)
        conf = json.loads(paths.conf.read_text())
        assert conf["workflow_form"]["threshold"] == 7
        assert set(_tasks(flow_kahu, run_id).values()) == {"succeeded"}
        info = flow_kahu.runs.run(run_id)
        assert info.started_at is not None
        assert info.finished_at is not None
        assert info.public()["progress"] == {"done": 7, "total": 7}

    def test_one_failing_series_does_not_fail_the_others(self, flow_kahu: Kahu) -> None:
        series = add_series(flow_kahu, 3)
        run_id = run_workflow(flow_kahu, "test-failing", series, {"bad": [series[1]]})
        assert flow_kahu.flow.wait_idle(run_id, 60) == "failed"
        tasks = _tasks(flow_kahu, run_id)
        assert tasks[("work", series[0])] == "succeeded"
        assert tasks[("work", series[1])] == "failed"
        assert tasks[("after", series[1])] == "upstream_failed"
        assert tasks[("after", series[2])] == "succeeded"
        assert tasks[("summary", "")] == "succeeded"  # goes on with the series that worked
        failed = next(t for t in flow_kahu.runs.tasks(run_id) if t.state == "failed")
        assert f"RuntimeError: cannot process {series[1]}" in failed.error
        log = _paths(flow_kahu, run_id).log("work", series[1]).read_text()
        assert "Traceback" in log
        assert "did not succeed" in flow_kahu.runs.run(run_id).error

    def test_retry_runs_only_the_failed_tasks(self, flow_kahu: Kahu) -> None:
        series = add_series(flow_kahu, 2)
        run_id = run_workflow(flow_kahu, "test-failing", series, {"bad": [series[0]]})
        assert flow_kahu.flow.wait_idle(run_id, 60) == "failed"
        before = {t.id: t for t in flow_kahu.runs.tasks(run_id)}
        # the series is fine now: change the parameter the task reads
        flow_kahu.runs.set_run(run_id, params={"bad": []})
        assert flow_kahu.flow.retry(run_id) == 2
        assert flow_kahu.flow.wait_idle(run_id, 60) == "succeeded"
        after = {t.id: t for t in flow_kahu.runs.tasks(run_id)}
        ok_before = [i for i, t in before.items() if t.state == "succeeded"]
        for task_id in ok_before:  # not run again
            assert after[task_id].started_at == before[task_id].started_at
        assert all(t.state == "succeeded" for t in after.values())

    def test_retry_with_backoff_succeeds_on_the_second_attempt(self, flow_kahu: Kahu) -> None:
        series = add_series(flow_kahu, 1)
        run_id = run_workflow(flow_kahu, "test-flaky", series)
        assert flow_kahu.flow.wait_idle(run_id, 60) == "succeeded"
        (task,) = flow_kahu.runs.tasks(run_id)
        assert task.attempt == 2

    def test_parameters_are_validated_with_the_field_named(self, flow_kahu: Kahu) -> None:
        series = add_series(flow_kahu, 1)
        with pytest.raises(InvalidParameters) as info:
            run_workflow(flow_kahu, "test-chain", series, {"threshold": -1, "mode": "slow"})
        fields = {e["field"] for e in info.value.errors}
        assert fields == {"threshold", "mode"}
        with pytest.raises(InvalidParameters, match="surprise"):
            run_workflow(flow_kahu, "test-chain", series, {"surprise": 1})
        assert flow_kahu.runs.runs() == []

    def test_empty_or_unknown_cohorts_are_refused(self, flow_kahu: Kahu) -> None:
        with pytest.raises(InvalidInput, match="series not in project default"):
            run_workflow(flow_kahu, "test-chain", ["1.2.3.4"])
        with pytest.raises(InvalidInput, match="needs a dataset"):
            run_workflow(flow_kahu, "test-chain", [])


class TestProcesses:
    def test_timeout_kills_the_whole_process_group(self, local_kahu: Kahu) -> None:
        series = add_series(local_kahu, 1)
        run_id = run_workflow(local_kahu, "test-timeout", series)
        assert local_kahu.flow.wait_idle(run_id, 60) == "failed"
        (task,) = local_kahu.runs.tasks(run_id)
        assert "timed out after 1 s" in task.error
        pid = int((_paths(local_kahu, run_id).root / "grandchild.pid").read_text())
        deadline = time.monotonic() + 5
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)

    def test_cancel_stops_running_and_queued_tasks(self, local_kahu: Kahu) -> None:
        series = add_series(local_kahu, 4)
        run_id = run_workflow(local_kahu, "test-sleep", series, {"seconds": 30})
        _wait(lambda: "running" in _tasks(local_kahu, run_id).values())
        local_kahu.flow.cancel(run_id)
        assert local_kahu.flow.wait_idle(run_id, 30) == "cancelled"
        assert set(_tasks(local_kahu, run_id).values()) == {"cancelled"}

    def test_a_task_larger_than_the_machine_waits_with_a_reason(self, local_kahu: Kahu) -> None:
        series = add_series(local_kahu, 1)
        run_id = run_workflow(local_kahu, "test-huge", series)
        _wait(lambda: bool(local_kahu.runs.tasks(run_id)[0].reason))
        (task,) = local_kahu.runs.tasks(run_id)
        assert task.state == "queued"
        assert "needs 10000000 MB of memory; this machine has" in task.reason
        # the server answers and others still run beside it
        from fastapi.testclient import TestClient

        from kahu.app import create_app

        local_kahu.accounts.ensure_admin(local_kahu.settings.admin_password_file)
        token, _ = local_kahu.accounts.create_token("admin")
        with TestClient(create_app(local_kahu.settings, local_kahu)) as client:
            listed = client.get(
                f"/api/v1/runs/{run_id}/tasks", headers={"Authorization": f"Bearer {token}"}
            )
        assert listed.status_code == 200
        assert "this machine has" in listed.json()["tasks"][0]["reason"]
        other = run_workflow(local_kahu, "test-chain", series)
        assert local_kahu.flow.wait_idle(other, 60) == "succeeded"
        local_kahu.flow.cancel(run_id)
        assert local_kahu.flow.wait_idle(run_id, 30) == "cancelled"

    def test_a_task_taking_more_memory_than_declared_fails_alone(self, local_kahu: Kahu) -> None:
        """Its address space is capped at the declaration plus slack: the allocation fails
        in the task, not in the server, which goes on running other work."""
        series = add_series(local_kahu, 1)
        run_id = run_workflow(local_kahu, "test-greedy", series)
        assert local_kahu.flow.wait_idle(run_id, 60) == "failed"
        errors = {t.operator: t.error for t in local_kahu.runs.tasks(run_id)}
        assert errors["greedy"].startswith("MemoryError")
        assert "MemoryError" in errors["greedy-command"]
        other = run_workflow(local_kahu, "test-chain", series)
        assert local_kahu.flow.wait_idle(other, 60) == "succeeded"

    def test_declared_cpus_bound_concurrency(self, local_kahu: Kahu) -> None:
        """Each sleep declares 1 CPU of the 2 given: never more than two at a time."""
        series = add_series(local_kahu, 4)
        run_id = run_workflow(local_kahu, "test-sleep", series, {"seconds": 0.4})
        assert local_kahu.flow.wait_idle(run_id, 60) == "succeeded"
        events = (_paths(local_kahu, run_id).root / "events.log").read_text().split("\n")
        timeline = sorted(
            (float(t), 1 if kind == "start" else -1)
            for kind, _, t in (line.split() for line in events if line)
        )
        level = peak = 0
        for _, step in timeline:
            level += step
            peak = max(peak, level)
        assert peak == 2


class TestHumanStep:
    def test_run_waits_for_the_user_and_continues(self, flow_kahu: Kahu) -> None:
        series = add_series(flow_kahu, 2)
        run_id = run_workflow(flow_kahu, "test-human", series)
        _wait(lambda: flow_kahu.runs.run(run_id).state == "waiting")
        (pending,) = flow_kahu.runs.tasks(run_id, states=["waiting_input"])
        # the queue's depth (the admin page) counts the step that waits for a person
        assert flow_kahu.runs.task_counts().get("waiting_input") == 1
        out = _paths(flow_kahu, run_id).out_dir("review", "")
        (out / "corrected.txt").write_text("fixed")
        flow_kahu.flow.complete(pending.id)
        assert flow_kahu.flow.wait_idle(run_id, 60) == "succeeded"
        assert (_paths(flow_kahu, run_id).out_dir("finish", "") / "corrected.txt").exists()
        assert flow_kahu.runs.task_counts() == {}  # finished runs are no queue


class TestResults:
    def test_results_re_enter_the_catalog_with_lineage(self, flow_kahu: Kahu) -> None:
        """The copy has the same UIDs, so the catalog sees duplicates: lineage is still
        recorded for the series the run stored into."""
        series = add_series(flow_kahu, 1)
        run_id = run_workflow(flow_kahu, "test-store", series)
        assert flow_kahu.flow.wait_idle(run_id, 60) == "succeeded"
        lineage = flow_kahu.lineage.of(series[0])
        assert lineage["derived_from"] == [
            {
                "run_id": run_id,
                "workflow": "test-store",
                "version": "1.0",
                "source_series_uid": series[0],
            }
        ]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait(condition, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_paths_are_absolute(local_kahu: Kahu) -> None:
    series = add_series(local_kahu, 1)
    run_id = run_workflow(local_kahu, "test-chain", series)
    assert local_kahu.flow.wait_idle(run_id, 60) == "succeeded"
    assert Path(os.path.join("/", str(_paths(local_kahu, run_id).root))).is_dir()
