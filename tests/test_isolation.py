"""Projects keep their series apart on every path: a walk over every route of the OpenAPI
schema as a member of another project and as an anonymous caller, and the paths one by one
(counts, facets, autocomplete, DICOMweb, DIMSE)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kahu.core import Kahu
from kahu.dimse.nodes import Node
from tests.api.conftest import Api
from tests.conftest import SYSTEM
from tests.dimse import scu
from tests.models.builders import manifest_folder
from tests.synthetic import ct_series

SECRET = "alphasecret"  # in every name and value of the foreign project
PASSWORD = "correct horse battery staple"


@dataclass
class World:
    api: Api
    bob: dict[str, str]  # manager of beta, nothing in alphasecret
    study: str
    series: str
    sop: str
    file: bytes
    run_id: str
    task_id: int
    beta_series: str

    @property
    def markers(self) -> list[str]:
        return [SECRET, self.study, self.series, self.sop]


def _world(api: Api) -> World:
    kahu, client, admin = api.kahu, api.client, api.headers()
    kahu.projects.create(SECRET, "the foreign project")
    kahu.projects.create("beta")
    files = ct_series(2, 16, patient_id=f"{SECRET}-1", description=f"{SECRET} chest")
    reports = kahu.ingestor.ingest_many(files, project=SECRET)
    series = reports[0].series_instance_uid
    assert series is not None
    [row] = kahu.catalog.instances(SYSTEM, series_uid=series)[:1]
    beta = kahu.ingestor.ingest_many(ct_series(1, 16, patient_id="BETA-1"), project="beta")
    beta_series = beta[0].series_instance_uid
    assert beta_series is not None
    kahu.curation.create_dataset(f"{SECRET}-set", series=[series], project=SECRET)
    kahu.curation.tag([series], add=[f"{SECRET}-tag"])
    kahu.objects.of_project(SECRET).put_bytes(f"{SECRET}-bucket", f"{SECRET}.txt", b"secret")
    kahu.nodes.add(Node(f"{SECRET}-node", "ALPHANODE", "127.0.0.1", 104, "", (SECRET,)))
    kahu.projects.map_ae("ALPHAAE", SECRET)
    model = manifest_folder(api.kahu.settings.home.parent / "model", name=f"{SECRET}-model")
    kahu.models.install(model, overrides={"version": "1"}, projects=[SECRET])
    trigger = {"name": f"{SECRET}-trigger", "workflow": "series-thumbnails", "query": "*"}
    assert client.post("/api/v1/triggers", json={**trigger, "project": SECRET}, headers=admin)
    created = client.post(
        "/api/v1/runs",
        json={"workflow": "export-dicom-zip", "series_uids": [series], "project": SECRET},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["runs"][0]["id"]
    assert kahu.flow.wait_idle(run_id, 120) == "succeeded"
    task_id = client.get(f"/api/v1/runs/{run_id}/tasks", headers=admin).json()["tasks"][0]["id"]
    kahu.accounts.create_user("bob", PASSWORD)
    kahu.projects.set_member("beta", "bob", "manager")
    bob = api.headers(kahu.accounts.create_token("bob")[0])
    return World(
        api, bob, row.study_instance_uid, series, row.sop_instance_uid, files[0], run_id,
        task_id, beta_series,
    )  # fmt: skip


@pytest.fixture
def world(api: Api) -> World:
    return _world(api)


def _path_values(w: World, path: str) -> dict[str, str]:
    name = {
        "/api/v1/datasets": f"{SECRET}-set",
        "/api/v1/projects": SECRET,
        "/api/v1/triggers": f"{SECRET}-trigger",
        "/api/v1/workflows": "export-dicom-zip",
        "/api/v1/nodes": f"{SECRET}-node",
        "/api/v1/users": "admin",  # bob may not disable the administrator
        "/api/v1/fields": "PatientID",
        "/api/v1/federation": "statistics",
        "/api/v1/models": f"{SECRET}-model",
    }
    return {
        "series_uid": w.series,
        "uid": w.series,
        "study": w.study,
        "series": w.series,
        "instance": w.sop,
        "frames": "1",
        "frame": "1",
        "tag": "7FE00010",
        "name": next((v for prefix, v in name.items() if path.startswith(prefix)), ""),
        "user_name": "bob",
        "ae_title": "ALPHAAE",
        "run_id": str(w.run_id),
        "task_id": str(w.task_id),
        "path": f"zip/{w.run_id}.zip",
        "bucket": f"{SECRET}-bucket",
        "key": f"{SECRET}.txt",
        "token_id": "1",  # the administrator's
        "version": "1",
        "job_id": f"fed-{SECRET}.0",
        "partner": f"{SECRET}-site",
        "coordinator": f"{SECRET}-site",
    }


def _body(w: World) -> dict[str, Any]:
    """One body for every route that takes JSON: each field aims at the foreign project
    (names are bob's own: a route may answer with the name it was given)."""
    return {
        "name": "bobs",
        "disabled": True,
        "series": [w.series],
        "series_uids": [w.series],
        "project": SECRET,
        "projects": [SECRET],
        "move_from": SECRET,
        "q": "*",
        "query": "*",
        "facets": {
            "patients": {"type": "terms", "field": "PatientID"},
            "datasets": {"type": "terms", "field": "dataset"},
            "tags": {"type": "terms", "field": "tags"},
            "count": {"type": "distinct", "of": "studies"},
        },
        "workflow": "export-dicom-zip",
        "add": [w.series],
        "remove": [w.series],
        "role": "manager",
        "username": "bob",
        "password": PASSWORD + " again",
        "current_password": PASSWORD,
        "new_password": PASSWORD + " again",
        "ae_title": "BOBNODE",
        "host": "127.0.0.1",
        "port": 104,
        "enabled": False,
    }


def _routes(client: TestClient) -> Iterator[tuple[str, str, list[str], list[str]]]:
    """(method, path, path parameters, query parameters) of every route in the schema."""
    for path, operations in client.app.openapi()["paths"].items():  # type: ignore[attr-defined]
        for method, op in operations.items():
            params = op.get("parameters", [])
            yield (
                method.upper(),
                path,
                [p["name"] for p in params if p["in"] == "path"],
                [p["name"] for p in params if p["in"] == "query"],
            )


def _request(
    w: World, method: str, path: str, names: list[str], query: list[str], headers: dict[str, str]
) -> Any:
    values = _path_values(w, path)
    missing = [n for n in names if not values.get(n)]
    assert not missing, f"{method} {path}: give the walk a value for {missing}"
    url = re.sub(r"\{(\w+)(?::path)?\}", lambda m: values[m.group(1)], path)
    params = {"project": SECRET} if "project" in query else {}
    if "of" in query:
        params["of"] = "*"
    client = w.api.client
    if (
        path in ("/api/v1/upload", "/dicomweb/studies", "/dicomweb/studies/{study}")
        and method == "POST"
    ):
        boundary = "B"
        body = b"--B\r\nContent-Type: application/dicom\r\n\r\n" + w.file + b"\r\n--B--\r\n"
        media = f'multipart/related; type="application/dicom"; boundary={boundary}'
        if path == "/api/v1/upload":
            body, media = w.file, "application/dicom"
        return client.request(
            method, url, params=params, content=body, headers={**headers, "Content-Type": media}
        )
    if method == "PUT" and path.startswith("/api/v1/objects"):
        return client.put(url, params=params, content=b"overwritten", headers=headers)
    if method in ("POST", "PUT", "PATCH"):
        return client.request(method, url, params=params, json=_body(w), headers=headers)
    return client.request(method, url, params=params, headers=headers)


def _state(w: World) -> dict[str, Any]:
    """What the foreign project holds, read as the administrator."""
    kahu = w.api.kahu
    return {
        "instances": sorted(
            i.sop_instance_uid for i in kahu.catalog.instances(SYSTEM, series_uid=w.series)
        ),
        "projects": kahu.projects.series_projects(w.series),
        "dataset": kahu.curation.dataset(f"{SECRET}-set").series_count,
        "tags": kahu.curation.tags_of([w.series]),
        "object": kahu.objects.of_project(SECRET).open(f"{SECRET}-bucket", f"{SECRET}.txt").read(),
        "members": kahu.projects.members(SECRET),
        "bob": kahu.projects.roles_of("bob"),
        "ae": kahu.projects.ae_map(),
        "nodes": [(n.name, n.projects) for n in kahu.nodes.list()],
        "run": kahu.runs.run(w.run_id).state,
        "triggers": [(t.name, t.enabled) for t in kahu.triggers.all()],
        "project": kahu.projects.get(SECRET).series_count,
        "models": [(m.ref, m.projects, m.sha256) for m in kahu.models.all()],
    }


def test_every_route_keeps_a_foreign_project_apart(world: World) -> None:
    """As bob (manager of another project) every route either refuses or answers without
    anything of the foreign project, and nothing of it changes."""
    before = _state(world)
    walked = 0
    for method, path, names, query in _routes(world.api.client):
        if path == "/health":
            continue
        response = _request(world, method, path, names, query, world.bob)
        walked += 1
        if response.status_code < 400:
            text = response.content.decode("latin-1").lower()
            leaked = [m for m in world.markers if m.lower() in text]
            assert not leaked, f"{method} {path} answered {response.status_code} with {leaked}"
        else:
            assert response.status_code in (400, 401, 403, 404, 405, 409, 415, 422), (
                f"{method} {path}: {response.status_code} {response.text[:200]}"
            )
    assert walked > 70
    assert _state(world) == before


def test_anonymous_callers_get_nothing_but_health(world: World) -> None:
    for method, path, names, query in _routes(world.api.client):
        response = _request(world, method, path, names, query, {})
        if path == "/health":
            assert response.status_code == 200
        elif path in ("/api/v1/auth/login", "/api/v1/auth/session"):
            assert response.status_code in (401, 422)  # a login attempt, wrong password
        elif path.startswith("/api/v1/auth/oidc/"):  # single sign-on: not configured here
            assert response.status_code in (400, 401), f"{path}: {response.status_code}"
        else:
            assert response.status_code == 401, f"{method} {path}: {response.status_code}"


def test_counts_facets_and_autocomplete_count_only_the_callers_projects(world: World) -> None:
    client, bob = world.api.client, world.bob
    assert client.get("/api/v1/stats", headers=bob).json()["series"] == 1
    listed = client.get("/api/v1/series", headers=bob).json()
    assert [s["series_instance_uid"] for s in listed["items"]] == [world.beta_series]
    assert listed["total"] == 1
    body = {"q": "", "facets": _body(world)["facets"]}
    facets = client.post("/api/v1/aggregations", json=body, headers=bob).json()
    assert facets["total"] == 1
    assert [b["key"] for b in facets["facets"]["patients"]["buckets"]] == ["BETA-1"]
    assert facets["facets"]["count"]["count"] == 1
    values = client.get("/api/v1/fields/PatientID/values", headers=bob).json()
    assert [v["value"] for v in values] == ["BETA-1"]
    fields = {f["name"]: f["series"] for f in client.get("/api/v1/fields", headers=bob).json()}
    assert fields["PatientID"] == 1
    assert "tags" not in fields
    studies = client.get("/dicomweb/studies", headers=bob).json()
    assert len(studies) == 1
    # the administrator sees both projects; a member of both sees both
    admin = world.api.headers()
    assert client.get("/api/v1/stats", headers=admin).json()["series"] == 2
    world.api.kahu.projects.set_member(SECRET, "bob", "viewer")
    assert client.get("/api/v1/stats", headers=bob).json()["series"] == 2
    facets = client.post("/api/v1/aggregations", json=body, headers=bob).json()
    assert facets["total"] == 2
    assert [b["key"] for b in facets["facets"]["datasets"]["buckets"]] == [f"{SECRET}-set"]


def test_series_moved_between_projects_follow_at_once(world: World) -> None:
    """Membership changes reach the column index: a moved series leaves the search of the
    old project's members at the next query."""
    kahu, client, bob = world.api.kahu, world.api.client, world.bob
    query = {"q": "Modality:CT", "facets": {}}
    assert client.post("/api/v1/aggregations", json=query, headers=bob).json()["total"] == 1
    kahu.projects.copy_series([world.series], "beta")
    assert client.post("/api/v1/aggregations", json=query, headers=bob).json()["total"] == 2
    kahu.projects.move_series([world.series], "beta", SECRET)
    assert client.post("/api/v1/aggregations", json=query, headers=bob).json()["total"] == 1
    kahu.projects.move_series([world.beta_series], "beta", SECRET)
    assert client.post("/api/v1/aggregations", json=query, headers=bob).json()["total"] == 0
    # a manager copies only series they manage: not the foreign project's
    beta = client.post(
        "/api/v1/projects/beta/series", json={"series_uids": [world.series]}, headers=bob
    )
    assert beta.status_code == 404
    kahu.projects.delete(SECRET)
    assert (
        client.post("/api/v1/aggregations", json=query, headers=world.api.headers()).json()["total"]
        == 2
    )


def test_dicom_nodes_query_and_retrieve_only_their_projects(running_kahu: Kahu) -> None:
    from pydicom.dataset import Dataset

    kahu = running_kahu
    kahu.projects.create("alpha")
    kahu.projects.map_ae("ALPHA", "alpha")
    assert scu.store(kahu.dicom.port, ct_series(2, 8, patient_id="A-1"), called="ALPHA") == [0, 0]
    assert scu.store(kahu.dicom.port, ct_series(1, 8, patient_id="D-1")) == [0]

    def find(calling: str, called: str = "KAHU") -> tuple[list[str], int]:
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.PatientID = ""
        query.NumberOfStudyRelatedSeries = ""
        found, status = scu.find(kahu.dicom.port, query, calling=calling, called=called)
        return sorted(str(f.PatientID) for f in found), status

    assert find("STRANGER") == ([], 0xC001)  # no node: refused
    kahu.nodes.add(Node("reader", "READER", "127.0.0.1", 104))  # of the default project
    kahu.nodes.add(Node("both", "BOTH", "127.0.0.1", 104, "", ("alpha", "default")))
    assert find("READER") == (["D-1"], 0)
    assert find("BOTH") == (["A-1", "D-1"], 0)
    assert find("BOTH", called="ALPHA") == (["A-1"], 0)  # the called AE narrows to its project
    # C-MOVE: only what both the caller and the destination may hold
    status = scu.move(kahu.dicom.port, _study_query("A-1"), "READER", calling="BOTH")
    assert status.Status == 0
    assert status.NumberOfCompletedSuboperations == 0
    status = scu.move(kahu.dicom.port, _study_query("A-1"), "READER", calling="STRANGER")
    assert status.Status == 0xC513  # refused: no node calls as STRANGER


def _study_query(patient_id: str) -> Any:
    from pydicom.dataset import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = patient_id
    return query


#: what each role may do in a project: (action, the least role that may)
MATRIX = [
    ("search", "viewer"),
    ("retrieve", "viewer"),
    ("read bucket", "viewer"),
    ("create dataset", "scientist"),
    ("tag", "scientist"),
    ("launch run", "scientist"),
    ("upload", "scientist"),
    ("write bucket", "scientist"),
    ("add member", "manager"),
]
RANKS = {None: 0, "viewer": 1, "scientist": 2, "manager": 3, "admin": 4}


@pytest.mark.parametrize("role", [None, "viewer", "scientist", "manager", "admin"])
def test_role_matrix(api: Api, role: str | None) -> None:
    """Each role may do what its rank includes in the project, and nothing more."""
    kahu, client = api.kahu, api.client
    kahu.projects.create("trial")
    [report] = kahu.ingestor.ingest_many(ct_series(1, 8, patient_id="TRIAL-1"), project="trial")
    series, study = report.series_instance_uid, report.study_instance_uid
    kahu.objects.of_project("trial").put_bytes("shared", "notes.txt", b"notes")
    if role == "admin":
        kahu.accounts.create_user("frank", PASSWORD, is_admin=True)
    else:
        kahu.accounts.create_user("frank", PASSWORD)
        if role is not None:
            kahu.projects.set_member("trial", "frank", role)
    kahu.accounts.create_user("grace", PASSWORD)
    frank = api.headers(kahu.accounts.create_token("frank")[0])
    upload = ct_series(1, 8, patient_id="TRIAL-2")[0]
    actions = {
        "search": lambda: client.get("/api/v1/series", headers=frank).json()["total"] == 1,
        "retrieve": lambda: client.get(
            f"/dicomweb/studies/{study}/series/{series}/metadata", headers=frank
        ).status_code == 200,
        "read bucket": lambda: client.get(
            "/api/v1/objects/shared/notes.txt", params={"project": "trial"}, headers=frank
        ).status_code == 200,
        "create dataset": lambda: client.post(
            "/api/v1/datasets",
            json={"name": "cohort", "series": [series], "project": "trial"},
            headers=frank,
        ).status_code == 201,
        "tag": lambda: client.post(
            "/api/v1/tags", json={"series": [series], "add": ["good"]}, headers=frank
        ).status_code == 200,
        "launch run": lambda: client.post(
            "/api/v1/runs",
            json={"workflow": "export-dicom-zip", "series_uids": [series], "project": "trial"},
            headers=frank,
        ).status_code == 201,
        "upload": lambda: client.post(
            "/api/v1/upload", params={"project": "trial"}, content=upload,
            headers={**frank, "Content-Type": "application/dicom"},
        ).status_code == 200,
        "write bucket": lambda: client.put(
            "/api/v1/objects/shared/more.txt", params={"project": "trial"}, content=b"x",
            headers=frank,
        ).status_code == 201,
        "add member": lambda: client.put(
            "/api/v1/projects/trial/members/grace", json={"role": "viewer"}, headers=frank
        ).status_code in (200, 204),
    }  # fmt: skip
    allowed = {action: actions[action]() for action, _ in MATRIX}
    expected = {action: RANKS[role] >= RANKS[least] for action, least in MATRIX}
    assert allowed == expected
