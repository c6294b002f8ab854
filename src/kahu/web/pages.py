"""The web interface: server-rendered pages (Jinja2, every value escaped) that htmx updates
in place. A page works with its own routes and the caller's browser session (the cookie of
:mod:`kahu.auth.sessions`); what it shows comes from the same functions, under the same read
scope, as the JSON API. Pages without a session go to the login page.

The pages by area: :mod:`~kahu.web.account` (login, project switcher, home),
:mod:`~kahu.web.explore` (explore, datasets), :mod:`~kahu.web.flow` (workflows, runs, human
steps), :mod:`~kahu.web.series` (a series, the viewer), :mod:`~kahu.web.admin`,
:mod:`~kahu.web.federation`, :mod:`~kahu.web.models`; what they share is in
:mod:`~kahu.web.session`."""

from __future__ import annotations

from fastapi import APIRouter

from kahu.web import account, admin, explore, federation, flow, models, series
from kahu.web.session import STATIC, LoginRequired, login_redirect, session

__all__ = ["STATIC", "LoginRequired", "login_redirect", "router", "session"]

router = APIRouter(include_in_schema=False)
for area in (account, explore, flow, models, series, admin, federation):
    router.routes.extend(area.router.routes)  # the routes themselves: one flat page router
