"""Logging in and out, the header's project switcher, and the home page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from kahu.api.admin import _password_login, _start_session
from kahu.api.deps import KahuDep
from kahu.api.flow import pending_steps
from kahu.auth.sessions import CSRF_COOKIE, SESSION_COOKIE, csrf_ok
from kahu.errors import AuthenticationFailed, KahuError
from kahu.flow.states import RUN_ACTIVE
from kahu.search import aggregations as agg
from kahu.search.query import parse
from kahu.search.series import search_series
from kahu.web.admin import system_figures
from kahu.web.session import PROJECT_COOKIE, flash, page, safe_next, session

router = APIRouter(include_in_schema=False)


@router.post("/project")
def choose_project(
    request: Request,
    kahu: KahuDep,
    csrf: Annotated[str, Form(max_length=128)] = "",
    project: Annotated[str, Form(max_length=64)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """The header's project switcher: the lists show only ``project`` (empty: every one)."""
    s = session(request, kahu, change=csrf)
    response = RedirectResponse(safe_next(next), status_code=303)
    if not project:
        response.delete_cookie(PROJECT_COOKIE, samesite="strict")
        return response
    if project not in s.roles:
        return flash(safe_next(next), f"You are not a member of {project}.")
    response.set_cookie(
        PROJECT_COOKIE, project, httponly=True, samesite="strict",
        secure=kahu.settings.http.secure_cookies,
    )  # fmt: skip
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request, kahu: KahuDep, next: Annotated[str, Query(max_length=512)] = "/"
) -> Response:
    return page(
        request,
        "login.html",
        {"next": safe_next(next), "sso": kahu.oidc.enabled, "error": None, "username": ""},
    )


@router.post("/login", response_class=HTMLResponse)
def login_form(
    request: Request,
    kahu: KahuDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=512)] = "/",
) -> Response:
    context = {"next": safe_next(next), "sso": kahu.oidc.enabled, "username": username}
    try:
        if not username or not password:
            raise AuthenticationFailed("enter your user name and password")
        user = _password_login(kahu, request, username, password)
    except KahuError as exc:  # wrong password, too many attempts
        status = 429 if "too many" in str(exc).lower() else 401
        return page(request, "login.html", {**context, "error": str(exc)}, status)
    response = RedirectResponse(safe_next(next), status_code=303)
    _start_session(kahu, user, response)
    return response


@router.post("/logout")
def logout(
    request: Request, kahu: KahuDep, csrf: Annotated[str, Form(max_length=128)] = ""
) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret and csrf_ok(secret, csrf):
        kahu.accounts.revoke_secret(secret)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict")
    response.delete_cookie(CSRF_COOKIE, samesite="strict")
    return response


# -- home ----------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home(request: Request, kahu: KahuDep) -> Response:
    s = session(request, kahu)
    view = s.view or s.scope
    everything = parse("")
    # distinct patients, studies, series: the column index counts them in milliseconds (SQL
    # joins every series of the scope: a third of a second at 100,000 series)
    wanted: dict[str, agg.Facet] = {
        "patients": agg.Distinct("patients"),
        "studies": agg.Distinct("studies"),
        "series": agg.Distinct("series"),
    }
    _, distinct = agg.aggregate(kahu.catalog, view, everything, wanted, index=kahu.search_index)
    counts = {of: result.count for of, result in distinct.items()}
    recent, _ = search_series(kahu.catalog, view, everything, limit=10, index=kahu.search_index)
    running = kahu.runs.runs(states=RUN_ACTIVE, limit=10, projects=s.listed)
    failed = kahu.runs.runs(states=["failed"], limit=5, projects=s.listed)
    return page(
        request,
        "home.html",
        {"s": s, "counts": counts, "recent": recent, "running": running, "failed": failed,
         "page": "home",
         "pending": pending_steps(kahu, s.user),
         "system": system_figures(kahu) if s.user.is_admin else None},
    )  # fmt: skip
