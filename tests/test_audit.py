"""The audit log: every audited action leaves exactly one record, records cannot be changed
or removed, an action that cannot be recorded does not happen, and administrators filter and
export the log."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from pydicom.dataset import Dataset
from sqlalchemy import text

from kahu.core import Kahu
from kahu.dimse.nodes import Node
from tests.api.conftest import Api
from tests.conftest import SYSTEM
from tests.dimse import scu
from tests.synthetic import ct_series


def _counts(kahu: Kahu) -> Counter[str]:
    return Counter(r.action for r in kahu.audit.query(limit=None))


def _new(kahu: Kahu, before: Counter[str]) -> Counter[str]:
    after = _counts(kahu)
    after.subtract(before)
    return +after


def _series(kahu: Kahu, count: int = 2) -> tuple[str, str]:
    reports = kahu.ingestor.ingest_many(ct_series(count, 8))
    series, study = reports[0].series_instance_uid, reports[0].study_instance_uid
    assert series is not None
    assert study is not None
    return study, series


def test_each_audited_action_leaves_exactly_one_record(api: Api) -> None:
    kahu, client = api.kahu, api.client
    admin = api.headers()
    client.get("/api/v1/me", headers=admin)  # the token's first use is a record of its own
    study, series = _series(kahu)
    alice = api.headers(api.user_token)
    client.get("/api/v1/me", headers=alice)
    steps = [
        ("login", lambda: client.post(
            "/api/v1/auth/login", json={"username": "alice", "password": "correct horse battery"}
        )),
        ("login.failed", lambda: client.post(
            "/api/v1/auth/login", json={"username": "alice", "password": "wrong"}
        )),
        ("search", lambda: client.get(
            "/api/v1/series", params={"q": "Modality:CT"}, headers=alice
        )),
        ("search", lambda: client.get("/dicomweb/studies", headers=alice)),
        ("retrieve", lambda: client.get(
            f"/dicomweb/studies/{study}/series/{series}", headers=alice
        )),
        ("retrieve", lambda: client.get(f"/dicomweb/studies/{study}/metadata", headers=alice)),
        ("run.launch", lambda: client.post(
            "/api/v1/runs", json={"workflow": "export-dicom-zip", "series_uids": [series]},
            headers=alice,
        )),
        ("member.set", lambda: client.put(
            "/api/v1/projects/default/members/alice", json={"role": "viewer"}, headers=admin
        )),
        ("series.delete", lambda: client.delete(f"/api/v1/series/{series}", headers=admin)),
    ]  # fmt: skip
    for action, step in steps:
        before = _counts(kahu)
        response = step()
        assert response.status_code < 500, (action, response.text)
        assert _new(kahu, before) == Counter({action: 1}), (
            action,
            response.status_code,
            response.text[:300],
        )
    [deleted] = kahu.audit.query(action="series.delete")
    assert deleted.actor == "admin"
    assert deleted.series == [series]
    assert deleted.status == 200  # an action's record says "done" whichever door it came by
    assert deleted.path == "DELETE /api/v1/series/{series_uid}"
    [launched] = kahu.audit.query(action="run.launch")
    assert launched.series == [series]
    assert launched.detail["workflow"] == "export-dicom-zip"
    assert len(launched.result["runs"]) == 1
    searches = kahu.audit.query(action="search", actor="alice")
    assert searches[0].detail["params"] == {"q": "Modality:CT"}
    assert all(r.status == 200 for r in searches)
    assert [r.status for r in kahu.audit.query(action="login.failed")] == [401]
    # a token is recorded at its first use in a minute, not at every request
    fresh, _ = kahu.accounts.create_token("alice")
    before = _counts(kahu)
    for _ in range(3):
        client.get("/api/v1/me", headers=api.headers(fresh))
    assert _new(kahu, before) == Counter({"token.use": 1})


def test_records_cannot_be_changed_or_removed(kahu: Kahu) -> None:
    record = kahu.audit.record("alice", "search", status=200)
    pending = kahu.audit.record("bob", "retrieve")
    kahu.audit.finish(pending, 200, {"instances": 3})
    kahu.audit.finish(pending, 500)  # a second outcome is ignored
    for statement in (
        "UPDATE audit_events SET actor = 'mallory' WHERE id = :id",
        "UPDATE audit_events SET status = 404 WHERE id = :id",
        "DELETE FROM audit_events WHERE id = :id",
    ):
        with pytest.raises(Exception, match="append-only"), kahu.db.write() as s:
            s.execute(text(statement), {"id": record})
    with pytest.raises(Exception, match="append-only"), kahu.db.write() as s:
        s.execute(text("UPDATE audit_events SET status = 500 WHERE id = :id"), {"id": pending})
    records = {r.id: r for r in kahu.audit.query()}
    assert records[record].actor == "alice"
    assert records[record].status == 200
    assert records[pending].status == 200
    assert records[pending].result == {"instances": 3}


def _break_audit(kahu: Kahu) -> None:
    with kahu.db.write() as s:
        s.execute(text("ALTER TABLE audit_events RENAME TO audit_events_gone"))


def test_an_action_that_cannot_be_recorded_does_not_happen(api: Api) -> None:
    kahu, client, admin = api.kahu, api.client, api.headers()
    client.get("/api/v1/me", headers=admin)
    study, series = _series(kahu)
    _break_audit(kahu)
    deleted = client.delete(f"/api/v1/series/{series}", headers=admin)
    assert deleted.status_code == 503
    assert "audit" in deleted.json()["detail"]
    assert kahu.catalog.get_series(SYSTEM, series).instance_count == 2
    retrieved = client.get(f"/dicomweb/studies/{study}/series/{series}", headers=admin)
    assert retrieved.status_code == 503
    assert b"DICM" not in retrieved.content
    runs = client.post(
        "/api/v1/runs", json={"workflow": "export-dicom-zip", "series_uids": [series]},
        headers=admin,
    )  # fmt: skip
    assert runs.status_code == 503
    assert (
        kahu.runs.runs()[0] == [] if isinstance(kahu.runs.runs(), tuple) else not kahu.runs.runs()
    )
    login = client.post("/api/v1/auth/login", json={"username": "alice", "password": "x"})
    assert login.status_code == 503


def test_dicom_queries_and_retrievals_are_recorded(running_kahu: Kahu, make_settings) -> None:  # type: ignore[no-untyped-def]
    kahu = running_kahu
    assert scu.store(kahu.dicom.port, ct_series(2, 8, patient_id="AUD-1")) == [0, 0]
    kahu.nodes.add(Node("scu", "TESTSCU", "127.0.0.1", 104))
    destination = Kahu(make_settings(ae_title="DEST"))
    destination.start()
    try:
        kahu.nodes.add(Node("dest", "DEST", "127.0.0.1", destination.dicom.port))
        _query_and_move(kahu)
    finally:
        destination.stop()


def _query_and_move(kahu: Kahu) -> None:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = "AUD-1"
    before = _counts(kahu)
    found, status = scu.find(kahu.dicom.port, query)
    assert (len(found), status) == (1, 0)
    assert _new(kahu, before) == Counter({"search": 1})
    assert scu.move(kahu.dicom.port, query, "DEST").NumberOfCompletedSuboperations == 2
    [move] = kahu.audit.query(action="retrieve")
    assert move.actor == "TESTSCU"
    assert move.actor_kind == "node"
    assert move.path == "dimse"
    assert len(move.series) == 1
    assert move.detail["destination"] == "dest"
    assert move.status == 0
    assert move.detail["instances"] == 2
    [search] = kahu.audit.query(action="search")
    assert search.detail["c-find"]["PatientID"] == "AUD-1"
    assert search.result == {"matches": 1}
    found, status = scu.find(kahu.dicom.port, query, calling="STRANGER")
    assert (found, status) == ([], 0xC001)
    refused = kahu.audit.query(action="search", actor="STRANGER")
    assert [r.status for r in refused] == [0xC001]
    _break_audit(kahu)
    found, status = scu.find(kahu.dicom.port, query)
    assert (found, status) == ([], 0xC001)


def test_administrators_filter_and_export_the_log(api: Api) -> None:
    kahu, client, admin = api.kahu, api.client, api.headers()
    alice = api.headers(api.user_token)
    for q in ("Modality:CT", "Modality:MR"):
        client.get("/api/v1/series", params={"q": q}, headers=alice)
    assert client.get("/api/v1/audit", headers=alice).status_code == 403
    assert client.get("/api/v1/audit/export", headers=alice).status_code == 403
    listed = client.get("/api/v1/audit", params={"action": "search"}, headers=admin).json()
    assert [r["detail"]["params"]["q"] for r in listed["records"]] == ["Modality:CT", "Modality:MR"]
    assert (
        client.get(
            "/api/v1/audit", params={"actor": "alice", "action": "token."}, headers=admin
        ).json()["records"][0]["action"]
        == "token.use"
    )
    exported = client.get("/api/v1/audit/export", params={"actor": "alice"}, headers=admin)
    assert exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert [r["action"] for r in lines] == [r.action for r in kahu.audit.query(actor="alice")]
    # alice's refused attempts to read the log are in it too, and so are the admin's reads
    assert {r["action"] for r in lines} == {"token.use", "search", "audit.read"}
    assert [r.status for r in kahu.audit.query(actor="alice", action="audit.read")] == [403, 403]
    assert len(kahu.audit.query(actor="admin", action="audit.read")) == 3


def test_every_audited_route_exists(api: Api) -> None:
    """The table of audited routes follows the API (a renamed route would go unaudited)."""
    from kahu.audit import ROUTES

    schema = api.client.app.openapi()["paths"]  # type: ignore[attr-defined]
    known = {(m.upper(), p.replace(":path", "")) for p, ops in schema.items() for m in ops}
    assert set(ROUTES) - known == set()


def test_a_request_that_crashes_is_recorded_as_failed(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unhandled error is answered 500 by the server outside Kahu's middleware: the
    record still gets its outcome."""
    from fastapi.testclient import TestClient

    series = api.kahu.ingestor.ingest_many(ct_series(1, 4))[0].series_instance_uid

    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(api.kahu.catalog, "delete_series", crash)
    client = TestClient(api.client.app, raise_server_exceptions=False)
    response = client.delete(f"/api/v1/series/{series}", headers=api.headers())
    assert response.status_code == 500
    [record] = api.kahu.audit.query(action="series.delete")
    assert record.status == 500
