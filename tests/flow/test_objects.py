"""The object store: buckets of files that workflows put results into and get models from,
over the API and through operators."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kahu.app import create_app
from kahu.core import Kahu
from kahu.errors import InvalidInput, NotFound
from kahu.flow import Workflow
from kahu.operators import get_input, get_objects, put_objects
from kahu.storage.objects import ObjectStore
from tests.conftest import SYSTEM
from tests.flow.conftest import add_series, run_workflow


def test_names_cannot_leave_the_bucket(tmp_path: Path) -> None:
    store = ObjectStore(str(tmp_path / "objects"))
    (tmp_path / "secret").write_text("s")
    for bucket, key in [
        ("../x", "a"),
        ("UPPER", "a"),
        ("ok-bucket", "../secret"),
        ("ok-bucket", "/etc/passwd"),
        ("ok-bucket", "a/../../secret"),
        ("ok-bucket", "a b"),
    ]:
        with pytest.raises(InvalidInput):
            store.put_bytes(bucket, key, b"x")
    store.put_bytes("ok-bucket", "models/v1/weights.bin", b"\x00\x01")
    assert [o.public() for o in store.objects("ok-bucket", "models/")] == [
        {"key": "models/v1/weights.bin", "size": 2}
    ]
    assert store.buckets() == ["ok-bucket"]
    with pytest.raises(NotFound):
        store.open("ok-bucket", "models/v2/weights.bin")


def test_workflows_put_and_get_objects_and_users_download_them(local_kahu: Kahu) -> None:
    local_kahu.workflows.add(
        Workflow(
            "publish",
            "1.0",
            (get_input(), put_objects(["get-input"], bucket="results", prefix="ct")),
        )
    )
    local_kahu.workflows.add(
        Workflow("fetch-model", "1.0", (get_objects(bucket="models", prefix="unet/v1"),))
    )
    series = add_series(local_kahu, 2, instances=2)
    run_id = run_workflow(local_kahu, "publish", series)
    assert local_kahu.flow.wait_idle(run_id, 60) == "succeeded"

    local_kahu.accounts.ensure_admin(local_kahu.settings.admin_password_file)
    token, _ = local_kahu.accounts.create_token("admin")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(local_kahu.settings, local_kahu)) as client:
        listing = client.get(f"/api/v1/objects/results?prefix=ct/{run_id}/", headers=auth).json()
        keys = [o["key"] for o in listing["objects"]]
        assert len(keys) == 4
        assert {k.split("/")[2] for k in keys} == set(series)
        first = keys[0]
        sop = first.rsplit("/", 1)[1].removesuffix(".dcm")
        [row] = local_kahu.catalog.instances(SYSTEM, sop_uid=sop)
        body = client.get(f"/api/v1/objects/results/{first}", headers=auth)
        assert body.content == local_kahu.store.get(row.blob_key)

        weights = bytes(range(256)) * 1000
        put = client.put("/api/v1/objects/models/unet/v1/weights.pt", content=weights, headers=auth)
        assert put.status_code == 201
        escape = client.put("/api/v1/objects/models/%2e%2e/x", content=b"x", headers=auth)
        assert escape.status_code == 400
        assert (
            client.put("/api/v1/objects/Bad_Bucket/x", content=b"x", headers=auth).status_code
            == 400
        )
        assert client.get("/api/v1/objects/models", headers={}).status_code == 401
        assert client.get("/api/v1/objects", headers=auth).json() == {
            "buckets": ["models", "results"]
        }

    fetch = run_workflow(local_kahu, "fetch-model", series[:1])
    assert local_kahu.flow.wait_idle(fetch, 60) == "succeeded"
    fetched = local_kahu.settings.runs_root / fetch / "get-objects" / "weights.pt"
    assert fetched.read_bytes() == weights
