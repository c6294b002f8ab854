"""Datasets and tags over HTTP."""

from __future__ import annotations

import pydicom

from tests.api.conftest import Api
from tests.conftest import sample_path


def _seed(api: Api) -> dict[str, str]:
    uids = {}
    for name in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm"):
        api.kahu.ingestor.ingest(sample_path(name).read_bytes())
        uids[name] = str(pydicom.dcmread(sample_path(name)).SeriesInstanceUID)
    return uids


class TestDatasets:
    def test_query_dataset_lifecycle(self, api: Api) -> None:
        _seed(api)
        h = api.headers()
        created = api.client.post(
            "/api/v1/datasets", json={"name": "Imaging", "query": "NOT Modality:RTDOSE"}, headers=h
        )
        assert created.status_code == 201, created.text
        assert created.json()["kind"] == "query"
        assert created.json()["series_count"] == 2
        page = api.client.get("/api/v1/series", params={"dataset": "imaging"}, headers=h).json()
        assert page["total"] == 2
        frozen = api.client.post("/api/v1/datasets/Imaging/freeze", headers=h).json()
        assert frozen["kind"] == "frozen"
        assert frozen["frozen_at"]
        assert frozen["query"] == "NOT Modality:RTDOSE"
        listed = api.client.get("/api/v1/datasets", headers=h).json()
        assert [(d["name"], d["kind"], d["series_count"]) for d in listed] == [
            ("Imaging", "frozen", 2)
        ]
        assert api.client.delete("/api/v1/datasets/imaging", headers=h).status_code == 204
        assert api.client.get("/api/v1/datasets/Imaging", headers=h).status_code == 404

    def test_explicit_dataset_membership(self, api: Api) -> None:
        uids = _seed(api)
        h = api.headers()
        body = {"name": "Picked", "series": [uids["CT_small.dcm"]]}
        assert api.client.post("/api/v1/datasets", json=body, headers=h).status_code == 201
        changed = api.client.post(
            "/api/v1/datasets/Picked/series",
            json={
                "add": [uids["MR_small.dcm"], uids["rtdose.dcm"]],
                "remove": [uids["CT_small.dcm"]],
            },
            headers=h,
        ).json()
        assert changed["series_count"] == 2
        found = api.client.get("/api/v1/series", params={"q": "dataset:Picked"}, headers=h).json()
        assert found["total"] == 2

    def test_errors(self, api: Api) -> None:
        uids = _seed(api)
        h = api.headers()
        post = api.client.post
        assert post("/api/v1/datasets", json={"name": "a/b"}, headers=h).status_code == 400
        assert (
            post("/api/v1/datasets", json={"name": "Q", "query": "Rows:x"}, headers=h).status_code
            == 400
        )
        assert post("/api/v1/datasets", json={"name": "D"}, headers=h).status_code == 201
        assert post("/api/v1/datasets", json={"name": "d"}, headers=h).status_code == 409
        assert (
            post("/api/v1/datasets", json={"name": "E", "series": ["1.2.3"]}, headers=h).status_code
            == 404
        )
        assert post("/api/v1/datasets/none/freeze", headers=h).status_code == 404
        assert post("/api/v1/datasets/D/freeze", headers=h).status_code == 400
        assert post("/api/v1/datasets", json={"name": "x" * 100}, headers=h).status_code == 422
        too_many = {"name": "Big", "series": [uids["MR_small.dcm"]] * 10_001}
        assert post("/api/v1/datasets", json=too_many, headers=h).status_code == 422


class TestTags:
    def test_tag_and_find(self, api: Api) -> None:
        uids = _seed(api)
        h = api.headers()
        ct, mr = uids["CT_small.dcm"], uids["MR_small.dcm"]
        response = api.client.post(
            "/api/v1/tags", json={"series": [ct, mr], "add": ["1", "keep"]}, headers=h
        )
        assert response.json() == {ct: ["1", "keep"], mr: ["1", "keep"]}
        api.client.post("/api/v1/tags", json={"series": [mr], "remove": ["keep"]}, headers=h)
        found = api.client.get("/api/v1/series", params={"q": "tags:keep"}, headers=h).json()
        assert [s["series_instance_uid"] for s in found["items"]] == [ct]
        document = api.client.get(f"/api/v1/series/{mr}", headers=h).json()["document"]
        assert document["tags"] == ["1"]
        bad = api.client.post("/api/v1/tags", json={"series": [mr], "add": [""]}, headers=h)
        assert bad.status_code == 400
        assert "a tag is" in bad.json()["detail"]
