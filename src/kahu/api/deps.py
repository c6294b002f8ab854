"""FastAPI dependencies: the Kahu instance and the authenticated caller."""

from __future__ import annotations

import contextlib
import json
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from kahu.actions import Actor
from kahu.audit import ROUTES, UID_PARAMETERS, audited_route
from kahu.auth.policy import read_scope
from kahu.auth.sessions import CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, csrf_ok
from kahu.auth.users import UserPublic
from kahu.catalog.scope import SeriesScope
from kahu.core import Kahu
from kahu.errors import AuthenticationFailed, PermissionDenied

_bearer = HTTPBearer(auto_error=False, description="API token from `kahu tokens create`")


def get_kahu(request: Request) -> Kahu:
    kahu: Kahu = request.app.state.kahu
    return kahu


KahuDep = Annotated[Kahu, Depends(get_kahu)]


def current_user(
    kahu: KahuDep,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> UserPublic:
    """The caller, from their bearer token or browser session cookie (a session's changes
    need the CSRF header: :mod:`kahu.auth.sessions`); an audited route
    (:data:`kahu.audit.ROUTES`) is recorded here, before it runs (a middleware fills in its
    status)."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        secret = credentials.credentials
    elif (cookie := request.cookies.get(SESSION_COOKIE)) is not None:
        secret = cookie
        if request.method not in SAFE_METHODS and not csrf_ok(
            secret, request.headers.get(CSRF_HEADER)
        ):
            raise PermissionDenied(
                f"a change made with a session cookie needs the {CSRF_HEADER} header"
            )
    else:
        raise AuthenticationFailed(
            "authentication required: send 'Authorization: Bearer <token>' or log in"
        )
    user, token_id, fresh = kahu.accounts.token_use(secret)
    request.state.token_id = token_id
    client = request.client.host if request.client else ""
    template = _template(request)
    if fresh:
        kahu.audit.record(
            user.name, "token.use", path=f"{request.method} {template}", client=client,
            token_id=token_id, status=200,
        )  # fmt: skip
    action = ROUTES.get((request.method, template))
    if action is not None and getattr(request.state, "audit_id", None) is None:
        params = request.path_params
        request.state.audit_id = kahu.audit.record(
            user.name,
            action,
            path=f"{request.method} {template}",
            client=client,
            token_id=token_id,
            project=request.query_params.get("project")
            or (params.get("name") if template.startswith("/api/v1/projects/") else None),
            series=[str(params[p]) for p in UID_PARAMETERS if p in params],
            detail=_detail(request),
        )
    return user


def _template(request: Request) -> str:
    """The route's path template ("/dicomweb/studies/{study}") when audited, else the
    request's path."""
    found = audited_route(request.method, request.url.path)
    return found[0] if found else request.url.path


def _detail(request: Request) -> dict[str, Any]:
    """What the request asked: its query parameters and, for a small JSON body (read by
    FastAPI already), its fields (passwords left out)."""
    detail: dict[str, Any] = {}
    params = {k: v for k, v in request.query_params.items() if k != "access_token"}
    if params:
        detail["params"] = params
    others = {k: v for k, v in request.path_params.items() if k not in UID_PARAMETERS}
    if others:
        detail["path"] = others
    body = getattr(request, "_body", None)  # cached by FastAPI for routes with a body model
    if isinstance(body, bytes) and 0 < len(body) <= 65536:
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                detail["body"] = {k: v for k, v in parsed.items() if "password" not in k}
    return detail


CurrentUser = Annotated[UserPublic, Depends(current_user)]


def admin_user(user: CurrentUser) -> UserPublic:
    if not user.is_admin:
        raise PermissionDenied("administrators only")
    return user


AdminUser = Annotated[UserPublic, Depends(admin_user)]


def actor_of(request: Request, user: CurrentUser) -> Actor:
    """The caller as the actor of an action (:mod:`kahu.actions`): who, by which route,
    from where, with which token."""
    route = request.scope.get("route")
    template = getattr(route, "path", request.url.path)
    return Actor(
        user,
        path=f"{request.method} {template}",
        client=request.client.host if request.client else "",
        token_id=getattr(request.state, "token_id", None),
    )


#: The caller of an action route; the action checks the policy and writes the audit record.
ActorDep = Annotated[Actor, Depends(actor_of)]


def read_scope_of(kahu: KahuDep, user: CurrentUser) -> SeriesScope:
    return read_scope(kahu.projects, user)


#: The series the caller may read (:class:`kahu.auth.policy.SeriesScope`).
Scope = Annotated[SeriesScope, Depends(read_scope_of)]
