"""Upload, list, fetch and delete through the REST API; bad input is refused, nothing is lost."""

from __future__ import annotations

import io
import zipfile

import pytest

from tests import synthetic
from tests.api.conftest import Api
from tests.conftest import sample_path


def _zip(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return out.getvalue()


def _upload(api: Api, files: dict[str, bytes], **params: str) -> dict[str, object]:
    response = api.client.post(
        "/api/v1/upload",
        params=params,
        headers=api.headers(),
        files=[("files", (name, data, "application/octet-stream")) for name, data in files.items()],
    )
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


class TestUpload:
    def test_multipart_files_and_zip_are_reported_per_file(self, api: Api) -> None:
        ct = sample_path("CT_small.dcm").read_bytes()
        archive = _zip(
            {
                "a/mr.dcm": sample_path("MR_small.dcm").read_bytes(),
                "a/notes.txt": b"not dicom",
                "a/ct-again.dcm": ct,
            }
        )
        report = _upload(api, {"ct.dcm": ct, "bundle.zip": archive}, dataset="UPLOADS")
        assert (report["stored"], report["duplicate"], report["rejected"]) == (2, 1, 1)
        statuses = {f["path"]: f["status"] for f in report["files"]}  # type: ignore[attr-defined]
        assert statuses == {
            "ct.dcm": "stored",
            "bundle.zip:a/mr.dcm": "stored",
            "bundle.zip:a/notes.txt": "rejected",
            "bundle.zip:a/ct-again.dcm": "duplicate",
        }
        datasets = api.client.get("/api/v1/datasets", headers=api.headers()).json()
        assert [(d["name"], d["kind"], d["origin"], d["series_count"]) for d in datasets] == [
            ("UPLOADS", "explicit", "upload", 2)
        ]

    def test_raw_dicom_body(self, api: Api) -> None:
        response = api.client.post(
            "/api/v1/upload",
            content=sample_path("MR_small.dcm").read_bytes(),
            headers={**api.headers(), "Content-Type": "application/dicom"},
        )
        assert response.json()["stored"] == 1

    def test_raw_zip_body(self, api: Api) -> None:
        body = _zip({f"{i}.dcm": d for i, d in enumerate(synthetic.ct_series(3))})
        response = api.client.post(
            "/api/v1/upload",
            content=body,
            headers={**api.headers(), "Content-Type": "application/zip"},
        )
        assert response.json()["stored"] == 3

    @pytest.mark.parametrize("content_type", ["text/plain", "application/json", ""])
    def test_wrong_content_type_is_415(self, api: Api, content_type: str) -> None:
        headers = {**api.headers(), "Content-Type": content_type} if content_type else api.headers()
        response = api.client.post("/api/v1/upload", content=b"x", headers=headers)
        assert response.status_code == 415
        assert "unsupported content type" in response.json()["detail"]

    def test_zip_traversal_and_absolute_entries_are_refused(self, api: Api) -> None:
        ct = sample_path("CT_small.dcm").read_bytes()
        archive = _zip({"../../evil.dcm": ct, "/etc/abs.dcm": ct, "ok.dcm": ct})
        report = _upload(api, {"hostile.zip": archive})
        reasons = {f["path"]: f.get("reason") for f in report["files"]}  # type: ignore[attr-defined]
        assert reasons["hostile.zip:../../evil.dcm"] == "'..' in archive path"
        assert reasons["hostile.zip:/etc/abs.dcm"] == "absolute path in archive"
        assert report["stored"] == 1

    def test_zip_bomb_is_refused(self, api: Api) -> None:
        bomb = _zip({"zeros.dcm": b"\0" * 50_000_000})
        assert len(bomb) < 100_000
        report = _upload(api, {"bomb.zip": bomb})
        [entry] = report["files"]  # type: ignore[misc]
        assert entry["status"] == "rejected"
        assert "ratio" in entry["reason"]

    def test_archive_limits_are_settings(self, api: Api) -> None:
        api.kahu.settings.imports.max_members = 2
        report = _upload(api, {"many.zip": _zip({f"{i}": b"x" for i in range(3)})})
        assert "3 members" in report["files"][0]["reason"]  # type: ignore[index]

    def test_corrupt_zip_and_empty_file(self, api: Api) -> None:
        report = _upload(api, {"broken.zip": b"PK\x03\x04garbage", "empty.dcm": b""})
        reasons = [f["reason"] for f in report["files"]]  # type: ignore[attr-defined]
        assert "unreadable zip archive" in reasons[0]
        assert reasons[1] == "empty file"

    def test_multipart_without_files(self, api: Api) -> None:
        response = api.client.post(
            "/api/v1/upload", files={"other": ("a.dcm", b"x")}, headers=api.headers()
        )
        assert response.status_code == 400
        assert response.json()["detail"] == "no 'files' in the form"


class TestSeriesRoutes:
    @pytest.fixture
    def series_uid(self, api: Api) -> str:
        report = _upload(api, {f"{i}.dcm": d for i, d in enumerate(synthetic.ct_series(3))})
        return report["files"][0]["series_instance_uid"]  # type: ignore[index,no-any-return]

    def test_list_get_instances(self, api: Api, series_uid: str) -> None:
        page = api.client.get("/api/v1/series", headers=api.headers()).json()
        assert page["total"] == 1
        assert page["items"][0]["instance_count"] == 3
        doc = api.client.get(f"/api/v1/series/{series_uid}", headers=api.headers()).json()
        assert doc["document"]["Modality"] == "CT"
        assert doc["document"]["BodyPartExamined"] == "CHEST"
        instances = api.client.get(
            f"/api/v1/series/{series_uid}/instances", headers=api.headers()
        ).json()
        assert [i["instance_number"] for i in instances] == [1, 2, 3]
        stats = api.client.get("/api/v1/stats", headers=api.headers()).json()
        assert stats["instances"] == 3

    def test_delete_series(self, api: Api, series_uid: str) -> None:
        assert (
            api.client.delete(f"/api/v1/series/{series_uid}", headers=api.headers()).status_code
            == 204
        )
        assert (
            api.client.get(f"/api/v1/series/{series_uid}", headers=api.headers()).status_code == 404
        )
        assert list(api.kahu.store.keys()) == []

    def test_find_series_with_a_query(self, api: Api, series_uid: str) -> None:
        _upload(api, {"mr.dcm": sample_path("MR_small.dcm").read_bytes()})

        def find(q: str, **params: object) -> dict[str, object]:
            response = api.client.get(
                "/api/v1/series", params={"q": q, **params}, headers=api.headers()
            )
            assert response.status_code == 200, response.text
            return response.json()  # type: ignore[no-any-return]

        page = find("modality:ct AND BodyPartExamined:chest")
        assert page["total"] == 1
        assert [i["series_instance_uid"] for i in page["items"]] == [series_uid]  # type: ignore[union-attr]
        assert find("Modality:(CT OR MR)", limit=1)["total"] == 2
        assert len(find("Modality:(CT OR MR)", limit=1)["items"]) == 1  # type: ignore[arg-type]
        assert find("NOT Modality:CT AND Rows:64")["total"] == 1
        assert find("*")["total"] == 2

    @pytest.mark.parametrize(
        ("query", "message"),
        [
            ("Colour:red", "unknown field 'Colour' at position 1"),
            ("Modality:(CT", "syntax error"),
            ("StudyDate:[2021 TO 2020]", "empty range"),
            ("Rows:[1 TO x]", "Rows takes a number, not 'x'"),
            ("(" * 100 + "CT" + ")" * 100, "nested deeper"),
            ("Modality:\"CT'; DROP TABLE series; --\" OR x' OR '1'='1", "syntax error"),
        ],
    )
    def test_bad_queries_are_a_400_that_says_why(
        self, api: Api, series_uid: str, query: str, message: str
    ) -> None:
        response = api.client.get("/api/v1/series", params={"q": query}, headers=api.headers())
        assert response.status_code == 400, response.text
        assert message in response.json()["detail"]
        assert api.client.get("/api/v1/series", headers=api.headers()).json()["total"] == 1

    def test_an_enormous_query_is_refused(self, api: Api) -> None:
        response = api.client.get("/api/v1/series", params={"q": "x" * 5000}, headers=api.headers())
        assert response.status_code == 422

    @pytest.mark.parametrize(
        ("url", "status"),
        [
            ("/api/v1/series/..%2F..%2Fetc", 404),
            ("/api/v1/series/1.2.abc", 400),
            ("/api/v1/series/1.2.3%3Brm", 400),
            ("/api/v1/series?limit=0", 422),
            ("/api/v1/series?limit=100000", 422),
            ("/api/v1/series?offset=-1", 422),
            ("/api/v1/series?limit=abc", 422),
            ("/api/v1/series/1.2.3", 404),
        ],
    )
    def test_hostile_parameters(self, api: Api, series_uid: str, url: str, status: int) -> None:
        response = api.client.get(url, headers=api.headers())
        assert response.status_code == status, response.text
        assert "detail" in response.json()


class TestNodes:
    def test_add_list_remove(self, api: Api) -> None:
        body = {"name": "pacs", "ae_title": "PACS", "host": "10.0.0.5", "port": 104}
        assert api.client.post("/api/v1/nodes", json=body, headers=api.headers()).status_code == 201
        assert api.client.post("/api/v1/nodes", json=body, headers=api.headers()).status_code == 409
        assert (
            api.client.get("/api/v1/nodes", headers=api.headers()).json()[0]["ae_title"] == "PACS"
        )
        bad = {**body, "name": "x", "ae_title": "BAD\\AE"}
        assert api.client.post("/api/v1/nodes", json=bad, headers=api.headers()).status_code == 400
        assert api.client.delete("/api/v1/nodes/pacs", headers=api.headers()).status_code == 204
        assert api.client.delete("/api/v1/nodes/pacs", headers=api.headers()).status_code == 404
