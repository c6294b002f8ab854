"""The model routes over HTTP, as an administrator and as a project member."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx

from tests.api.conftest import Api
from tests.models.builders import manifest_folder, nnunet_folder, zip_of


def _upload(api: Api, body: bytes, token: str | None = None, **params: str) -> httpx.Response:
    return api.client.post(
        "/api/v1/models",
        content=body,
        params=params,
        headers={**api.headers(token), "Content-Type": "application/zip"},
    )


class TestModelRoutes:
    def test_install_list_show_and_uninstall(self, api: Api, tmp_path: Path) -> None:
        body = zip_of(nnunet_folder(tmp_path), tmp_path / "m.zip").read_bytes()
        r = _upload(api, body, name="spheres", version="1")
        assert r.status_code == 201, r.text
        model = r.json()
        assert (model["name"], model["format"], model["labels"]["1"]["name"]) == (
            "spheres",
            "nnunetv2",
            "big",
        )
        listed = api.client.get("/api/v1/models", headers=api.headers(api.user_token)).json()
        assert [m["name"] for m in listed] == ["spheres"]
        shown = api.client.get("/api/v1/models/spheres/1", headers=api.headers(api.user_token))
        assert shown.json()["sha256"] == model["sha256"]
        assert "readme" in shown.json()
        gone = api.client.delete("/api/v1/models/spheres/1", headers=api.headers())
        assert gone.status_code == 204
        assert api.client.get("/api/v1/models", headers=api.headers()).json() == []

    def test_members_see_only_what_their_projects_may_use(self, api: Api, tmp_path: Path) -> None:
        api.kahu.projects.create("lung")
        api.kahu.models.install(manifest_folder(tmp_path))
        r = api.client.put(
            "/api/v1/models/liver/projects", json={"projects": ["lung"]}, headers=api.headers()
        )
        assert r.status_code == 200, r.text
        user = api.headers(api.user_token)  # alice is a scientist of "default" only
        assert api.client.get("/api/v1/models", headers=user).json() == []
        assert api.client.get("/api/v1/models/liver", headers=user).status_code == 404
        assert [m["name"] for m in api.client.get("/api/v1/models", headers=api.headers()).json()]

    def test_only_administrators_change_models(self, api: Api, tmp_path: Path) -> None:
        body = zip_of(manifest_folder(tmp_path), tmp_path / "m.zip").read_bytes()
        assert _upload(api, body, api.user_token).status_code == 403
        api.kahu.models.install(manifest_folder(tmp_path / "b"))
        user = api.headers(api.user_token)
        assert api.client.delete("/api/v1/models/liver/2.0", headers=user).status_code == 403
        assert api.client.get("/api/v1/models/liver/2.0/archive", headers=user).status_code == 403
        [refused, *_] = api.kahu.audit.query(action="model.install", limit=None)
        assert (refused.actor, refused.status) == ("alice", 403)
        assert [m.ref for m in api.kahu.models.all()] == ["liver@2.0"]

    def test_bad_uploads_leave_the_installed_models(self, api: Api, tmp_path: Path) -> None:
        api.kahu.models.install(manifest_folder(tmp_path))
        wrong_type = api.client.post(
            "/api/v1/models", content=b"{}", headers={**api.headers(), "Content-Type": "text/plain"}
        )
        assert wrong_type.status_code == 415
        corrupt = _upload(api, b"PK\x03\x04 not really")
        assert corrupt.status_code == 400
        assert "zip" in corrupt.json()["detail"]
        evil = io.BytesIO()
        with zipfile.ZipFile(evil, "w") as archive:
            archive.writestr("../../etc/cron.d/x", "* * * * * root true")
        assert _upload(api, evil.getvalue()).status_code == 400
        assert [m.ref for m in api.kahu.models.all()] == ["liver@2.0"]

    def test_download_and_the_catalog_round_trip(self, api: Api, tmp_path: Path) -> None:
        model = api.kahu.models.install(nnunet_folder(tmp_path))
        url = f"/api/v1/models/{model.name}/{model.version}"
        archive = api.client.get(f"{url}/archive", headers=api.headers())
        assert archive.headers["content-type"] == "application/zip"
        stored = api.client.post(f"{url}/to-catalog", json={}, headers=api.headers())
        assert stored.status_code == 201, stored.text
        series_uid = stored.json()["series_uid"]
        assert api.client.delete(url, headers=api.headers()).status_code == 204
        again = api.client.post(
            "/api/v1/models/from-series", json={"series_uid": series_uid}, headers=api.headers()
        )
        assert again.status_code == 201, again.text
        assert again.json()["sha256"] == model.sha256
        assert api.client.delete(url, headers=api.headers()).status_code == 204
        reinstalled = _upload(api, archive.content)
        assert reinstalled.json()["sha256"] == model.sha256
