"""What every page shares: the browser session (who, their roles, the project chosen in the
header, the CSRF value), the templates, and the answers a page gives (a page, a redirect with
a message, the login page)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from kahu.actions import Actor
from kahu.auth.policy import read_scope
from kahu.auth.sessions import CSRF_COOKIE, SESSION_COOKIE, csrf_ok
from kahu.auth.users import UserPublic
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.catalog.scope import SeriesScope
from kahu.core import Kahu
from kahu.errors import AuthenticationFailed, KahuError, PermissionDenied

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html


class LoginRequired(KahuError):
    """A page asked for without a session: the browser goes to the login page."""

    def __init__(self, next_url: str) -> None:
        super().__init__("login required")
        self.next_url = next_url


#: the cookie holding the project the header's switcher chose (absent: every project)
PROJECT_COOKIE = "kahu_project"


@dataclass(frozen=True, slots=True)
class Session:
    """The caller, their roles and the project chosen in the header. ``scope`` is everything
    they may read (a series page opened by link works whatever is chosen); ``view`` narrows it
    to the chosen project for the lists (home, explore, datasets, runs)."""

    user: UserPublic
    csrf: str
    scope: SeriesScope
    roles: dict[str, str]
    project: str | None = None
    view: SeriesScope | None = None

    @property
    def listed(self) -> list[str] | None:
        """The projects whose datasets and runs the lists show (None: every project)."""
        if self.project is not None:
            return [self.project]
        return None if self.user.is_admin else sorted(self.roles)

    @property
    def default_project(self) -> str:
        """The project a new dataset or run goes to unless the form says otherwise."""
        if self.project is not None:
            return self.project
        return DEFAULT_PROJECT if DEFAULT_PROJECT in self.roles else min(self.roles, default="")

    def can(self, project: str, needed: str) -> bool:
        """Whether the caller holds ``needed`` (or more) in ``project``."""
        order = ["viewer", "scientist", "manager", "admin"]
        role = self.roles.get(project)
        return role is not None and order.index(role) >= order.index(needed)

    def projects_where(self, needed: str) -> list[str]:
        return sorted(p for p in self.roles if self.can(p, needed))

    def actor(self, request: Request, path: str) -> Actor:
        """The caller as the actor of an action (:mod:`kahu.actions`) by the page ``path``
        ("POST /admin/user-add")."""
        return Actor(self.user, path=path, client=request.client.host if request.client else "")


def session(request: Request, kahu: Kahu, *, change: str | None = None) -> Session:
    """The caller's browser session, or LoginRequired; for a page that changes something,
    ``change`` is the form's CSRF value, which must fit the session."""
    secret = request.cookies.get(SESSION_COOKIE)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not secret:
        raise LoginRequired(target)
    try:
        user = kahu.accounts.authenticate_token(secret)
    except AuthenticationFailed as exc:
        raise LoginRequired(target) from exc
    if change is not None and not csrf_ok(secret, change):
        raise PermissionDenied("this form is stale or not from Kahu: reload the page")
    roles = (
        {p.name: "admin" for p in kahu.projects.all()}
        if user.is_admin
        else kahu.projects.roles_of(user.name)
    )
    scope = read_scope(kahu.projects, user)
    chosen = request.cookies.get(PROJECT_COOKIE)
    if chosen not in roles:  # none chosen, or no longer a member: every project
        return Session(user, request.cookies.get(CSRF_COOKIE, ""), scope, roles, None, scope)
    view = scope.narrowed({kahu.projects.pk(chosen)})
    return Session(user, request.cookies.get(CSRF_COOKIE, ""), scope, roles, chosen, view)


def login_redirect(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(f"/login?{urlencode({'next': exc.next_url})}", status_code=303)


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return templates.TemplateResponse(request, name, context, status_code=status)


def safe_next(url: str) -> str:
    return url if url.startswith("/") and not url.startswith("//") else "/"


def flash(url: str, message: str) -> RedirectResponse:
    """Back to ``url`` with a message the next page shows."""
    sep = "&" if "?" in url else "?"
    return RedirectResponse(f"{url}{sep}{urlencode({'msg': message})}", status_code=303)
