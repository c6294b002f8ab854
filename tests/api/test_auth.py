"""Every endpoint but /health needs a token; tokens expire and can be revoked."""

from __future__ import annotations

import re
import stat
from datetime import timedelta

import pytest

from kahu.api.federation import PEER_ROUTES, SIGNATURE_SCHEME
from tests.api.conftest import Api

#: the routes that sign in (each refuses without credentials, by its own answer)
PUBLIC = {
    ("/health", "get"),
    ("/api/v1/auth/login", "post"),
    ("/api/v1/auth/session", "post"),
    ("/api/v1/auth/oidc/login", "get"),
    ("/api/v1/auth/oidc/callback", "get"),
}


def _routes(api: Api) -> list[tuple[str, str]]:
    schema = api.client.get("/openapi.json", headers=api.headers()).json()
    return [(path, method) for path, ops in schema["paths"].items() for method in ops]


class TestAuthentication:
    def test_every_route_but_health_and_login_refuses_anonymous_callers(self, api: Api) -> None:
        routes = _routes(api)
        assert len(routes) > 10
        for path, method in routes:
            if (path, method) in PUBLIC:
                continue
            url = re.sub(r"\{[^}]+\}", "1.2.3", path)
            response = api.client.request(method.upper(), url)
            assert response.status_code == 401, (method, path, response.text)
            signed = path.removeprefix("/api/v1/federation") in PEER_ROUTES
            assert response.headers.get("www-authenticate") == (
                SIGNATURE_SCHEME if signed else "Bearer"
            )
            response = api.client.request(
                method.upper(), url, headers={"Authorization": "Bearer kahu_forged"}
            )
            assert response.status_code == 401, (method, path)

    def test_health_is_open(self, api: Api) -> None:
        assert api.client.get("/health").json() == {"status": "ok"}

    def test_admin_password_file_is_private(self, api: Api) -> None:
        path = api.kahu.settings.admin_password_file
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip() == api.admin_password

    def test_ensure_admin_runs_once(self, api: Api) -> None:
        assert api.kahu.accounts.ensure_admin(api.kahu.settings.admin_password_file) is None

    def test_login_gives_a_working_token(self, api: Api) -> None:
        response = api.client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": api.admin_password}
        )
        assert response.status_code == 200
        token = response.json()["token"]
        assert api.client.get("/api/v1/me", headers=api.headers(token)).json()["name"] == "admin"

    @pytest.mark.parametrize(
        ("user", "password"), [("admin", "wrong password"), ("nobody", "whatever it is")]
    )
    def test_bad_login_is_401(self, api: Api, user: str, password: str) -> None:
        response = api.client.post(
            "/api/v1/auth/login", json={"username": user, "password": password}
        )
        assert response.status_code == 401
        assert response.json()["detail"] == "wrong user name or password"

    def test_tokens_are_stored_hashed(self, api: Api) -> None:
        from sqlalchemy import select

        from kahu.auth.tables import ApiToken

        with api.kahu.db.read() as s:
            hashes = list(s.scalars(select(ApiToken.token_hash)))
        assert api.admin_token not in hashes
        assert all(len(h) == 64 for h in hashes)

    def test_revoked_token_stops_working(self, api: Api) -> None:
        created = api.client.post("/api/v1/tokens", json={"name": "ci"}, headers=api.headers())
        token, token_id = created.json()["token"], created.json()["id"]
        assert api.client.get("/api/v1/me", headers=api.headers(token)).status_code == 200
        assert (
            api.client.delete(f"/api/v1/tokens/{token_id}", headers=api.headers()).status_code
            == 204
        )
        response = api.client.get("/api/v1/me", headers=api.headers(token))
        assert response.status_code == 401
        assert response.json()["detail"] == "token revoked"

    def test_expired_token_stops_working(self, api: Api) -> None:
        token, _ = api.kahu.accounts.create_token("alice", expires_in=timedelta(seconds=-1))
        response = api.client.get("/api/v1/me", headers=api.headers(token))
        assert response.status_code == 401
        assert response.json()["detail"] == "token expired"

    def test_disabled_user_is_locked_out(self, api: Api) -> None:
        api.kahu.accounts.set_disabled("alice", True)
        assert api.client.get("/api/v1/me", headers=api.headers(api.user_token)).status_code == 401

    def test_users_cannot_revoke_each_others_tokens(self, api: Api) -> None:
        [admin_token] = api.kahu.accounts.list_tokens("admin")
        response = api.client.delete(
            f"/api/v1/tokens/{admin_token.id}", headers=api.headers(api.user_token)
        )
        assert response.status_code == 404


class TestRoles:
    @pytest.mark.parametrize(
        ("method", "path", "body"),
        [
            ("GET", "/api/v1/users", None),
            ("POST", "/api/v1/users", {"name": "eve", "password": "x" * 12}),
            ("DELETE", "/api/v1/series/1.2.3", None),
            ("POST", "/api/v1/nodes", {"name": "n", "ae_title": "N", "host": "h", "port": 104}),
        ],
    )
    def test_admin_routes_refuse_users(
        self, api: Api, method: str, path: str, body: object
    ) -> None:
        response = api.client.request(method, path, json=body, headers=api.headers(api.user_token))
        assert response.status_code == 403

    def test_short_passwords_are_refused(self, api: Api) -> None:
        response = api.client.post(
            "/api/v1/users", json={"name": "bob", "password": "short"}, headers=api.headers()
        )
        assert response.status_code == 422


class TestLoginThrottle:
    def _login(self, api: Api, user: str, password: str) -> int:
        response = api.client.post(
            "/api/v1/auth/login", json={"username": user, "password": password}
        )
        return response.status_code

    def test_repeated_failures_lock_the_name_for_a_while(self, api: Api) -> None:
        assert [self._login(api, "admin", "wrong password") for _ in range(5)] == [401] * 5
        response = api.client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": api.admin_password}
        )
        assert response.status_code == 429  # even with the right password
        assert 0 < int(response.headers["retry-after"]) <= 900
        assert self._login(api, "alice", "correct horse battery") == 200  # others go on

    def test_the_window_passes_and_a_good_login_clears_the_count(self) -> None:
        from kahu.auth.throttle import LoginThrottle, TooManyAttempts

        now = [0.0]
        throttle = LoginThrottle({"user": 2, "address": 3}, window_s=60, clock=lambda: now[0])
        throttle.failed("user:a", "address:x")
        throttle.succeeded("user:a")
        throttle.failed("user:a", "address:x")
        throttle.check("user:a", "address:x")  # one failure since the good login
        throttle.failed("user:a", "address:x")
        with pytest.raises(TooManyAttempts) as caught:
            throttle.check("user:a", "address:x")  # the address has 3
        assert caught.value.retry_after == 61
        with pytest.raises(TooManyAttempts):
            throttle.check("user:b", "address:x")  # the same address, another name
        now[0] = 61
        throttle.check("user:a", "address:x")


class TestPasswordChange:
    def test_users_change_their_password_knowing_the_current_one(self, api: Api) -> None:
        alice = api.headers(api.user_token)
        wrong = {"current_password": "not it at all", "new_password": "a new long password"}
        assert api.client.post("/api/v1/me/password", json=wrong, headers=alice).status_code == 403
        short = {"current_password": "correct horse battery", "new_password": "short"}
        assert api.client.post("/api/v1/me/password", json=short, headers=alice).status_code == 400
        good = {"current_password": "correct horse battery", "new_password": "a new long password"}
        assert api.client.post("/api/v1/me/password", json=good, headers=alice).status_code == 204
        login = {"username": "alice", "password": "a new long password"}
        assert api.client.post("/api/v1/auth/login", json=login).status_code == 200
        old = {"username": "alice", "password": "correct horse battery"}
        assert api.client.post("/api/v1/auth/login", json=old).status_code == 401


class TestTokenListing:
    def test_administrators_see_every_token_users_their_own(self, api: Api) -> None:
        alice = api.headers(api.user_token)
        own = api.client.get("/api/v1/tokens", headers=alice).json()
        assert {t["user"] for t in own} == {"alice"}
        assert api.client.get("/api/v1/tokens?of=admin", headers=alice).status_code == 403
        assert api.client.get("/api/v1/tokens?of=*", headers=alice).status_code == 403
        every = api.client.get("/api/v1/tokens?of=*", headers=api.headers()).json()
        assert {t["user"] for t in every} == {"admin", "alice"}
        hers = api.client.get("/api/v1/tokens?of=alice", headers=api.headers()).json()
        assert [t["id"] for t in hers] == [t["id"] for t in own]
        assert all("token" not in t for t in every)  # only prefixes, never the secret
