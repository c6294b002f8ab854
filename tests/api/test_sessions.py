"""Browser sessions: the cookie's attributes, CSRF protection of changes, logout."""

from __future__ import annotations

from http.cookies import SimpleCookie

from tests.api.conftest import Api

PASSWORD = "correct horse battery"


def _login(api: Api) -> tuple[str, str, list[str]]:
    response = api.client.post(
        "/api/v1/auth/session", json={"username": "alice", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    headers = response.headers.get_list("set-cookie")
    cookies = SimpleCookie()
    for header in headers:
        cookies.load(header)
    assert response.json()["csrf_token"] == cookies["kahu_csrf"].value
    return cookies["kahu_session"].value, response.json()["csrf_token"], headers


def test_a_session_cookie_is_httponly_secure_and_strict(api: Api) -> None:
    _, _, headers = _login(api)
    [session] = [h for h in headers if h.startswith("kahu_session=")]
    attributes = {a.strip().lower() for a in session.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= attributes
    [csrf] = [h for h in headers if h.startswith("kahu_csrf=")]
    assert "httponly" not in csrf.lower()  # the page reads it to send the header


def test_changes_made_with_a_session_need_the_csrf_header(api: Api) -> None:
    client = api.client
    session, csrf, _ = _login(api)
    cookie = {"Cookie": f"kahu_session={session}"}
    me = client.get("/api/v1/me", headers=cookie)
    assert me.status_code == 200
    assert me.json()["name"] == "alice"
    body = {"name": "cohort", "series": [], "project": "default"}
    refused = client.post("/api/v1/datasets", json=body, headers=cookie)
    assert refused.status_code == 403
    assert "X-CSRF-Token" in refused.json()["detail"]
    wrong = client.post("/api/v1/datasets", json=body, headers={**cookie, "X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    # another session's token does not fit this one
    _, other_csrf, _ = _login(api)
    crossed = client.post(
        "/api/v1/datasets", json=body, headers={**cookie, "X-CSRF-Token": other_csrf}
    )
    assert crossed.status_code == 403
    assert api.kahu.curation.datasets() == []
    made = client.post("/api/v1/datasets", json=body, headers={**cookie, "X-CSRF-Token": csrf})
    assert made.status_code == 201, made.text
    # a bearer token needs no CSRF header: a browser never sends it by itself
    bearer = api.headers(api.user_token)
    assert client.delete("/api/v1/datasets/cohort", headers=bearer).status_code == 204


def test_logout_ends_the_session(api: Api) -> None:
    client = api.client
    session, csrf, _ = _login(api)
    cookie = {"Cookie": f"kahu_session={session}"}
    assert client.post("/api/v1/auth/logout", headers=cookie).status_code == 403  # no CSRF
    out = client.post("/api/v1/auth/logout", headers={**cookie, "X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert any(h.startswith("kahu_session=") for h in out.headers.get_list("set-cookie"))
    assert client.get("/api/v1/me", headers=cookie).status_code == 401
    sessions = [t for t in api.kahu.accounts.list_tokens("alice") if t.name == "session"]
    assert sessions[0].revoked_at is not None


def test_session_logins_are_throttled_and_audited(api: Api) -> None:
    client = api.client
    for _ in range(5):
        wrong = client.post("/api/v1/auth/session", json={"username": "alice", "password": "no"})
        assert wrong.status_code == 401
    blocked = client.post("/api/v1/auth/session", json={"username": "alice", "password": PASSWORD})
    assert blocked.status_code == 429
    statuses = [r.status for r in api.kahu.audit.query(actor="alice", action="login.")]
    assert statuses == [401] * 5 + [429]
