"""The web interface: server-rendered pages (Jinja2, every value escaped) that htmx updates
in place. A page works with its own routes and the caller's browser session (the cookie of
:mod:`kahu.auth.sessions`); what it shows comes from the same functions, under the same read
scope, as the JSON API. Pages without a session go to the login page."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from kahu.api.admin import _password_login, _start_session
from kahu.api.deps import KahuDep
from kahu.api.flow import pending_steps
from kahu.api.search import hidden_datasets
from kahu.auth.policy import (
    EVERYTHING,
    read_scope,
    readable_projects,
    require_in_project,
    require_role,
)
from kahu.auth.sessions import CSRF_COOKIE, SESSION_COOKIE, csrf_ok
from kahu.auth.users import UserPublic
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.catalog.scope import SeriesScope
from kahu.core import Kahu
from kahu.dimse.nodes import Node
from kahu.errors import (
    AuthenticationFailed,
    InvalidInput,
    InvalidParameters,
    KahuError,
    NotFound,
    PermissionDenied,
)
from kahu.flow.cohort import RunInput
from kahu.flow.launch import launch
from kahu.flow.states import RUN_ACTIVE, TASK_DONE
from kahu.search import aggregations as agg
from kahu.search.columns import INDEXED_FIELDS
from kahu.search.query import MAX_LENGTH, parse
from kahu.search.series import search_series

HERE = Path(__file__).parent
STATIC = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes .html

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
FACET_SIZE = 8  # values a facet shows; "more values" shows up to FACET_MORE
FACET_MORE = 100
#: facets of the explore page: (field, title)
FACETS = [
    ("Modality", "Modality"),
    ("BodyPartExamined", "Body part"),
    ("Manufacturer", "Manufacturer"),
    ("PatientSex", "Sex"),
    ("dataset", "Dataset"),
    ("tags", "Tags"),
]
#: fields the query bar suggests (values come from /api/v1/fields/{name}/values)
SUGGESTED_FIELDS = sorted(
    {*INDEXED_FIELDS, "dataset", "tags", "received_at", "instance_count", "PatientName"},
    key=str.lower,
)
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: a range filter (what an age bar adds): written into the query as it is, not quoted
_RANGE = re.compile(r"^\[(\d{1,4}(\.\d{1,3})?) TO (\d{1,4}(\.\d{1,3})?)\}$")
AGE_BIN = 10  # years per bar of the age chart


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
    response = RedirectResponse(_next(next), status_code=303)
    if not project:
        response.delete_cookie(PROJECT_COOKIE, samesite="strict")
        return response
    if project not in s.roles:
        return _flash(_next(next), f"You are not a member of {project}.")
    response.set_cookie(
        PROJECT_COOKIE, project, httponly=True, samesite="strict",
        secure=kahu.settings.http.secure_cookies,
    )  # fmt: skip
    return response


def login_redirect(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return RedirectResponse(f"/login?{urlencode({'next': exc.next_url})}", status_code=303)


def _page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    return templates.TemplateResponse(request, name, context, status_code=status)


# -- login ---------------------------------------------------------------------------------------


def _next(url: str) -> str:
    return url if url.startswith("/") and not url.startswith("//") else "/"


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request, kahu: KahuDep, next: Annotated[str, Query(max_length=512)] = "/"
) -> Response:
    return _page(
        request,
        "login.html",
        {"next": _next(next), "sso": kahu.oidc.enabled, "error": None, "username": ""},
    )


@router.post("/login", response_class=HTMLResponse)
def login_form(
    request: Request,
    kahu: KahuDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=512)] = "/",
) -> Response:
    context = {"next": _next(next), "sso": kahu.oidc.enabled, "username": username}
    try:
        if not username or not password:
            raise AuthenticationFailed("enter your user name and password")
        user = _password_login(kahu, request, username, password)
    except KahuError as exc:  # wrong password, too many attempts
        status = 429 if "too many" in str(exc).lower() else 401
        return _page(request, "login.html", {**context, "error": str(exc)}, status)
    response = RedirectResponse(_next(next), status_code=303)
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
    return _page(
        request,
        "home.html",
        {"s": s, "counts": counts, "recent": recent, "running": running, "failed": failed,
         "page": "home",
         "pending": pending_steps(kahu, s.user),
         "system": _system(kahu) if s.user.is_admin else None},
    )  # fmt: skip


# -- explore -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Filter:
    field: str
    value: str
    exclude: bool

    @property
    def clause(self) -> str:
        if _RANGE.match(self.value):
            text = self.value
        else:
            text = '"' + self.value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return ("NOT " if self.exclude else "") + f"{self.field}:{text}"

    @property
    def label(self) -> str:
        """What its chip says."""
        found = _RANGE.match(self.value)
        if found and self.field == "PatientAge":
            low, high = float(found.group(1)), float(found.group(3))
            return f"age {low:g} to under {high:g}"
        return f"{self.field}: {self.value}"

    @property
    def param(self) -> str:
        return f"{'-' if self.exclude else ''}{self.field}={self.value}"


def _filters(raw: list[str]) -> list[Filter]:
    """``f=Field=value`` include, ``f=-Field=value`` exclude (what a facet click adds)."""
    out = []
    for item in raw[:20]:
        exclude = item.startswith("-")
        name, sep, value = item.removeprefix("-").partition("=")
        if not sep or not _FIELD.match(name):
            raise InvalidInput(f"a filter is Field=value, not {item!r}")
        out.append(Filter(name, value, exclude))
    return out


def _query(q: str, filters: list[Filter]) -> str:
    parts = [f"({q})"] if q.strip() else []
    parts += [f.clause for f in filters]
    return " AND ".join(parts)


def _link(
    q: str, filters: list[Filter], offset: int = 0, view: str = "table", more: str = ""
) -> str:
    params: list[tuple[str, str]] = [("q", q)] if q else []
    params += [("f", f.param) for f in filters]
    if offset:
        params.append(("offset", str(offset)))
    if view == "gallery":
        params.append(("view", "gallery"))
    if more:
        params.append(("more", more))
    return "/explore" + ("?" + urlencode(params, quote_via=quote) if params else "")


@dataclass(frozen=True, slots=True)
class Bars:
    """A bar chart facet (study years, ages): each bar's label, the filter value a click
    adds, its count and its length in percent of the longest."""

    title: str
    field: str
    rows: list[tuple[str, str, int, int]]

    @classmethod
    def of(cls, title: str, field: str, bars: list[tuple[str, str, int]]) -> Bars:
        most = max((count for _, _, count in bars), default=1)
        return cls(title, field, [(a, v, n, round(100 * n / most)) for a, v, n in bars])


@router.get("/explore", response_class=HTMLResponse)
def explore(
    request: Request,
    kahu: KahuDep,
    q: Annotated[str, Query(max_length=MAX_LENGTH)] = "",
    f: Annotated[list[str] | None, Query(max_length=20)] = None,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    msg: Annotated[str, Query(max_length=500)] = "",
    view: Annotated[str, Query(max_length=16)] = "table",
    more: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    s = session(request, kahu)
    error = None
    filters: list[Filter] = []
    rows: list[Any] = []
    total = 0
    facets: dict[str, Any] = {}
    bars: list[Bars] = []
    try:
        filters = _filters(f or [])
        readable = s.view or s.scope
        node = parse(_query(q, filters))
        kahu.audit.record(
            s.user.name, "search", path="GET /explore",
            client=request.client.host if request.client else "",
            detail={"params": {"q": q, "f": [x.param for x in filters]}},
            status=200,
        )  # fmt: skip
        rows, total = search_series(
            kahu.catalog, readable, node, limit=PAGE_SIZE, offset=offset, index=kahu.search_index
        )
        wanted: dict[str, agg.Facet] = {
            name: agg.Terms(name, FACET_MORE if name == more else FACET_SIZE) for name, _ in FACETS
        }
        wanted["years"] = agg.DateHistogram("StudyDate", "year")
        wanted["ages"] = agg.Histogram("PatientAge", AGE_BIN)
        _, results = agg.aggregate(kahu.catalog, readable, node, wanted, index=kahu.search_index)
        hidden = hidden_datasets(kahu, s.user)
        years = results["years"].buckets[-15:]  # the latest fifteen years with series
        bars = [
            Bars.of("Study year", "StudyDate", [(str(b.key), str(b.key), b.count) for b in years]),
            Bars.of("Age (years)", "PatientAge", [
                (f"{b.key:g}–{b.key + AGE_BIN - 1:g}", f"[{b.key:g} TO {b.key + AGE_BIN:g}}}",
                 b.count) for b in results["ages"].buckets
            ]),
        ]  # fmt: skip
        for name, title in FACETS:
            buckets = [
                b for b in results[name].buckets if not (name == "dataset" and b.key in hidden)
            ]
            facets[name] = {
                "title": title, "buckets": buckets, "expanded": name == more,
                "more": name != more and len(results[name].buckets) == FACET_SIZE,
            }  # fmt: skip
    except InvalidInput as exc:
        error = str(exc)
    context = {
        "s": s,
        "page": "explore",
        "bars": [b for b in bars if b.rows],
        "view": "gallery" if view == "gallery" else "table",
        "suggest": SUGGESTED_FIELDS,
        "q": q,
        "filters": filters,
        "rows": rows,
        "total": total,
        "offset": offset,
        "facets": facets,
        "error": error,
        "link": lambda fs, offset=0, view=view, more="": _link(q, fs, offset, view, more),
        "Filter": Filter,
        "page_size": PAGE_SIZE,
        "msg": msg,
        # datasets of other projects are not named (a series may be in one of them too)
        "visible": None
        if s.user.is_admin
        else kahu.curation.names(readable_projects(kahu.projects, s.user)),
        # lists the selection can join: not query datasets, in projects the caller curates
        "lists": [
            d for d in kahu.curation.datasets(s.listed)
            if d.kind != "query" and s.can(d.project, "scientist")
        ],
    }  # fmt: skip
    return _page(request, "explore.html", context, 400 if error else 200)


# -- datasets ------------------------------------------------------------------------------------


def _flash(url: str, message: str) -> RedirectResponse:
    """Back to ``url`` with a message the next page shows."""
    sep = "&" if "?" in url else "?"
    return RedirectResponse(f"{url}{sep}{urlencode({'msg': message})}", status_code=303)


@router.post("/datasets")
def save_dataset(
    request: Request,
    kahu: KahuDep,
    csrf: Annotated[str, Form(max_length=128)] = "",
    name: Annotated[str, Form(max_length=64)] = "",
    project: Annotated[str, Form(max_length=64)] = DEFAULT_PROJECT,
    q: Annotated[str, Form(max_length=MAX_LENGTH)] = "",
    f: Annotated[list[str] | None, Form()] = None,
    series: Annotated[list[str] | None, Form()] = None,
    what: Annotated[str, Form(max_length=16)] = "query",
    into: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """From Explore: the query (a dataset that follows it) or the selected series as a new
    dataset, or (``what=add``) the selected series added to the dataset ``into``."""
    s = session(request, kahu, change=csrf)
    filters = _filters(f or [])
    back = _link(q, filters)
    if what == "add":
        try:
            if not series:
                raise InvalidInput("select series first (the boxes in the first column)")
            info = kahu.curation.dataset(into)
            named = f"dataset {into!r}"
            require_in_project(kahu.projects, s.user, info.project, "scientist", named)
            kahu.audit.record(
                s.user.name, "dataset.change", path="POST /datasets", project=info.project,
                series=series[:10_000], detail={"name": into, "what": "add"}, status=200,
            )  # fmt: skip
            count = kahu.curation.add_series(into, series[:10_000]).series_count
        except KahuError as exc:
            return _flash(back, f"Nothing was added: {exc}")
        return _flash(back, f"Added to {into}: it holds {count} series now.")
    try:
        require_role(kahu.projects, s.user, project, "scientist")
        if what == "selected":
            if not series:
                raise InvalidInput("select series first (the boxes in the first column)")
            kahu.curation.create_dataset(name, series=series[:10_000], project=project)
        else:
            kahu.curation.create_dataset(name, query=_query(q, filters) or "*", project=project)
    except KahuError as exc:
        return _flash(back, f"The dataset was not made: {exc}")
    kahu.audit.record(
        s.user.name, "dataset.create", path="POST /datasets", project=project,
        series=list(series or []) if what == "selected" else [],
        detail={"name": name, "what": what}, status=201,
    )  # fmt: skip
    return _flash(back, f"Dataset {name} saved.")


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(
    request: Request, kahu: KahuDep, msg: Annotated[str, Query(max_length=500)] = ""
) -> Response:
    s = session(request, kahu)
    datasets = kahu.curation.datasets(s.listed)
    return _page(
        request, "datasets.html", {"s": s, "page": "datasets", "datasets": datasets, "msg": msg}
    )


@router.post("/datasets/{name}/{action}")
def change_dataset(
    request: Request,
    kahu: KahuDep,
    name: str,
    action: str,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    s = session(request, kahu, change=csrf)
    try:
        info = kahu.curation.dataset(name)
        require_in_project(kahu.projects, s.user, info.project, "scientist", f"dataset {name!r}")
        if action == "freeze":
            kahu.curation.freeze(name)
            message = f"Dataset {name} frozen: its series no longer change."
        elif action == "delete":
            kahu.audit.record(
                s.user.name, "dataset.delete", path="POST /datasets/{name}/delete",
                project=info.project, detail={"name": name}, status=204,
            )  # fmt: skip
            kahu.curation.delete_dataset(name)
            message = f"Dataset {name} deleted (its series stay)."
        else:
            raise InvalidInput(f"no action {action!r}")
    except KahuError as exc:
        message = f"Nothing changed: {exc}"
    return _flash("/datasets", message)


# -- workflows and runs --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One parameter of a launch form, from the workflow's JSON Schema."""

    name: str
    kind: str  # boolean, integer, number, string, enum
    label: str
    help: str
    default: Any
    required: bool
    choices: list[Any]
    minimum: Any
    maximum: Any


def _fields(schema: Mapping[str, Any]) -> list[Field]:
    required = set(schema.get("required", []))
    out = []
    for name, spec in schema.get("properties", {}).items():
        kind = "enum" if "enum" in spec else str(spec.get("type", "string"))
        if kind not in ("boolean", "integer", "number", "string", "enum"):
            kind = "string"
        out.append(
            Field(
                name,
                kind,
                str(spec.get("title") or name),
                str(spec.get("description", "")),
                spec.get("default"),
                name in required,
                list(spec.get("enum", [])),
                spec.get("minimum"),
                spec.get("maximum"),
            )
        )
    return out


def _typed(fields: list[Field], form: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The form's values in the schema's types (and the fields that are not numbers)."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        raw = form.get(f"param.{f.name}")
        if f.kind == "boolean":
            values[f.name] = raw == "on"
            continue
        if raw is None or raw == "":
            continue
        if f.kind in ("integer", "number"):
            try:
                values[f.name] = int(raw) if f.kind == "integer" else float(raw)
            except ValueError:
                errors[f.name] = (
                    f"{raw!r} is not {'a whole number' if f.kind == 'integer' else 'a number'}"
                )
        elif f.kind == "enum":
            match = [c for c in f.choices if str(c) == raw]
            values[f.name] = match[0] if match else raw
        else:
            values[f.name] = str(raw)
    return values, errors


@router.get("/workflows", response_class=HTMLResponse)
def workflows_page(request: Request, kahu: KahuDep) -> Response:
    s = session(request, kahu)
    return _page(
        request,
        "workflows.html",
        {
            "s": s,
            "page": "workflows",
            "workflows": kahu.workflows.all(),
            "problems": kahu.workflows.errors,
        },
    )


def _launch_context(kahu: Kahu, s: Session, name: str) -> dict[str, Any]:
    workflow = kahu.workflows.get(name)
    return {
        "s": s,
        "page": "workflows",
        "workflow": workflow,
        "fields": _fields(workflow.parameters),
        "datasets": kahu.curation.datasets(s.listed),
        "projects": s.projects_where("scientist"),
        "values": {},
        "errors": {},
        "cohort": {"dataset": "", "query": "", "limit": "", "project": s.default_project},
        "error": None,
    }


@router.get("/workflows/{name}", response_class=HTMLResponse)
def launch_page(
    request: Request, kahu: KahuDep, name: str, dataset: Annotated[str, Query(max_length=64)] = ""
) -> Response:
    s = session(request, kahu)
    context = _launch_context(kahu, s, name)
    context["cohort"]["dataset"] = dataset
    return _page(request, "launch.html", context)


@router.post("/workflows/{name}", response_class=HTMLResponse)
async def launch_form(request: Request, kahu: KahuDep, name: str) -> Response:
    form = await request.form()
    fields_in = {k: v for k, v in form.items() if isinstance(v, str)}
    return await run_in_threadpool(_launch, request, kahu, name, fields_in)


def _launch(request: Request, kahu: Kahu, name: str, form: dict[str, str]) -> Response:
    s = session(request, kahu, change=form.get("csrf", ""))
    context = _launch_context(kahu, s, name)
    values, errors = _typed(context["fields"], form)
    cohort = {
        "dataset": form.get("dataset", "")[:64],
        "query": form.get("query", "")[:MAX_LENGTH],
        "limit": form.get("limit", "")[:12],
        "project": form.get("project", DEFAULT_PROJECT)[:64],
    }
    context.update(values=values, errors=errors, cohort=cohort)
    if errors:
        return _page(request, "launch.html", context, 422)
    try:
        require_role(kahu.projects, s.user, cohort["project"], "scientist")
        if not cohort["dataset"] and not cohort["query"].strip():
            raise InvalidInput("choose a dataset or write a query for the cohort")
        limit = int(cohort["limit"]) if cohort["limit"].strip() else None
        if limit is not None and limit < 1:
            raise InvalidInput("the cohort size limit must be at least 1")
        ids = launch(
            kahu.catalog, kahu.workflows, kahu.flow, name, values,
            RunInput(dataset=cohort["dataset"] or None, query=cohort["query"] or None, limit=limit),
            audit=kahu.audit, path="POST /workflows/{name}", created_by=s.user.name,
            project=cohort["project"],
        )  # fmt: skip
    except InvalidParameters as exc:
        context["errors"] = {e["field"]: e["message"] for e in exc.errors}
        return _page(request, "launch.html", context, 422)
    except ValueError:
        context["error"] = "the cohort size limit must be a whole number"
        return _page(request, "launch.html", context, 422)
    except KahuError as exc:
        context["error"] = str(exc)
        return _page(request, "launch.html", context, 400)
    return _flash("/runs", f"Started {', '.join(ids)}.")


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request, kahu: KahuDep, msg: Annotated[str, Query(max_length=500)] = ""
) -> Response:
    s = session(request, kahu)
    runs = kahu.runs.runs(limit=100, projects=s.listed)
    active = any(r.state in RUN_ACTIVE for r in runs)
    return _page(
        request, "runs.html",
        {"s": s, "page": "runs", "runs": runs, "msg": msg, "active": active,
         "pending": pending_steps(kahu, s.user)},
    )  # fmt: skip


@router.get("/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, kahu: KahuDep, run_id: str) -> Response:
    s = session(request, kahu)
    info = kahu.runs.run(run_id)
    require_in_project(kahu.projects, s.user, info.project, "viewer", f"run {run_id!r}")
    tasks = kahu.runs.tasks(run_id)
    return _page(
        request, "run.html",
        {"s": s, "page": "runs", "run": info, "tasks": tasks, "active": info.state in RUN_ACTIVE,
         "progress": _progress(tasks)},
    )  # fmt: skip


#: the state a series shows when its tasks differ: the first of these any of them is in
_SHOWN_STATE = ["failed", "upstream_failed", "running", "waiting_input", "queued", "pending"]


def _progress(tasks: list[Any]) -> list[dict[str, Any]]:
    """Per series of a run: its tasks done of all, and the state that matters most."""
    by_series: dict[str, list[Any]] = {}
    for task in tasks:
        if task.series_uid:
            by_series.setdefault(task.series_uid, []).append(task)
    out = []
    for uid, own in by_series.items():
        states = {t.state for t in own}
        state = next((x for x in _SHOWN_STATE if x in states), sorted(states)[0])
        done = sum(t.state in TASK_DONE for t in own)
        out.append({"series": uid, "done": done, "total": len(own), "state": state,
                    "percent": round(100 * done / len(own))})  # fmt: skip
    return out


@router.post("/runs/{run_id}/{action}")
def change_run(
    request: Request,
    kahu: KahuDep,
    run_id: str,
    action: str,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    s = session(request, kahu, change=csrf)
    try:
        info = kahu.runs.run(run_id)
        require_in_project(kahu.projects, s.user, info.project, "scientist", f"run {run_id!r}")
        if action not in ("cancel", "retry"):
            raise InvalidInput(f"no action {action!r}")
        kahu.audit.record(
            s.user.name, f"run.{action}", path=f"POST /runs/{{run_id}}/{action}",
            project=info.project, detail={"run": run_id}, status=200,
        )  # fmt: skip
        if action == "cancel":
            kahu.flow.cancel(run_id)
            message = f"{run_id} cancelled."
        else:
            count = kahu.flow.retry(run_id)
            message = f"{run_id}: {count} tasks again."
    except KahuError as exc:
        message = f"Nothing changed: {exc}"
    return _flash("/runs", message)


# -- viewer --------------------------------------------------------------------------------------

#: window/level presets (name, centre, width)
PRESETS = [
    ("Soft tissue", 40, 400),
    ("Lung", -600, 1500),
    ("Bone", 300, 1500),
    ("Brain", 40, 80),
]


@router.get("/viewer/{series_uid}", response_class=HTMLResponse)
def viewer(request: Request, kahu: KahuDep, series_uid: str) -> Response:
    """The series in NiiVue, with the segmentations derived from it as overlays and the
    measurements of its structured reports beside it."""
    import pydicom

    from kahu.api.volumes import segments, series_files
    from kahu.operators.sr import sr_to_measurements

    s = session(request, kahu)
    row = kahu.catalog.get_series(s.scope, series_uid)
    overlays, reports = [], []
    for result in kahu.lineage.of(series_uid, s.scope.condition())["results"]:
        derived = kahu.catalog.get_series(s.scope, result["series_uid"])
        if derived.modality not in ("SEG", "SR"):
            continue
        with series_files(kahu, s.scope, derived.series_instance_uid) as files:
            ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        description = derived.series_description or derived.modality
        if derived.modality == "SR":
            with contextlib.suppress(AttributeError, IndexError, KeyError, ValueError):
                reports.append({"description": description, **sr_to_measurements(ds)})
            continue  # (a report that is not TID 1500 has no measurements to show)
        overlays.append(
            {
                "uid": derived.series_instance_uid,
                "description": description,
                "url": f"/api/v1/series/{derived.series_instance_uid}/labels.nii.gz?"
                + urlencode({"on": series_uid}),
                "segments": segments(ds),
            }
        )
    may_draw = any(s.can(p, "scientist") for p in kahu.projects.series_projects(series_uid))
    config = {
        "series": series_uid,
        "volume": f"/api/v1/series/{series_uid}/volume.nii.gz",
        "overlays": overlays,
        "presets": [{"name": n, "center": c, "width": w} for n, c, w in PRESETS],
    }
    return _page(
        request, "viewer.html",
        {"s": s, "page": "explore", "series": row, "config": config, "overlays": overlays,
         "presets": PRESETS, "may_draw": may_draw, "reports": reports},
    )  # fmt: skip


# -- series --------------------------------------------------------------------------------------


@router.get("/series/{series_uid}", response_class=HTMLResponse)
def series_page(
    request: Request,
    kahu: KahuDep,
    series_uid: str,
    msg: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    """All of a series' metadata, its thumbnail, lineage and what can be done with it."""
    s = session(request, kahu)
    row = kahu.catalog.get_series(s.scope, series_uid)
    visible = (
        None if s.user.is_admin else kahu.curation.names(readable_projects(kahu.projects, s.user))
    )
    document = row.full_document()
    if visible is not None:
        document["dataset"] = [d for d in row.datasets if d in visible]
    lineage = kahu.lineage.of(series_uid, s.scope.condition())
    projects = kahu.projects.series_projects(series_uid)
    shown = [p for p in projects if s.user.is_admin or p in s.roles]
    senders = [p for p in shown if s.can(p, "scientist")]
    nodes = [n for n in kahu.nodes.list() if set(n.projects) & set(senders)]
    return _page(
        request, "series.html",
        {"s": s, "page": "explore", "series": row, "document": sorted(document.items()),
         "lineage": lineage, "projects": shown, "nodes": nodes, "senders": senders, "msg": msg},
    )  # fmt: skip


@router.get("/series/{series_uid}/download")
def download_series(request: Request, kahu: KahuDep, series_uid: str) -> Response:
    """The series' files as stored, in a zip (audited as a retrieval)."""
    import io
    import zipfile

    s = session(request, kahu)
    rows = kahu.catalog.instances(s.scope, series_uid=series_uid)
    if not rows:
        raise NotFound(f"no series {series_uid}")
    kahu.audit.record(
        s.user.name, "retrieve", path="GET /series/{series_uid}/download",
        client=request.client.host if request.client else "", series=[series_uid], status=200,
    )  # fmt: skip
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for row in rows:
            archive.writestr(
                f"{series_uid}/{row.sop_instance_uid}.dcm", kahu.store.get(row.blob_key)
            )
    return Response(
        out.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{series_uid}.zip"'},
    )


@router.post("/series/{series_uid}/send")
def send_series(
    request: Request,
    kahu: KahuDep,
    series_uid: str,
    csrf: Annotated[str, Form(max_length=128)] = "",
    node: Annotated[str, Form(max_length=64)] = "",
    project: Annotated[str, Form(max_length=64)] = DEFAULT_PROJECT,
) -> Response:
    s = session(request, kahu, change=csrf)
    back = f"/series/{series_uid}"
    try:
        require_role(kahu.projects, s.user, project, "scientist")
        ids = launch(
            kahu.catalog, kahu.workflows, kahu.flow, "send-to-node", {"node": node},
            RunInput(series_uids=(series_uid,)), audit=kahu.audit,
            path="POST /series/{series_uid}/send", created_by=s.user.name, project=project,
        )  # fmt: skip
    except KahuError as exc:
        return _flash(back, f"Not sent: {exc}")
    return _flash(back, f"Sending to {node}: run {ids[0]}.")


@router.post("/series/{series_uid}/delete")
def delete_series_page(
    request: Request,
    kahu: KahuDep,
    series_uid: str,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    s = session(request, kahu, change=csrf)
    if not s.user.is_admin:
        raise PermissionDenied("administrators only")
    with kahu.audit.action(
        s.user.name, "series.delete", path="POST /series/{series_uid}/delete", series=[series_uid]
    ):
        kahu.ingestor.delete_series(series_uid)
    return _flash("/explore", f"Series {series_uid} deleted.")


# -- administration ------------------------------------------------------------------------------


def _admin(request: Request, kahu: Kahu, csrf: str | None = None) -> Session:
    s = session(request, kahu, change=csrf)
    if not s.user.is_admin:
        raise PermissionDenied("administrators only")
    return s


def _system(kahu: Kahu) -> dict[str, Any]:
    import os
    import shutil

    from kahu.flow.resources import gpus, memory_mb

    total, available = memory_mb()
    disk = shutil.disk_usage(kahu.settings.home)
    load = os.getloadavg()
    active = kahu.runs.active_run_ids()
    tasks = kahu.runs.task_counts()
    return {
        "cpus": os.cpu_count() or 0,
        "load": [round(v, 2) for v in load],
        "memory": {"total_mb": total, "available_mb": available},
        "disk": {"total_gb": round(disk.total / 1e9, 1), "free_gb": round(disk.free / 1e9, 1)},
        "gpus": [{"index": g.index, "total_mb": g.total_mb, "free_mb": g.free_mb} for g in gpus()],
        "active_runs": len(active),
        "queue": {
            "waiting": tasks.get("pending", 0) + tasks.get("queued", 0),
            "running": tasks.get("running", 0),
            "human": tasks.get("waiting_input", 0),
        },
        "ingest": {"minute": kahu.ingest_rate.last(1), "hour": kahu.ingest_rate.last(60)},
        "series_arriving": kahu.completion.pending(),
        "counts": kahu.catalog.counts(EVERYTHING),  # shown to administrators only
    }


@router.get("/admin", response_class=HTMLResponse)
def admin_page(
    request: Request,
    kahu: KahuDep,
    msg: Annotated[str, Query(max_length=500)] = "",
    actor: Annotated[str, Query(max_length=128)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    s = _admin(request, kahu)
    kahu.audit.record(
        s.user.name, "audit.read", path="GET /admin",
        client=request.client.host if request.client else "",
        detail={"params": {"actor": actor, "action": action}}, status=200,
    )  # fmt: skip
    projects = [kahu.projects.get(p.name) for p in kahu.projects.all()]
    audit = kahu.audit.query(actor=actor or None, action=action or None, limit=None)[-100:]
    return _page(
        request, "admin.html",
        {"s": s, "page": "admin", "msg": msg, "users": kahu.accounts.list_users(),
         "projects": projects, "nodes": kahu.nodes.list(), "tokens": kahu.accounts.list_tokens(),
         "audit": list(reversed(audit)), "actor": actor, "action": action,
         "export_query": urlencode({k: v for k, v in (("actor", actor), ("action", action)) if v}),
         "system": _system(kahu)},
    )  # fmt: skip


@router.post("/admin/{what}")
async def admin_change(request: Request, kahu: KahuDep, what: str) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    return await run_in_threadpool(_admin_change, request, kahu, what, form)


#: administration actions: form name -> audit action
ADMIN_ACTIONS = {
    "user-add": "user.create",
    "user-disable": "user.disable",
    "user-enable": "user.enable",
    "project-add": "project.create",
    "member-set": "member.set",
    "member-remove": "member.remove",
    "ae-map": "project.map-ae",
    "ae-unmap": "project.unmap-ae",
    "node-add": "node.add",
    "node-remove": "node.remove",
    "token-revoke": "token.revoke",
}


def _admin_apply(kahu: Kahu, what: str, form: dict[str, str]) -> str:
    """Make the change; answer what was done."""

    def get(key: str) -> str:
        return form.get(key, "").strip()[:256]

    name, project, user = get("name"), get("project"), get("user")
    if what == "user-add":
        kahu.accounts.create_user(name, form.get("password", ""), is_admin=get("admin") == "on")
        return f"User {name} created."
    if what in ("user-disable", "user-enable"):
        kahu.accounts.set_disabled(name, what == "user-disable")
        return f"User {name} {what.removeprefix('user-')}d."
    if what == "project-add":
        kahu.projects.create(name, get("description"))
        return f"Project {name} created."
    if what == "member-set":
        kahu.projects.set_member(project, user, get("role"))
        return f"{user} is {get('role')} in {project}."
    if what == "member-remove":
        kahu.projects.remove_member(project, user)
        return f"{user} left {project}."
    if what == "ae-map":
        kahu.projects.map_ae(get("ae_title"), project)
        return f"{get('ae_title')} now stores into {project}."
    if what == "ae-unmap":
        kahu.projects.unmap_ae(get("ae_title"))
        return f"{get('ae_title')} unmapped."
    if what == "node-add":
        projects = tuple(p.strip() for p in get("projects").split(",") if p.strip())
        node = Node(name, get("ae_title"), get("host"), int(get("port") or 0),
                    get("description"), projects or (DEFAULT_PROJECT,))  # fmt: skip
        kahu.nodes.add(node)
        return f"Node {name} added."
    if what == "node-remove":
        kahu.nodes.remove(name)
        return f"Node {name} removed."
    kahu.accounts.revoke_token(int(get("id") or 0))
    return f"Token {get('id')} revoked."


def _admin_change(request: Request, kahu: Kahu, what: str, form: dict[str, str]) -> Response:
    s = _admin(request, kahu, form.get("csrf", ""))
    if what not in ADMIN_ACTIONS:
        raise NotFound(f"no administration action {what!r}")
    detail = {k: v for k, v in form.items() if k not in ("csrf", "password")}
    try:
        with kahu.audit.action(
            s.user.name, ADMIN_ACTIONS[what], path=f"POST /admin/{what}",
            project=form.get("project") or None, detail=detail,
        ):  # fmt: skip
            message = _admin_apply(kahu, what, form)
    except (KahuError, ValueError) as exc:
        message = f"Nothing changed: {exc}"
    return _flash("/admin", message)


# -- human-in-the-loop steps ---------------------------------------------------------------------


@router.post("/pending/{task_id}")
async def complete_pending_page(request: Request, kahu: KahuDep, task_id: int) -> Response:
    """A human step done (with the files the form sends, if any): the run continues."""
    from kahu.api.flow import MAX_UPLOAD, complete_step

    # the CSRF value comes in the form; the parsed form (and its files) is kept for the step
    async with request.form(max_files=100, max_part_size=MAX_UPLOAD) as form:
        csrf = form.get("csrf")
        s = await run_in_threadpool(session, request, kahu, change=str(csrf or ""))
        try:
            await complete_step(kahu, s.user, task_id, request)
            message = f"Step {task_id} completed: the run goes on."
        except KahuError as exc:
            message = f"Nothing changed: {exc}"
    return _flash("/runs", message)
