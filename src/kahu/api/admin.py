"""Account and node routes: users, tokens, login, DICOM nodes."""

from __future__ import annotations

import dataclasses
import html
import secrets
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse, StreamingResponse
from pydantic import BaseModel, Field

from kahu.actions import accounts as accounts_actions
from kahu.actions import nodes as nodes_actions
from kahu.api.deps import ActorDep, AdminUser, CurrentUser, KahuDep
from kahu.api.schemas import (
    LoginRequest,
    NodeCreate,
    NodePublic,
    PasswordChange,
    TokenCreate,
    TokenCreated,
    TokenPublic,
    UserCreate,
)
from kahu.auth.policy import readable_projects
from kahu.auth.sessions import CSRF_COOKIE, SESSION_COOKIE, csrf_token
from kahu.auth.throttle import TooManyAttempts
from kahu.auth.users import UserPublic
from kahu.core import Kahu
from kahu.dimse.nodes import Node
from kahu.errors import AuthenticationFailed, PermissionDenied

router = APIRouter(prefix="/api/v1")


def _password_login(kahu: Kahu, request: Request, username: str, password: str) -> UserPublic:
    """The user, or AuthenticationFailed / TooManyAttempts; every attempt is audited before
    the answer (failed attempts count against the name and the address: after 5 in 15
    minutes the next ones get 429 with Retry-After, even with the right password)."""
    client = request.client.host if request.client else ""
    keys = (f"user:{username}", f"address:{client}")
    path = f"POST {request.url.path}"

    def audit(status: int) -> None:
        action = "login" if status == 200 else "login.failed"
        kahu.audit.record(username, action, path=path, client=client, status=status)

    try:
        kahu.login_throttle.check(*keys)
    except TooManyAttempts:
        audit(429)
        raise
    try:
        user = kahu.accounts.authenticate_password(username, password)
    except AuthenticationFailed:
        kahu.login_throttle.failed(*keys)
        audit(401)
        raise
    kahu.login_throttle.succeeded(keys[0])
    audit(200)
    return user


@router.post(
    "/auth/login",
    response_model=TokenCreated,
    summary="Exchange a user name and password for an API token",
)
def login(body: LoginRequest, request: Request, kahu: KahuDep) -> TokenCreated:
    """Failed attempts are counted per user name and per client address: after 5 in 15
    minutes the next ones get 429 (with Retry-After), even with the right password."""
    user = _password_login(kahu, request, body.username, body.password)
    secret, token = kahu.accounts.create_token(
        user.name, name="login", expires_in=timedelta(days=body.expires_in_days)
    )
    return TokenCreated.of(secret, token)


class SessionLogin(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


@router.post(
    "/auth/session",
    summary="Log in a browser: a session cookie (HttpOnly, Secure, SameSite=Strict)",
    description="Answers the CSRF token that requests changing something must send as "
    "X-CSRF-Token (also readable in the kahu_csrf cookie). Throttled like /auth/login.",
)
def session_login(
    body: SessionLogin, request: Request, response: Response, kahu: KahuDep
) -> dict[str, Any]:
    user = _password_login(kahu, request, body.username, body.password)
    return _start_session(kahu, user, response)


def _start_session(kahu: Kahu, user: UserPublic, response: Response) -> dict[str, Any]:
    """A new session for ``user``: its cookies set on ``response``."""
    hours = kahu.settings.http.session_hours
    secret, token = kahu.accounts.create_token(
        user.name, name="session", expires_in=timedelta(hours=hours)
    )
    csrf = csrf_token(secret)
    secure, age = kahu.settings.http.secure_cookies, int(hours * 3600)
    response.set_cookie(
        SESSION_COOKIE, secret, max_age=age, httponly=True, secure=secure, samesite="strict"
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, max_age=age, httponly=False, secure=secure, samesite="strict"
    )
    return {"user": user.name, "csrf_token": csrf, "expires_at": token.expires_at}


OIDC_BROWSER = "kahu_oidc"
OIDC_PATH = "/api/v1/auth/oidc"


def _redirect_uri(kahu: Kahu, request: Request) -> str:
    configured = kahu.settings.oidc.redirect_url
    base = kahu.settings.http.public_url or str(request.base_url).rstrip("/")
    return configured or f"{base}{OIDC_PATH}/callback"


@router.get(
    "/auth/oidc/login",
    summary="Single sign-on: send the browser to the identity provider",
    response_class=RedirectResponse,
    status_code=302,
    responses={400: {"description": "single sign-on is not configured"}},
)
def oidc_login(
    request: Request, kahu: KahuDep, next: Annotated[str, Query(max_length=512)] = "/"
) -> RedirectResponse:
    browser = secrets.token_urlsafe(24)  # binds the sign-on to this browser
    url = kahu.oidc.start(_redirect_uri(kahu, request), browser, next)
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        OIDC_BROWSER, browser, max_age=600, path=OIDC_PATH, httponly=True,
        secure=kahu.settings.http.secure_cookies, samesite="lax",
    )  # fmt: skip
    return response


@router.get(
    "/auth/oidc/callback",
    summary="Single sign-on: where the identity provider sends the browser back",
    response_class=HTMLResponse,
)
def oidc_callback(
    request: Request,
    kahu: KahuDep,
    state: Annotated[str, Query(max_length=256)] = "",
    code: Annotated[str, Query(max_length=4096)] = "",
    error: Annotated[str | None, Query(max_length=256)] = None,
) -> HTMLResponse:
    client = request.client.host if request.client else ""
    path = f"GET {OIDC_PATH}/callback"
    try:
        if error is not None or not code:
            raise AuthenticationFailed(f"the identity provider answered: {error or 'no code'}")
        browser = request.cookies.get(OIDC_BROWSER, "")
        user, next_url = kahu.oidc.finish(_redirect_uri(kahu, request), browser, state, code)
    except AuthenticationFailed as exc:
        kahu.audit.record(
            "", "login.failed", path=path, client=client, status=401, detail={"reason": str(exc)}
        )
        raise
    kahu.audit.record(user.name, "login", path=path, client=client, status=200)
    # a page, not a redirect: the session cookie is SameSite=Strict, and a browser sends it
    # on the next request only if that one starts on this site
    target = html.escape(next_url, quote=True)
    response = HTMLResponse(
        f'<!doctype html><meta http-equiv="refresh" content="0;url={target}">'
        f'<p>Signed in as {html.escape(user.name)}. <a href="{target}">Continue</a></p>'
    )
    _start_session(kahu, user, response)
    response.delete_cookie(OIDC_BROWSER, path=OIDC_PATH)
    return response


@router.post("/auth/logout", status_code=204, summary="End the browser session")
def session_logout(request: Request, kahu: KahuDep, user: CurrentUser) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret is not None:
        kahu.accounts.revoke_secret(secret)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, samesite="strict")
    return response


@router.get("/me", response_model=UserPublic)
def me(user: CurrentUser) -> UserPublic:
    return user


@router.post("/me/password", status_code=204, summary="Change your password")
def change_password(body: PasswordChange, kahu: KahuDep, actor: ActorDep) -> Response:
    """The current password is asked again (a stolen token alone cannot change it); wrong
    guesses count like failed logins."""
    accounts_actions.set_password(
        kahu, actor, actor.user.name, body.new_password, current=body.current_password
    )
    return Response(status_code=204)


@router.get("/users", response_model=list[UserPublic])
def list_users(kahu: KahuDep, _admin: AdminUser) -> list[UserPublic]:
    return kahu.accounts.list_users()


@router.post("/users", response_model=UserPublic, status_code=201)
def create_user(body: UserCreate, kahu: KahuDep, actor: ActorDep) -> UserPublic:
    done = accounts_actions.create_user(kahu, actor, body.name, body.password, admin=body.is_admin)
    user: UserPublic = done.result
    return user


class UserChange(BaseModel):
    disabled: bool = Field(description="a disabled user's tokens and sessions stop working")


@router.patch("/users/{name}", status_code=204, summary="Disable or enable a user")
def change_user(name: str, body: UserChange, kahu: KahuDep, actor: ActorDep) -> Response:
    accounts_actions.set_disabled(kahu, actor, name, body.disabled)
    return Response(status_code=204)


@router.get("/tokens", response_model=list[TokenPublic], summary="API tokens")
def list_tokens(
    kahu: KahuDep,
    user: CurrentUser,
    of: Annotated[
        str | None,
        Query(max_length=64, description="administrators: this user's tokens, or * for all"),
    ] = None,
) -> list[TokenPublic]:
    """Your own tokens; administrators may list anyone's (``?of=NAME`` or ``?of=*``)."""
    if of is not None and of != user.name and not user.is_admin:
        raise PermissionDenied("administrators only")
    name = user.name if of is None else None if of == "*" else of
    return kahu.accounts.list_tokens(name)


@router.post("/tokens", response_model=TokenCreated, status_code=201)
def create_token(body: TokenCreate, kahu: KahuDep, actor: ActorDep) -> TokenCreated:
    expires = timedelta(days=body.expires_in_days) if body.expires_in_days else None
    done = accounts_actions.create_token(kahu, actor, actor.user.name, body.name, expires)
    secret, token = done.result
    return TokenCreated.of(secret, token)


@router.delete("/tokens/{token_id}", status_code=204)
def revoke_token(token_id: int, kahu: KahuDep, actor: ActorDep) -> Response:
    accounts_actions.revoke_token(kahu, actor, token_id)
    return Response(status_code=204)


@router.get(
    "/nodes",
    response_model=list[NodePublic],
    summary="DICOM nodes (to non-administrators: those of their projects)",
)
def list_nodes(kahu: KahuDep, user: CurrentUser) -> list[NodePublic]:
    nodes = kahu.nodes.list()
    readable = readable_projects(kahu.projects, user)
    if readable is not None:
        shown = set(readable)
        nodes = [
            dataclasses.replace(n, projects=tuple(p for p in n.projects if p in shown))
            for n in nodes
            if shown.intersection(n.projects)
        ]
    return [_node(n) for n in nodes]


def _node(n: Node) -> NodePublic:
    return NodePublic(
        name=n.name,
        ae_title=n.ae_title,
        host=n.host,
        port=n.port,
        description=n.description,
        projects=list(n.projects),
    )


@router.post("/nodes", response_model=NodePublic, status_code=201)
def add_node(body: NodeCreate, kahu: KahuDep, actor: ActorDep) -> NodePublic:
    fields = body.model_dump()
    fields["projects"] = tuple(body.projects)
    node: Node = nodes_actions.add_node(kahu, actor, Node(**fields)).result
    return _node(node)


@router.delete("/nodes/{name}", status_code=204)
def remove_node(name: str, kahu: KahuDep, actor: ActorDep) -> Response:
    nodes_actions.remove_node(kahu, actor, name)
    return Response(status_code=204)


class AuditFilters(BaseModel):
    """Filters of the audit log (every one given must match)."""

    actor: str | None = Field(default=None, max_length=128)
    action: str | None = Field(
        default=None, max_length=128, description="a name, or a prefix ending in '.': `run.`"
    )
    project: str | None = Field(default=None, max_length=128)
    series: str | None = Field(default=None, max_length=128, description="a UID it touched")
    since: datetime | None = None
    until: datetime | None = None


@router.get("/audit", summary="Audit records (administrators)")
def audit_records(
    kahu: KahuDep,
    _admin: AdminUser,
    filters: Annotated[AuditFilters, Query()],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    records = kahu.audit.query(**filters.model_dump(), limit=limit, offset=offset)
    return {"records": [r.public() for r in records], "limit": limit, "offset": offset}


@router.get(
    "/audit/export",
    summary="Audit records as JSON lines (administrators)",
    response_class=StreamingResponse,
)
def audit_export(
    kahu: KahuDep, _admin: AdminUser, filters: Annotated[AuditFilters, Query()]
) -> StreamingResponse:
    lines = kahu.audit.export(**filters.model_dump())
    return StreamingResponse(
        lines,
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="kahu-audit.jsonl"'},
    )
