"""Every account, project, node, run and series action through all three doors (the
command line, the REST API, the web page's form): the same change, and one audit record that
says the same thing (action, project, detail, series, outcome); only who acted and by which
path differ."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from typer.testing import CliRunner

from kahu.auth.policy import EVERYTHING
from kahu.cli import app
from kahu.core import Kahu
from kahu.dimse.nodes import Node
from kahu.flow.model import Workflow, application_operator
from tests import synthetic
from tests.api.conftest import Api

PASSWORD = "a long enough password"


@dataclass
class Case:
    action: str
    cli: list[str]
    rest: tuple[str, str, dict[str, Any] | None]
    web: tuple[str, dict[str, str]]
    check: Callable[[Kahu], bool]
    project: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    #: makes what the action acts on; returns the values of the case's placeholders
    #: ({token}, {run}, {series}: ids only known once made)
    setup: Callable[[Kahu], dict[str, Any] | None] = lambda kahu: None
    cli_input: str | None = None
    #: the page the web form posts to, and its route in the audit record (default: the
    #: administration page's form ``/admin/<web[0]>``)
    web_url: str = ""
    web_route: str = ""
    series: bool = False  # the record names the series

    @property
    def web_path(self) -> tuple[str, str]:
        if self.web_url:
            return self.web_url, f"POST {self.web_route}"
        return f"/admin/{self.web[0]}", f"POST /admin/{self.web[0]}"


def _bo(kahu: Kahu) -> None:
    kahu.accounts.create_user("bo", PASSWORD)


def _onco(kahu: Kahu) -> None:
    kahu.projects.create("onco")


def _bo_in_onco(kahu: Kahu) -> None:
    _bo(kahu)
    _onco(kahu)


def _member(kahu: Kahu) -> None:
    _bo_in_onco(kahu)
    kahu.projects.set_member("onco", "bo", "viewer")


def _mapped(kahu: Kahu) -> None:
    _onco(kahu)
    kahu.projects.map_ae("ONCO", "onco")


def _node(kahu: Kahu) -> None:
    _onco(kahu)
    kahu.nodes.add(Node("pacs", "PACS", "10.0.0.5", 104, "", ("onco",)))


def _disabled(kahu: Kahu) -> None:
    _bo(kahu)
    kahu.accounts.set_disabled("bo", True)


def _token(kahu: Kahu) -> dict[str, Any]:
    _bo(kahu)
    kahu.accounts.create_token("bo", name="laptop")
    return {"token": next(t.id for t in kahu.accounts.list_tokens("bo") if t.name == "laptop")}


#: a run that stays open: its one step waits for a user
REVIEW = Workflow("test-review", "1.0", (application_operator("review"),))


def _waiting_run(kahu: Kahu) -> dict[str, Any]:
    kahu.workflows.add(REVIEW)
    run_id = kahu.flow.create_run(REVIEW, {}, [], input={}, created_by="admin")
    _wait(lambda: kahu.runs.run(run_id, with_series=False).state == "waiting")
    return {"run": run_id}


def _failed_run(kahu: Kahu) -> dict[str, Any]:
    run_id = _waiting_run(kahu)["run"]
    kahu.runs.fail_run(run_id, "stopped by the test")
    return {"run": run_id}


def _run_state(kahu: Kahu) -> str:
    [run] = kahu.runs.runs(workflow=REVIEW.name)
    return run.state


def _a_series(kahu: Kahu) -> dict[str, Any]:
    [result] = kahu.ingestor.ingest_many(synthetic.ct_series(1))
    return {"series": result.series_instance_uid}


def _wait(done: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _user(kahu: Kahu, name: str) -> Any:
    return next((u for u in kahu.accounts.list_users() if u.name == name), None)


CASES = [
    Case(
        "user.create",
        ["users", "add", "bo", "--password-stdin"],
        ("POST", "/api/v1/users", {"name": "bo", "password": PASSWORD}),
        ("user-add", {"name": "bo", "password": PASSWORD}),
        lambda kahu: _user(kahu, "bo") is not None,
        detail={"user": "bo", "admin": False},
        cli_input=PASSWORD + "\n",
    ),
    Case(
        "user.disable",
        ["users", "disable", "bo"],
        ("PATCH", "/api/v1/users/bo", {"disabled": True}),
        ("user-disable", {"name": "bo"}),
        lambda kahu: _user(kahu, "bo").disabled,
        detail={"user": "bo"},
        setup=_bo,
    ),
    Case(
        "user.enable",
        ["users", "enable", "bo"],
        ("PATCH", "/api/v1/users/bo", {"disabled": False}),
        ("user-enable", {"name": "bo"}),
        lambda kahu: not _user(kahu, "bo").disabled,
        detail={"user": "bo"},
        setup=_disabled,
    ),
    Case(
        "token.revoke",
        ["tokens", "revoke", "{token}"],
        ("DELETE", "/api/v1/tokens/{token}", None),
        ("token-revoke", {"id": "{token}"}),
        lambda kahu: all(t.revoked_at for t in kahu.accounts.list_tokens("bo")),
        detail={"token_id": "{token}"},
        setup=_token,
    ),
    Case(
        "project.create",
        ["projects", "create", "onco"],
        ("POST", "/api/v1/projects", {"name": "onco"}),
        ("project-add", {"name": "onco"}),
        lambda kahu: "onco" in {p.name for p in kahu.projects.all()},
        project="onco",
    ),
    Case(
        "project.delete",
        ["projects", "delete", "onco"],
        ("DELETE", "/api/v1/projects/onco", None),
        ("project-delete", {"name": "onco"}),
        lambda kahu: "onco" not in {p.name for p in kahu.projects.all()},
        project="onco",
        setup=_onco,
    ),
    Case(
        "member.set",
        ["projects", "add-member", "onco", "bo", "--role", "scientist"],
        ("PUT", "/api/v1/projects/onco/members/bo", {"role": "scientist"}),
        ("member-set", {"project": "onco", "user": "bo", "role": "scientist"}),
        lambda kahu: kahu.projects.roles_of("bo") == {"onco": "scientist"},
        project="onco",
        detail={"user": "bo", "role": "scientist"},
        setup=_bo_in_onco,
    ),
    Case(
        "member.remove",
        ["projects", "remove-member", "onco", "bo"],
        ("DELETE", "/api/v1/projects/onco/members/bo", None),
        ("member-remove", {"project": "onco", "user": "bo"}),
        lambda kahu: kahu.projects.roles_of("bo") == {},
        project="onco",
        detail={"user": "bo"},
        setup=_member,
    ),
    Case(
        "project.map-ae",
        ["projects", "map-ae", "ONCO", "onco"],
        ("PUT", "/api/v1/projects/onco/ae-titles/ONCO", None),
        ("ae-map", {"project": "onco", "ae_title": "ONCO"}),
        lambda kahu: kahu.projects.project_of_ae("ONCO") == "onco",
        project="onco",
        detail={"ae_title": "ONCO"},
        setup=_onco,
    ),
    Case(
        "project.unmap-ae",
        ["projects", "unmap-ae", "ONCO"],
        ("DELETE", "/api/v1/projects/onco/ae-titles/ONCO", None),
        ("ae-unmap", {"ae_title": "ONCO"}),
        lambda kahu: "ONCO" not in kahu.projects.ae_map(),
        project="onco",
        detail={"ae_title": "ONCO"},
        setup=_mapped,
    ),
    Case(
        "node.add",
        [
            "nodes",
            "add",
            "pacs",
            "--ae-title",
            "PACS",
            "--host",
            "10.0.0.5",
            "--port",
            "104",
            "--project",
            "onco",
        ],
        (
            "POST",
            "/api/v1/nodes",
            {
                "name": "pacs",
                "ae_title": "PACS",
                "host": "10.0.0.5",
                "port": 104,
                "projects": ["onco"],
            },
        ),
        (
            "node-add",
            {
                "name": "pacs",
                "ae_title": "PACS",
                "host": "10.0.0.5",
                "port": "104",
                "projects": "onco",
            },
        ),
        lambda kahu: [(n.name, n.projects) for n in kahu.nodes.list()] == [("pacs", ("onco",))],
        detail={
            "node": "pacs",
            "ae_title": "PACS",
            "host": "10.0.0.5",
            "port": 104,
            "projects": ["onco"],
        },
        setup=_onco,
    ),
    Case(
        "node.remove",
        ["nodes", "remove", "pacs"],
        ("DELETE", "/api/v1/nodes/pacs", None),
        ("node-remove", {"name": "pacs"}),
        lambda kahu: kahu.nodes.list() == [],
        detail={"node": "pacs"},
        setup=_node,
    ),
    Case(
        "run.cancel",
        ["runs", "cancel", "{run}"],
        ("POST", "/api/v1/runs/{run}/cancel", None),
        ("", {}),
        lambda kahu: _run_state(kahu) in ("cancelling", "cancelled"),
        project="default",
        detail={"run": "{run}"},
        setup=_waiting_run,
        web_url="/runs/{run}/cancel",
        web_route="/runs/{run_id}/cancel",
    ),
    Case(
        "run.retry",
        ["runs", "retry", "{run}"],
        ("POST", "/api/v1/runs/{run}/retry", None),
        ("", {}),
        # the run is open again: its step waits for a user once more
        lambda kahu: _run_state(kahu) in ("queued", "running", "waiting"),
        project="default",
        detail={"run": "{run}"},
        setup=_failed_run,
        web_url="/runs/{run}/retry",
        web_route="/runs/{run_id}/retry",
    ),
    Case(
        "series.delete",
        ["series", "delete", "{series}"],
        ("DELETE", "/api/v1/series/{series}", None),
        ("", {}),
        lambda kahu: kahu.catalog.list_series(EVERYTHING)[1] == 0,
        setup=_a_series,
        web_url="/series/{series}/delete",
        web_route="/series/{series_uid}/delete",
        series=True,
    ),
]


def _fill(value: Any, values: dict[str, Any]) -> Any:
    """The case's placeholders (``{token}``, ``{run}``, ``{series}``) replaced by what its
    setup made; a value that is only a placeholder keeps its type."""
    if isinstance(value, str):
        for name, made in values.items():
            if value == f"{{{name}}}":
                return made
            value = value.replace(f"{{{name}}}", str(made))
        return value
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, values) for v in value]
    return value


def _login(api: Api) -> str:
    response = api.client.post(
        "/login",
        data={"username": "admin", "password": api.admin_password, "next": "/admin"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    for name in ("kahu_session", "kahu_csrf"):
        api.client.cookies.set(name, response.cookies[name])
    return str(response.cookies["kahu_csrf"])


def _through(door: str, api: Api, case: Case, values: dict[str, Any]) -> None:
    """Do the case's action through ``door``."""
    kahu = api.kahu
    if door == "cli":
        args = [str(a) for a in _fill(case.cli, values)]
        settings = kahu.settings
        options = ["--home", str(settings.home)]
        if settings.database_url:
            options += ["--database-url", settings.database_url]
        result = CliRunner().invoke(app, [*args, *options], input=case.cli_input)
        assert result.exit_code == 0, result.output
        return
    if door == "rest":
        method, path, body = case.rest
        path = _fill(path, values)
        response = api.client.request(method, path, json=_fill(body, values), headers=api.headers())
        assert response.status_code < 300, response.text
        return
    _, form = case.web
    csrf = _login(api)
    fields = {k: str(v) for k, v in _fill(form, values).items()}
    response = api.client.post(
        _fill(case.web_path[0], values), data={**fields, "csrf": csrf}, follow_redirects=False
    )
    assert response.status_code == 303, response.text
    assert "Nothing+changed" not in response.headers["location"], response.headers["location"]


def _rest_path(case: Case) -> str:
    method, path, _ = case.rest
    templates = {
        "/api/v1/users/bo": "/api/v1/users/{name}",
        "/api/v1/tokens/{token}": "/api/v1/tokens/{token_id}",
        "/api/v1/projects/onco": "/api/v1/projects/{name}",
        "/api/v1/projects/onco/members/bo": "/api/v1/projects/{name}/members/{user_name}",
        "/api/v1/projects/onco/ae-titles/ONCO": "/api/v1/projects/{name}/ae-titles/{ae_title}",
        "/api/v1/nodes/pacs": "/api/v1/nodes/{name}",
        "/api/v1/runs/{run}/cancel": "/api/v1/runs/{run_id}/cancel",
        "/api/v1/runs/{run}/retry": "/api/v1/runs/{run_id}/retry",
        "/api/v1/series/{series}": "/api/v1/series/{series_uid}",
    }
    return f"{method} {templates.get(path, path)}"


@pytest.mark.parametrize("door", ["cli", "rest", "web"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.action)
def test_each_action_the_same_by_every_door(api: Api, case: Case, door: str) -> None:
    kahu = api.kahu
    values = case.setup(kahu) or {}
    before = len(kahu.audit.query(action=case.action, limit=None))
    _through(door, api, case, values)
    assert case.check(kahu)
    records = kahu.audit.query(action=case.action, limit=None)[before:]
    assert len(records) == 1  # one record, written once, by the action
    [record] = records
    assert (record.project, record.detail, record.status) == (
        case.project,
        _fill(case.detail, values),
        200,
    )
    assert record.series == ([values["series"]] if case.series else [])
    expected = {
        "cli": ("cli", "cli", None),
        "rest": ("user", _rest_path(case), "admin"),
        "web": ("user", case.web_path[1], "admin"),
    }[door]
    assert (record.actor_kind, record.path) == expected[:2]
    if expected[2] is not None:
        assert record.actor == expected[2]
    else:
        assert record.actor.startswith("cli:")


@pytest.mark.parametrize("door", ["rest", "web"])
def test_a_refusal_is_recorded_and_changes_nothing(api: Api, door: str) -> None:
    """alice is no administrator: the action refuses her by either door, and says so in
    the one record it writes."""
    kahu = api.kahu
    if door == "rest":
        response = api.client.post(
            "/api/v1/projects", json={"name": "onco"}, headers=api.headers(api.user_token)
        )
        assert response.status_code == 403
    else:
        response = api.client.post(
            "/login",
            data={"username": "alice", "password": "correct horse battery", "next": "/"},
            follow_redirects=False,
        )
        for name in ("kahu_session", "kahu_csrf"):
            api.client.cookies.set(name, response.cookies[name])
        response = api.client.post(
            "/admin/project-add",
            data={"name": "onco", "csrf": response.cookies["kahu_csrf"]},
            follow_redirects=False,
        )
        assert response.status_code == 403
    assert "onco" not in {p.name for p in kahu.projects.all()}
    [record] = kahu.audit.query(action="project.create")
    assert (record.actor, record.status, record.project) == ("alice", 403, "onco")


def test_a_manager_sets_members_of_their_project_by_every_web_door(api: Api) -> None:
    """The policy lives in the action: a project's manager (not an administrator) may set
    its members over REST, as the web form allows the same action."""
    kahu = api.kahu
    _bo_in_onco(kahu)
    kahu.projects.set_member("onco", "alice", "manager")
    response = api.client.put(
        "/api/v1/projects/onco/members/bo",
        json={"role": "viewer"},
        headers=api.headers(api.user_token),
    )
    assert response.status_code == 200, response.text
    assert kahu.projects.roles_of("bo") == {"onco": "viewer"}
    response = api.client.put(
        "/api/v1/projects/default/members/bo",
        json={"role": "viewer"},
        headers=api.headers(api.user_token),
    )
    assert response.status_code == 403  # alice is a scientist in default, not a manager


@pytest.mark.parametrize("door", ["cli", "rest"])
@pytest.mark.parametrize("move", [False, True], ids=["copy", "move"])
def test_copying_and_moving_series_the_same_by_both_doors(api: Api, door: str, move: bool) -> None:
    kahu = api.kahu
    [result] = kahu.ingestor.ingest_many(synthetic.ct_series(1))
    uid = result.series_instance_uid
    assert uid is not None
    _onco(kahu)
    if door == "cli":
        args = (
            ["projects", "move-series", "default", "onco", uid]
            if move
            else [
                "projects",
                "copy-series",
                "onco",
                uid,
            ]
        )
        settings = kahu.settings
        options = ["--home", str(settings.home)]
        if settings.database_url:
            options += ["--database-url", settings.database_url]
        outcome = CliRunner().invoke(app, [*args, *options])
        assert outcome.exit_code == 0, outcome.output
    else:
        body: dict[str, Any] = {"series_uids": [uid], **({"move_from": "default"} if move else {})}
        response = api.client.post("/api/v1/projects/onco/series", json=body, headers=api.headers())
        assert response.status_code == 200, response.text
    expected = {"onco"} if move else {"default", "onco"}
    assert set(kahu.projects.series_projects(uid)) == expected
    [record] = kahu.audit.query(action="project.add-series")
    assert (record.project, record.series, record.status) == ("onco", [uid], 200)
    assert record.detail == ({"move_from": "default"} if move else {})


def _cli(kahu: Kahu, *args: str, input: str | None = None) -> str:
    settings = kahu.settings
    options = ["--home", str(settings.home)]
    if settings.database_url:
        options += ["--database-url", settings.database_url]
    outcome = CliRunner().invoke(app, [*args, *options], input=input)
    assert outcome.exit_code == 0, outcome.output
    return outcome.output


@pytest.mark.parametrize("door", ["cli", "rest"])
def test_a_password_change_the_same_by_both_doors(api: Api, door: str) -> None:
    """The CLI sets anyone's (it is the administrator); over REST a user changes their own,
    giving the current one."""
    kahu = api.kahu
    new = "another long enough password"
    if door == "cli":
        _cli(kahu, "users", "passwd", "alice", "--password-stdin", input=new + "\n")
    else:
        body = {"current_password": "correct horse battery", "new_password": new}
        response = api.client.post(
            "/api/v1/me/password", json=body, headers=api.headers(api.user_token)
        )
        assert response.status_code == 204, response.text
    kahu.accounts.authenticate_password("alice", new)
    [record] = kahu.audit.query(action="password.change")
    assert (record.detail, record.status) == ({"user": "alice"}, 200)
    assert new not in str(record.public())


def test_a_wrong_current_password_is_recorded_as_refused(api: Api) -> None:
    body = {"current_password": "not it at all", "new_password": "another long enough one"}
    response = api.client.post(
        "/api/v1/me/password", json=body, headers=api.headers(api.user_token)
    )
    assert response.status_code == 403
    [record] = api.kahu.audit.query(action="password.change")
    assert (record.actor, record.status) == ("alice", 403)


@pytest.mark.parametrize("door", ["cli", "rest"])
def test_a_token_made_the_same_by_both_doors(api: Api, door: str) -> None:
    kahu = api.kahu
    if door == "cli":
        _cli(kahu, "tokens", "create", "--user", "alice", "--name", "laptop")
    else:
        response = api.client.post(
            "/api/v1/tokens", json={"name": "laptop"}, headers=api.headers(api.user_token)
        )
        assert response.status_code == 201, response.text
    assert [t.name for t in kahu.accounts.list_tokens("alice")].count("laptop") == 1
    [record] = kahu.audit.query(action="token.create")
    assert (record.detail, record.status) == ({"user": "alice", "name": "laptop"}, 200)


@pytest.mark.parametrize("role", ["viewer", None], ids=["viewer", "not-a-member"])
def test_a_run_is_cancelled_only_by_its_projects_scientists(api: Api, role: str | None) -> None:
    """A viewer is refused (403); to someone outside the project the run does not exist
    (404). Either way the run goes on and the one record says so."""
    kahu = api.kahu
    run_id = _waiting_run(kahu)["run"]
    if role is None:
        kahu.projects.remove_member("default", "alice")
    else:
        kahu.projects.set_member("default", "alice", role)
    response = api.client.post(f"/api/v1/runs/{run_id}/cancel", headers=api.headers(api.user_token))
    status = 403 if role else 404
    assert response.status_code == status, response.text
    assert _run_state(kahu) == "waiting"
    [record] = kahu.audit.query(action="run.cancel")
    assert (record.actor, record.status, record.project) == ("alice", status, "default")


@dataclass
class DatasetCase:
    action: str
    rest: tuple[str, str, dict[str, Any] | None]
    rest_route: str
    web: tuple[str, dict[str, str]]
    web_route: str
    check: Callable[[Kahu], bool]
    detail: dict[str, Any]
    setup: Callable[[Kahu], None] = lambda kahu: None
    series: bool = False


def _lungs(kahu: Kahu) -> None:
    kahu.curation.create_dataset("lungs", query="Modality:CT")


def _picked(kahu: Kahu) -> None:
    kahu.curation.create_dataset("picked", series=[])


def _dataset_names(kahu: Kahu) -> set[str]:
    return {d.name for d in kahu.curation.datasets(None)}


DATASET_CASES = [
    DatasetCase(
        "dataset.create",
        ("POST", "/api/v1/datasets", {"name": "lungs", "query": "(Modality:CT)"}),
        "POST /api/v1/datasets",
        ("/datasets", {"name": "lungs", "q": "Modality:CT", "what": "query"}),
        "POST /datasets",
        # the page wraps its query in brackets (it may add facet filters)
        lambda kahu: kahu.curation.dataset("lungs").query == "(Modality:CT)",
        {"name": "lungs", "query": "(Modality:CT)"},
    ),
    DatasetCase(
        "dataset.change",
        ("POST", "/api/v1/datasets/picked/series", {"add": ["{series}"]}),
        "POST /api/v1/datasets/{name}/series",
        ("/datasets", {"what": "add", "into": "picked", "series": "{series}"}),
        "POST /datasets",
        lambda kahu: kahu.curation.dataset("picked").series_count == 1,
        {"name": "picked", "added": 1, "removed": 0},
        setup=_picked,
        series=True,
    ),
    DatasetCase(
        "dataset.freeze",
        ("POST", "/api/v1/datasets/lungs/freeze", None),
        "POST /api/v1/datasets/{name}/freeze",
        ("/datasets/lungs/freeze", {}),
        "POST /datasets/{name}/freeze",
        lambda kahu: kahu.curation.dataset("lungs").frozen_at is not None,
        {"name": "lungs"},
        setup=_lungs,
    ),
    DatasetCase(
        "dataset.delete",
        ("DELETE", "/api/v1/datasets/lungs", None),
        "DELETE /api/v1/datasets/{name}",
        ("/datasets/lungs/delete", {}),
        "POST /datasets/{name}/delete",
        lambda kahu: "lungs" not in _dataset_names(kahu),
        {"name": "lungs"},
        setup=_lungs,
    ),
]


@pytest.mark.parametrize("door", ["rest", "web"])
@pytest.mark.parametrize("case", DATASET_CASES, ids=lambda c: c.action)
def test_each_dataset_action_the_same_by_both_doors(api: Api, case: DatasetCase, door: str) -> None:
    """Datasets change through the REST API and the Explore and Datasets pages; each change
    leaves one record saying the same (the dataset's project, its name, the series)."""
    kahu = api.kahu
    values = _a_series(kahu)
    case.setup(kahu)
    if door == "rest":
        method, path, body = case.rest
        response = api.client.request(method, path, json=_fill(body, values), headers=api.headers())
        assert response.status_code < 300, response.text
    else:
        url, form = case.web
        csrf = _login(api)
        response = api.client.post(
            url, data={**_fill(form, values), "csrf": csrf}, follow_redirects=False
        )
        assert response.status_code == 303, response.text
        location = response.headers["location"]
        assert "Nothing" not in location, location
        assert "not+made" not in location, location
    assert case.check(kahu)
    [record] = kahu.audit.query(action=case.action)
    assert (record.project, record.detail, record.status) == ("default", case.detail, 200)
    assert record.series == ([values["series"]] if case.series else [])
    assert record.path == (case.rest_route if door == "rest" else case.web_route)


def test_a_dataset_of_another_project_does_not_exist_for_its_change(api: Api) -> None:
    """alice is no member of onco: its dataset is not hers to delete, and the refusal is
    recorded."""
    kahu = api.kahu
    _onco(kahu)
    kahu.curation.create_dataset("theirs", query="*", project="onco")
    response = api.client.delete("/api/v1/datasets/theirs", headers=api.headers(api.user_token))
    assert response.status_code == 404
    assert "theirs" in _dataset_names(kahu)
    [record] = kahu.audit.query(action="dataset.delete")
    assert (record.actor, record.status, record.project) == ("alice", 404, "onco")


def test_tags_change_on_series_the_actor_may_write_and_each_change_is_recorded(
    api: Api,
) -> None:
    """alice tags a series of her project; a series she may not write (onco's) is refused
    as if it were not there, nothing is tagged, and both attempts are recorded."""
    kahu = api.kahu
    mine = _a_series(kahu)["series"]
    [other] = kahu.ingestor.ingest_many(synthetic.ct_series(1, patient_id="SYN002"))
    theirs = other.series_instance_uid
    _onco(kahu)
    kahu.projects.move_series([theirs], "default", "onco")
    headers = api.headers(api.user_token)
    body = {"series": [mine], "add": ["review"]}
    response = api.client.post("/api/v1/tags", json=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {mine: ["review"]}
    body = {"series": [mine, theirs], "add": ["later"]}
    response = api.client.post("/api/v1/tags", json=body, headers=headers)
    assert response.status_code == 404
    assert kahu.curation.tag([mine]) == {mine: ["review"]}
    done, refused = kahu.audit.query(action="tag.change")
    assert (done.actor, done.status, done.series) == ("alice", 200, [mine])
    assert done.detail == {"add": ["review"], "remove": []}
    assert (refused.status, refused.series) == (404, [mine, theirs])


def _rule(kahu: Kahu) -> None:
    kahu.triggers.add("thumbs", "series-thumbnails", query="Modality:CT", created_by="admin")


TRIGGER_CASES = [
    (
        "trigger.add",
        ["triggers", "add", "thumbs", "--workflow", "series-thumbnails", "--query", "Modality:CT"],
        ("POST", "/api/v1/triggers", {"name": "thumbs", "workflow": "series-thumbnails",
                                      "query": "Modality:CT"}),
        "POST /api/v1/triggers",
        lambda kahu: [(t.name, t.query) for t in kahu.triggers.all()]
        == [("thumbs", "Modality:CT")],
        {"name": "thumbs", "workflow": "series-thumbnails", "query": "Modality:CT", "cron": ""},
        lambda kahu: None,
    ),
    (
        "trigger.change",
        ["triggers", "disable", "thumbs"],
        ("PATCH", "/api/v1/triggers/thumbs", {"enabled": False}),
        "PATCH /api/v1/triggers/{name}",
        lambda kahu: [t.enabled for t in kahu.triggers.all()] == [False],
        {"name": "thumbs", "enabled": False},
        _rule,
    ),
    (
        "trigger.remove",
        ["triggers", "remove", "thumbs"],
        ("DELETE", "/api/v1/triggers/thumbs", None),
        "DELETE /api/v1/triggers/{name}",
        lambda kahu: kahu.triggers.all() == [],
        {"name": "thumbs"},
        _rule,
    ),
]  # fmt: skip


@pytest.mark.parametrize("door", ["cli", "rest"])
@pytest.mark.parametrize("case", TRIGGER_CASES, ids=lambda c: str(c[0]))
def test_each_trigger_action_the_same_by_both_doors(api: Api, case: Any, door: str) -> None:
    action, cli, (method, path, body), route, check, detail, setup = case
    kahu = api.kahu
    setup(kahu)
    if door == "cli":
        _cli(kahu, *cli)
    else:
        response = api.client.request(method, path, json=body, headers=api.headers())
        assert response.status_code < 300, response.text
    assert check(kahu)
    [record] = kahu.audit.query(action=action)
    assert (record.project, record.detail, record.status) == ("default", detail, 200)
    assert (record.actor_kind, record.path) == (
        ("cli", "cli") if door == "cli" else ("user", route)
    )


def test_a_trigger_added_on_the_command_line_launches_as_cli(api: Api) -> None:
    """Its runs are the command line's (not a user's who might leave the project)."""
    _cli(api.kahu, "triggers", "add", "thumbs", "--workflow", "series-thumbnails", "--query", "*")
    [rule] = api.kahu.triggers.all()
    assert rule.created_by == "cli"
