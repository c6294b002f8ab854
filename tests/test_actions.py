"""Every account, project and node action through all three doors (the command line, the
REST API, the web page's form): the same change, and one audit record that says the same
thing (action, project, detail, outcome); only who acted and by which path differ."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from typer.testing import CliRunner

from kahu.cli import app
from kahu.core import Kahu
from kahu.dimse.nodes import Node
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
    setup: Callable[[Kahu], None] = lambda kahu: None
    cli_input: str | None = None


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


def _token(kahu: Kahu) -> None:
    _bo(kahu)
    kahu.accounts.create_token("bo", name="laptop")


def _bo_token_id(kahu: Kahu) -> int:
    return next(t.id for t in kahu.accounts.list_tokens("bo") if t.name == "laptop")


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
]


def _fill(value: Any, token: int | None) -> Any:
    """``{token}`` in a case's arguments: the id of bo's token made by the setup."""
    if isinstance(value, str) and "{token}" in value:
        return (
            int(value.replace("{token}", str(token)))
            if value == "{token}"
            else (value.replace("{token}", str(token)))
        )
    if isinstance(value, dict):
        return {k: _fill(v, token) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, token) for v in value]
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


def _through(door: str, api: Api, case: Case, token: int | None) -> None:
    """Do the case's action through ``door``."""
    kahu = api.kahu
    if door == "cli":
        args = [str(a) for a in _fill(case.cli, token)]
        settings = kahu.settings
        options = ["--home", str(settings.home)]
        if settings.database_url:
            options += ["--database-url", settings.database_url]
        result = CliRunner().invoke(app, [*args, *options], input=case.cli_input)
        assert result.exit_code == 0, result.output
        return
    if door == "rest":
        method, path, body = case.rest
        path = _fill(path, token)
        response = api.client.request(method, path, json=_fill(body, token), headers=api.headers())
        assert response.status_code < 300, response.text
        return
    what, form = case.web
    csrf = _login(api)
    fields = {k: str(v) for k, v in _fill(form, token).items()}
    response = api.client.post(
        f"/admin/{what}", data={**fields, "csrf": csrf}, follow_redirects=False
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
    }
    return f"{method} {templates.get(path, path)}"


@pytest.mark.parametrize("door", ["cli", "rest", "web"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.action)
def test_each_action_the_same_by_every_door(api: Api, case: Case, door: str) -> None:
    kahu = api.kahu
    case.setup(kahu)
    token = _bo_token_id(kahu) if case.action == "token.revoke" else None
    before = len(kahu.audit.query(action=case.action, limit=None))
    _through(door, api, case, token)
    assert case.check(kahu)
    records = kahu.audit.query(action=case.action, limit=None)[before:]
    assert len(records) == 1  # one record, written once, by the action
    [record] = records
    assert (record.project, record.detail, record.status) == (
        case.project,
        _fill(case.detail, token),
        200,
    )
    expected = {
        "cli": ("cli", "cli", None),
        "rest": ("user", _rest_path(case), "admin"),
        "web": ("user", f"POST /admin/{case.web[0]}", "admin"),
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
