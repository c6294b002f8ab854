"""Single sign-on end to end against a real OpenID Connect provider process
(tests/oidc_provider.py): the browser's redirects, the code exchange with PKCE, ID token
checks, group claims mapped to administrators and project roles, and the refusals."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from kahu.app import create_app
from kahu.core import Kahu
from kahu.errors import AuthenticationFailed
from tests.conftest import free_port, wait_for_port

CALLBACK = "https://testserver/api/v1/auth/oidc/callback"
SECRET = "provider-client-secret-for-tests"


@dataclass
class Provider:
    url: str
    config_path: Path

    def set_groups(self, user: str, groups: list[str]) -> None:
        config = json.loads(self.config_path.read_text())
        config["users"][user]["groups"] = groups
        self.config_path.write_text(json.dumps(config))


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    path = tmp_path_factory.mktemp("oidc") / "provider.json"
    path.write_text(
        json.dumps(
            {
                "issuer": url,
                "client_id": "kahu",
                "client_secret": SECRET,
                "redirect_uris": [CALLBACK],
                "users": {
                    "carol": {"password": "carol-password", "groups": ["radiology"]},
                    "dave": {"password": "dave-password", "groups": ["kahu-admins"]},
                },
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.oidc_provider", "--port", str(port), "--config", str(path)],
        cwd=Path(__file__).parents[2],
    )
    try:
        assert wait_for_port(port, 30), "the OIDC provider did not start"
        yield Provider(url, path)
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def sso(make_settings, provider: Provider) -> Iterator[tuple[TestClient, Kahu]]:  # type: ignore[no-untyped-def]
    settings = make_settings(enabled=False)
    settings.oidc.issuer = provider.url
    settings.oidc.client_id = "kahu"
    secret_file = settings.home / "oidc-secret"
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    secret_file.write_text(SECRET + "\n")
    settings.oidc.client_secret_file = secret_file
    settings.oidc.scopes = "openid profile groups"
    settings.oidc.admin_groups = ["kahu-admins"]
    settings.oidc.group_roles = {
        "radiology": ["default:scientist"],
        "cardiology": ["cardio:viewer"],
    }
    kahu = Kahu(settings)
    kahu.projects.create("cardio")
    with TestClient(create_app(settings, kahu), base_url="https://testserver") as client:
        yield client, kahu
    kahu.stop()


def _sign_on(client: TestClient, user: str, password: str) -> httpx.Response:
    """What a browser does: Kahu -> provider login form -> provider -> Kahu's callback."""
    start = client.get(
        "/api/v1/auth/oidc/login", params={"next": "/explore"}, follow_redirects=False
    )
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    query = parse_qs(urlparse(authorize).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) >= 43
    assert query["nonce"]
    assert query["state"]
    form = httpx.get(authorize)
    assert form.status_code == 200
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', form.text))
    fields = {k: v.replace("&amp;", "&") for k, v in fields.items()}
    answer = httpx.post(
        authorize.split("?")[0], data={**fields, "username": user, "password": password}
    )
    assert answer.status_code == 302, answer.text
    back = answer.headers["location"]
    assert back.startswith(CALLBACK)
    return client.get(back.removeprefix("https://testserver"), follow_redirects=False)


def test_sign_on_maps_groups_to_roles(sso: tuple[TestClient, Kahu], provider: Provider) -> None:
    client, kahu = sso
    provider.set_groups("carol", ["radiology"])
    done = _sign_on(client, "carol", "carol-password")
    assert done.status_code == 200, done.text
    assert 'url=/explore"' in done.text
    me = client.get("/api/v1/me")  # the session cookie the callback set
    assert me.status_code == 200
    assert me.json() == {**me.json(), "name": "carol", "is_admin": False}
    assert kahu.projects.roles_of("carol") == {"default": "scientist"}
    [login] = kahu.audit.query(action="login", actor="carol")
    assert login.path == "GET /api/v1/auth/oidc/callback"
    # the provider moves carol to cardiology: at the next sign-on her roles follow
    provider.set_groups("carol", ["cardiology"])
    client.cookies.clear()
    assert _sign_on(client, "carol", "carol-password").status_code == 200
    assert kahu.projects.roles_of("carol") == {"cardio": "viewer"}
    # no password login for a user made by sign-on
    assert (
        client.post(
            "/api/v1/auth/login", json={"username": "carol", "password": "carol-password"}
        ).status_code
        == 401
    )


def test_admin_groups_make_administrators(sso: tuple[TestClient, Kahu]) -> None:
    client, _ = sso
    assert _sign_on(client, "dave", "dave-password").status_code == 200
    assert client.get("/api/v1/me").json()["is_admin"] is True
    assert client.get("/api/v1/users").status_code == 200


def test_a_callback_that_does_not_belong_to_a_sign_on_is_refused(
    sso: tuple[TestClient, Kahu], provider: Provider
) -> None:
    client, kahu = sso
    # a forged state
    assert (
        client.get(
            "/api/v1/auth/oidc/callback", params={"state": "made-up", "code": "x"}
        ).status_code
        == 401
    )
    # a real sign-on whose callback arrives in another browser (no binding cookie)
    start = client.get("/api/v1/auth/oidc/login", follow_redirects=False)
    authorize = start.headers["location"]
    fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', httpx.get(authorize).text))
    answer = httpx.post(
        authorize.split("?")[0],
        data={**{k: v.replace("&amp;", "&") for k, v in fields.items()},
              "username": "carol", "password": "carol-password"},
    )  # fmt: skip
    back = answer.headers["location"].removeprefix("https://testserver")
    other = TestClient(client.app, base_url="https://testserver")
    refused = other.get(back)
    assert refused.status_code == 401
    assert "another browser" in refused.json()["detail"]
    # a refused callback spends its sign-on: the right browser cannot use it any more
    assert client.get(back).status_code == 401
    # nor can a callback that worked be used again
    done = _sign_on(client, "carol", "carol-password")
    assert done.status_code == 200
    assert client.get(str(done.request.url).removeprefix("https://testserver")).status_code == 401
    failures = kahu.audit.query(action="login.failed")
    assert len(failures) == 4


def test_id_tokens_are_checked(sso: tuple[TestClient, Kahu], provider: Provider) -> None:
    _, kahu = sso
    now = int(time.time())
    claims = {"iss": provider.url, "aud": "kahu", "iat": now, "exp": now + 60, "nonce": "n",
              "preferred_username": "mallory", "groups": ["kahu-admins"]}  # fmt: skip
    forger = RSAKey.generate_key(2048, parameters={"kid": "test-key"})
    forged = jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, forger)
    with pytest.raises(AuthenticationFailed, match="not valid"):
        kahu.oidc.verify(forged, "n")
    assert kahu.accounts.list_users() == [] or all(
        u.name != "mallory" for u in kahu.accounts.list_users()
    )


def test_sign_on_is_off_until_configured(api) -> None:  # type: ignore[no-untyped-def]
    refused = api.client.get("/api/v1/auth/oidc/login", follow_redirects=False)
    assert refused.status_code == 400
    assert "not configured" in refused.json()["detail"]
