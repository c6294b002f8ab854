"""Workflow routes over HTTP: catalogue, launch with validation, watch, logs, cancel, retry,
human steps with an upload, lineage."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from tests.api.conftest import Api
from tests.flow.conftest import add_series
from tests.flow.ops import WORKFLOWS


@pytest.fixture
def flow_api(api: Api) -> Api:
    for workflow in WORKFLOWS:
        api.kahu.workflows.add(workflow)
    return api


def _wait_state(api: Api, run_id: str, states: set[str], timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = api.client.get(f"/api/v1/runs/{run_id}", headers=api.headers()).json()
        if run["state"] in states:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run stayed {run['state']}")


class TestCatalogue:
    def test_workflows_list_their_schema_and_operators(self, flow_api: Api) -> None:
        body = flow_api.client.get("/api/v1/workflows", headers=flow_api.headers()).json()
        chain = next(w for w in body["workflows"] if w["name"] == "test-chain")
        assert chain["parameters"]["properties"]["mode"]["enum"] == ["fast", "exact"]
        assert [o["name"] for o in chain["operators"]] == ["get-input", "mark", "count"]
        one = flow_api.client.get("/api/v1/workflows/test-chain", headers=flow_api.headers())
        assert one.json()["version"] == "1.0"
        missing = flow_api.client.get("/api/v1/workflows/nope", headers=flow_api.headers())
        assert missing.status_code == 404

    def test_routes_need_a_token(self, flow_api: Api) -> None:
        assert flow_api.client.get("/api/v1/workflows").status_code == 401
        assert flow_api.client.post("/api/v1/runs", json={}).status_code == 401
        assert flow_api.client.get("/api/v1/pending").status_code == 401


class TestRuns:
    def test_launch_watch_and_read_logs(self, flow_api: Api) -> None:
        series = add_series(flow_api.kahu, 2)
        flow_api.kahu.curation.create_dataset("cohort", series=series)
        response = flow_api.client.post(
            "/api/v1/runs",
            json={"workflow": "test-failing", "dataset": "cohort", "params": {"bad": [series[0]]}},
            headers=flow_api.headers(flow_api.user_token),
        )
        assert response.status_code == 201, response.text
        (run,) = response.json()["runs"]
        assert run["created_by"] == "alice"
        assert run["series_count"] == 2
        done = _wait_state(flow_api, run["id"], {"succeeded", "failed"})
        assert done["state"] == "failed"
        assert done["progress"] == {"done": 5, "total": 5}
        tasks = flow_api.client.get(
            f"/api/v1/runs/{run['id']}/tasks",
            params={"state": "failed"},
            headers=flow_api.headers(),
        ).json()["tasks"]
        (failed,) = tasks
        log = flow_api.client.get(
            f"/api/v1/runs/{run['id']}/tasks/{failed['id']}/log", headers=flow_api.headers()
        )
        assert "RuntimeError: cannot process" in log.text
        listed = flow_api.client.get(
            "/api/v1/runs", params={"state": "failed"}, headers=flow_api.headers()
        ).json()["runs"]
        assert [r["id"] for r in listed] == [run["id"]]
        retried = flow_api.client.post(
            f"/api/v1/runs/{run['id']}/retry", headers=flow_api.headers()
        )
        assert retried.json()["retried_tasks"] == 2

    def test_invalid_parameters_are_422_naming_the_field(self, flow_api: Api) -> None:
        series = add_series(flow_api.kahu, 1)
        response = flow_api.client.post(
            "/api/v1/runs",
            json={"workflow": "test-chain", "series_uids": series, "params": {"threshold": "x"}},
            headers=flow_api.headers(),
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["field"] == "threshold"
        assert flow_api.kahu.runs.runs() == []

    @pytest.mark.parametrize(
        ("body", "status", "text"),
        [
            ({"workflow": "nope", "series_uids": ["1.2.3"]}, 404, "no workflow"),
            ({"workflow": "test-chain", "query": "Modality:(CT"}, 400, "syntax error"),
            ({"workflow": "test-chain", "dataset": "ghost"}, 404, "ghost"),
            ({"workflow": "test-chain"}, 400, "needs a dataset"),
            ({"workflow": "test-chain", "query": "Modality:MR"}, 400, "cohort is empty"),
            ({"workflow": "test-chain", "series_uids": ["1.2.x"]}, 400, "UID"),
        ],
    )
    def test_bad_launches_are_refused(
        self, flow_api: Api, body: dict[str, Any], status: int, text: str
    ) -> None:
        add_series(flow_api.kahu, 1)
        response = flow_api.client.post("/api/v1/runs", json=body, headers=flow_api.headers())
        assert response.status_code == status, response.text
        assert text in response.json()["detail"]

    def test_query_with_limit_and_one_run_per_series(self, flow_api: Api) -> None:
        add_series(flow_api.kahu, 3)
        response = flow_api.client.post(
            "/api/v1/runs",
            json={
                "workflow": "test-chain",
                "query": "Modality:CT",
                "limit": 2,
                "one_run_per_series": True,
            },
            headers=flow_api.headers(),
        )
        runs = response.json()["runs"]
        assert [r["series_count"] for r in runs] == [1, 1]
        for run in runs:
            assert _wait_state(flow_api, run["id"], {"succeeded", "failed"})["state"] == "succeeded"

    def test_cancel_over_http(self, flow_api: Api) -> None:
        series = add_series(flow_api.kahu, 2)
        run = flow_api.client.post(
            "/api/v1/runs",
            json={"workflow": "test-sleep", "series_uids": series, "params": {"seconds": 30}},
            headers=flow_api.headers(),
        ).json()["runs"][0]
        flow_api.client.post(f"/api/v1/runs/{run['id']}/cancel", headers=flow_api.headers())
        assert _wait_state(flow_api, run["id"], {"cancelled"})["state"] == "cancelled"
        again = flow_api.client.post(f"/api/v1/runs/{run['id']}/cancel", headers=flow_api.headers())
        assert again.status_code == 409


class TestHumanStep:
    def test_pending_task_completed_with_an_upload(self, flow_api: Api) -> None:
        series = add_series(flow_api.kahu, 1)
        run = flow_api.client.post(
            "/api/v1/runs",
            json={"workflow": "test-human", "series_uids": series},
            headers=flow_api.headers(),
        ).json()["runs"][0]
        _wait_state(flow_api, run["id"], {"waiting"})
        (task,) = flow_api.client.get("/api/v1/pending", headers=flow_api.headers()).json()["tasks"]
        assert task["operator"] == "review"
        bad = flow_api.client.post(
            f"/api/v1/pending/{task['id']}/complete",
            files={"files": ("..", b"x")},
            headers=flow_api.headers(),
        )
        assert bad.status_code == 400
        done = flow_api.client.post(
            f"/api/v1/pending/{task['id']}/complete",
            files={"files": ("../../corrected.seg", b"SEGDATA")},
            headers=flow_api.headers(),
        )
        assert done.status_code == 200, done.text
        assert _wait_state(flow_api, run["id"], {"succeeded", "failed"})["state"] == "succeeded"
        out = flow_api.kahu.settings.runs_root / run["id"] / "finish" / "corrected.seg"
        assert out.read_bytes() == b"SEGDATA"
        twice = flow_api.client.post(
            f"/api/v1/pending/{task['id']}/complete", headers=flow_api.headers()
        )
        assert twice.status_code == 400


def test_a_human_step_is_completed_from_the_runs_page(flow_api: Api) -> None:
    client = flow_api.client
    series = add_series(flow_api.kahu, 1)
    run = client.post(
        "/api/v1/runs",
        json={"workflow": "test-human", "series_uids": series},
        headers=flow_api.headers(),
    ).json()["runs"][0]
    _wait_state(flow_api, run["id"], {"waiting"})
    login = client.post(
        "/login", data={"username": "admin", "password": flow_api.admin_password},
        follow_redirects=False,
    )  # fmt: skip
    for name in ("kahu_session", "kahu_csrf"):
        client.cookies.set(name, login.cookies[name])
    csrf = str(login.cookies["kahu_csrf"])
    page = client.get("/runs").text
    [task_id] = [int(t) for t in re.findall(r'data-pending="(\d+)"', page)]
    assert "Waiting for you" in client.get("/").text
    forged = client.post(
        f"/pending/{task_id}", data={"csrf": "forged"}, files={"files": ("a.txt", b"x")}
    )
    assert forged.status_code == 403
    done = client.post(
        f"/pending/{task_id}", data={"csrf": csrf},
        files={"files": ("corrected.seg", b"SEGDATA")}, follow_redirects=False,
    )  # fmt: skip
    assert done.status_code == 303
    assert "completed" in done.headers["location"]
    assert _wait_state(flow_api, run["id"], {"succeeded", "failed"})["state"] == "succeeded"
    out = flow_api.kahu.settings.runs_root / run["id"] / "finish" / "corrected.seg"
    assert out.read_bytes() == b"SEGDATA"
