"""Projects: series enter them by the called AE title, the upload's project or the default;
members hold roles; managers manage their project; series are copied and moved."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from kahu.catalog.database import alembic_config, make_engine
from kahu.catalog.tables import utcnow
from kahu.core import Kahu
from kahu.errors import Conflict, InvalidInput, NotFound
from kahu.settings import Settings
from tests.api.conftest import Api
from tests.conftest import SYSTEM
from tests.dimse import scu
from tests.synthetic import ct_series


def _series(kahu: Kahu, files: list[bytes], **kwargs: object) -> str:
    [uid] = {r.series_instance_uid for r in kahu.ingestor.ingest_many(files, **kwargs)}  # type: ignore[arg-type]
    assert uid is not None
    return uid


def test_series_enter_the_default_project_or_the_one_named(kahu: Kahu) -> None:
    kahu.projects.create("lung-study", "screening cohort")
    plain = _series(kahu, ct_series(2, 8))
    named = _series(kahu, ct_series(2, 8), project="lung-study")
    assert kahu.projects.series_projects(plain) == ["default"]
    assert kahu.projects.series_projects(named) == ["lung-study"]
    with pytest.raises(NotFound, match="no project 'nope'"):
        kahu.ingestor.ingest_many(ct_series(1, 8), project="nope")
    assert {p.name: p.series_count for p in kahu.projects.all()} == {
        "default": 1,
        "lung-study": 1,
    }


def test_called_ae_titles_route_c_store_into_projects(running_kahu: Kahu) -> None:
    kahu = running_kahu
    kahu.projects.create("oncology")
    kahu.projects.create("cardio")
    kahu.projects.map_ae("ONCO", "oncology")
    kahu.projects.map_ae("CARDIO", "cardio")
    files = ct_series(2, 8)
    assert scu.store(kahu.dicom.port, files, called="ONCO") == [0, 0]
    [uid] = {r.series_instance_uid for r in kahu.catalog.instances(SYSTEM)}
    assert kahu.projects.series_projects(uid) == ["oncology"]
    # the same series sent to another project's AE title: it belongs to both now
    assert scu.store(kahu.dicom.port, files, called="CARDIO") == [0, 0]
    assert kahu.projects.series_projects(uid) == ["cardio", "oncology"]
    assert kahu.projects.project_of_ae("ONCO") == "oncology"
    kahu.projects.unmap_ae("ONCO")
    assert kahu.projects.project_of_ae("ONCO") is None


def test_members_roles_and_series_management(kahu: Kahu) -> None:
    kahu.accounts.create_user("alice", "correct horse battery")
    kahu.projects.create("neuro")
    with pytest.raises(Conflict):
        kahu.projects.create("neuro")
    with pytest.raises(InvalidInput):
        kahu.projects.create("Bad Name")
    with pytest.raises(InvalidInput, match="invalid role 'owner'"):
        kahu.projects.set_member("neuro", "alice", "owner")
    kahu.projects.set_member("neuro", "alice", "scientist")
    kahu.projects.set_member("neuro", "alice", "manager")  # a change, not a second row
    assert kahu.projects.roles_of("alice") == {"neuro": "manager"}
    assert kahu.projects.members("neuro") == {"alice": "manager"}

    uid = _series(kahu, ct_series(1, 8))
    assert kahu.projects.copy_series([uid], "neuro") == 1
    assert kahu.projects.copy_series([uid], "neuro") == 0
    assert kahu.projects.series_projects(uid) == ["default", "neuro"]
    kahu.projects.move_series([uid], "neuro", "default")
    assert kahu.projects.series_projects(uid) == ["default"]
    with pytest.raises(NotFound, match=r"no series 9\.9"):
        kahu.projects.copy_series(["9.9"], "neuro")

    kahu.projects.copy_series([uid], "neuro")
    kahu.projects.delete("neuro")  # the series stays, in its other project
    assert kahu.projects.series_projects(uid) == ["default"]
    assert kahu.projects.roles_of("alice") == {}
    with pytest.raises(InvalidInput, match="default project cannot be removed"):
        kahu.projects.delete("default")


def test_project_routes_follow_roles(api: Api) -> None:
    kahu, client = api.kahu, api.client
    admin = api.headers()
    alice = api.headers(api.user_token)
    kahu.accounts.create_user("bob", "correct horse battery staple")
    bob_token, _ = kahu.accounts.create_token("bob")
    bob = api.headers(bob_token)

    assert client.post("/api/v1/projects", json={"name": "trial"}, headers=alice).status_code == 403
    assert client.post("/api/v1/projects", json={"name": "trial"}, headers=admin).status_code == 201
    assert client.get("/api/v1/projects/trial", headers=alice).status_code == 404  # not a member
    member = {"role": "manager"}
    assert (
        client.put("/api/v1/projects/trial/members/alice", json=member, headers=alice).status_code
        == 404
    )
    assert (
        client.put("/api/v1/projects/trial/members/alice", json=member, headers=admin).status_code
        == 200
    )
    # alice manages trial: she adds bob as a viewer, who may look but not manage
    viewer = {"role": "viewer"}
    assert (
        client.put("/api/v1/projects/trial/members/bob", json=viewer, headers=alice).status_code
        == 200
    )
    shown = client.get("/api/v1/projects/trial", headers=bob).json()
    assert shown["name"] == "trial"
    assert "members" not in shown
    assert (
        client.put("/api/v1/projects/trial/members/bob", json=member, headers=bob).status_code
        == 403
    )
    assert {
        m["user"]: m["role"]
        for m in client.get("/api/v1/projects/trial", headers=alice).json()["members"]
    } == {
        "alice": "manager",
        "bob": "viewer",
    }
    listed = client.get("/api/v1/projects", headers=bob).json()["projects"]
    assert [(p["name"], p["role"]) for p in listed] == [("trial", "viewer")]
    everything = client.get("/api/v1/projects", headers=admin).json()["projects"]
    assert {p["name"] for p in everything} == {"default", "trial"}

    # AE titles are the administrators'; series go where a manager puts them
    assert client.put("/api/v1/projects/trial/ae-titles/TRIAL", headers=alice).status_code == 403
    assert client.put("/api/v1/projects/trial/ae-titles/TRIAL", headers=admin).status_code == 200
    uid = _series(kahu, ct_series(1, 8))
    moved = client.post(
        "/api/v1/projects/trial/series",
        json={"series_uids": [uid], "move_from": "default"},
        headers=alice,
    )
    assert moved.status_code == 403  # alice is a scientist of default, not its manager
    copy = {"series_uids": [uid]}
    copied = client.post("/api/v1/projects/trial/series", json=copy, headers=alice)
    assert copied.status_code == 404  # a copy too needs the manager of the series' project
    kahu.projects.set_member("default", "alice", "manager")
    copied = client.post("/api/v1/projects/trial/series", json=copy, headers=alice)
    assert copied.json() == {"project": "trial", "added": 1}
    assert kahu.projects.series_projects(uid) == ["default", "trial"]
    upload = client.post(
        "/api/v1/upload?project=nope",
        content=ct_series(1, 8)[0],
        headers={**admin, "Content-Type": "application/dicom"},
    )
    assert upload.status_code == 404
    upload = client.post(
        "/api/v1/upload?project=trial",
        content=ct_series(1, 8)[0],
        headers={**admin, "Content-Type": "application/dicom"},
    )
    assert upload.status_code == 200
    assert kahu.projects.get("trial").series_count == 2


def test_an_upgraded_catalog_keeps_everything_in_the_default_project(
    database_url: str, tmp_path: Path
) -> None:
    url = database_url or f"sqlite:///{tmp_path}/upgrade.sqlite"
    engine = make_engine(url)
    try:
        command.upgrade(alembic_config(engine), "0005")
        with engine.begin() as conn:
            now = {"now": utcnow()}
            conn.execute(text("INSERT INTO patients (patient_id, issuer) VALUES ('P', '')"))
            conn.execute(
                text(
                    "INSERT INTO studies (study_instance_uid, patient_pk, created_at)"
                    " SELECT '1.2', id, :now FROM patients"
                ),
                now,
            )
            conn.execute(
                text(
                    "INSERT INTO series (series_instance_uid, study_pk, received_at,"
                    " updated_at, instance_count, size_bytes, document, generation)"
                    " SELECT '1.2.3', id, :now, :now, 0, 0, '{}', 1 FROM studies"
                ),
                now,
            )
            for name, admin in (("root", True), ("carol", False)):
                conn.execute(
                    text(
                        "INSERT INTO users (name, password_hash, is_admin, disabled, created_at)"
                        " VALUES (:name, 'x', :admin, false, :now)"
                    ),
                    {"name": name, "admin": admin, **now},
                )
    finally:
        engine.dispose()
    with Kahu(Settings(home=tmp_path / "home", database_url=url)) as kahu:
        assert kahu.projects.series_projects("1.2.3") == ["default"]
        assert kahu.projects.members("default") == {"carol": "scientist"}


def test_runs_read_and_write_only_their_project(api: Api) -> None:
    """A run in a project sees only its series and stores its results there; launching
    needs a scientist's role."""
    from tests.synthetic import ct_volume

    kahu, client = api.kahu, api.client
    kahu.projects.create("trial")
    inside = _series(kahu, ct_volume(slices=6, size=16)[0], project="trial")
    outside = _series(kahu, ct_volume(slices=6, size=16)[0])
    alice = api.headers(api.user_token)
    run = {"workflow": "ct-threshold-segmentation", "query": "Modality:CT", "project": "trial"}
    assert client.post("/api/v1/runs", json=run, headers=alice).status_code == 404
    kahu.projects.set_member("trial", "alice", "viewer")
    assert client.post("/api/v1/runs", json=run, headers=alice).status_code == 403
    kahu.projects.set_member("trial", "alice", "scientist")
    created = client.post("/api/v1/runs", json=run, headers=alice)
    assert created.status_code == 201, created.text
    [info] = created.json()["runs"]
    assert info["project"] == "trial"
    assert info["series_count"] == 1  # the query matches both; the run sees its project's
    explicit = client.post(
        "/api/v1/runs",
        json={**run, "query": None, "series_uids": [outside]},
        headers=alice,
    )
    assert explicit.status_code == 400
    assert "not in project trial" in explicit.json()["detail"]
    assert kahu.flow.wait_idle(info["id"], 120) == "succeeded"
    results = [r["series_uid"] for r in kahu.lineage.of(inside)["results"]]
    assert len(results) == 2  # the SEG and the SR
    assert all(kahu.projects.series_projects(uid) == ["trial"] for uid in results)
    # the run and what it wrote are visible to the project's members only
    run_id = info["id"]
    kahu.accounts.create_user("bob", "correct horse battery staple")
    bob_token, _ = kahu.accounts.create_token("bob")
    bob = api.headers(bob_token)
    for path in ("", "/tasks", "/files", f"/files/zip/{run_id}.zip"):
        assert client.get(f"/api/v1/runs/{run_id}{path}", headers=bob).status_code == 404, path
    assert client.get("/api/v1/runs", headers=bob).json()["runs"] == []
    assert client.post(f"/api/v1/runs/{run_id}/retry", headers=bob).status_code == 404
    assert [r["id"] for r in client.get("/api/v1/runs", headers=alice).json()["runs"]] == [run_id]
    assert client.get(f"/api/v1/runs/{run_id}", headers=alice).status_code == 200
    assert client.get(f"/api/v1/runs/{run_id}", headers=api.headers()).status_code == 200
    kahu.projects.set_member("trial", "bob", "viewer")
    assert client.get(f"/api/v1/runs/{run_id}/tasks", headers=bob).status_code == 200
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=bob).status_code == 403


def test_stow_and_triggers_follow_project_roles(api: Api) -> None:
    kahu, client = api.kahu, api.client
    kahu.projects.create("trial")
    kahu.accounts.create_user("bob", "correct horse battery staple")
    bob = api.headers(kahu.accounts.create_token("bob")[0])
    body = b"--B\r\nContent-Type: application/dicom\r\n\r\n" + ct_series(1, 8)[0] + b"\r\n--B--\r\n"
    stow = {"Content-Type": 'multipart/related; type="application/dicom"; boundary=B'}

    def store(headers: dict[str, str], project: str = "trial") -> int:
        url = f"/dicomweb/studies?project={project}"
        return client.post(url, content=body, headers={**headers, **stow}).status_code

    assert store(bob) == 404
    assert store(bob, "default") == 404  # bob is in no project at all
    kahu.projects.set_member("trial", "bob", "viewer")
    assert store(bob) == 403
    kahu.projects.set_member("trial", "bob", "scientist")
    assert store(bob) == 200
    assert kahu.projects.get("trial").series_count == 1

    rule = {"name": "trial-rule", "workflow": "series-thumbnails", "query": "*", "project": "trial"}
    alice = api.headers(api.user_token)
    assert client.post("/api/v1/triggers", json=rule, headers=alice).status_code == 404
    assert client.post("/api/v1/triggers", json=rule, headers=bob).status_code == 201
    assert client.get("/api/v1/triggers", headers=alice).json()["triggers"] == []
    assert [t["name"] for t in client.get("/api/v1/triggers", headers=bob).json()["triggers"]] == [
        "trial-rule"
    ]
    assert client.delete("/api/v1/triggers/trial-rule", headers=alice).status_code == 404
    assert client.delete("/api/v1/triggers/trial-rule", headers=bob).status_code == 204
