"""Explore (query bar, facets, charts, table or gallery) and datasets (save, add, freeze,
delete)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from kahu.actions import datasets, models
from kahu.api.deps import KahuDep
from kahu.api.search import hidden_datasets
from kahu.auth.policy import readable_projects
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.errors import InvalidInput, KahuError
from kahu.flow.cohort import RunInput
from kahu.search import aggregations as agg
from kahu.search.columns import INDEXED_FIELDS
from kahu.search.query import MAX_LENGTH, parse
from kahu.search.series import search_series
from kahu.web.session import flash, page, session

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
        "models": models.runnable(kahu, s.user, s.projects_where("scientist")),
    }  # fmt: skip
    return page(request, "explore.html", context, 400 if error else 200)


@router.post("/explore/segment")
def segment_found(
    request: Request,
    kahu: KahuDep,
    csrf: Annotated[str, Form(max_length=128)] = "",
    model: Annotated[str, Form(max_length=100)] = "",
    project: Annotated[str, Form(max_length=64)] = DEFAULT_PROJECT,
    q: Annotated[str, Form(max_length=MAX_LENGTH)] = "",
    f: Annotated[list[str] | None, Form()] = None,
    series: Annotated[list[str] | None, Form()] = None,
    what: Annotated[str, Form(max_length=16)] = "selected",
) -> Response:
    """From Explore: run an installed model (its format's workflow) on the selected series
    or (``what=query``) on every series the query finds, as project ``project``."""
    s = session(request, kahu, change=csrf)
    filters = _filters(f or [])
    back = _link(q, filters)
    chosen = (series or [])[:10_000]
    try:
        if what == "query":
            cohort = RunInput(query=_query(q, filters) or "*")
        elif chosen:
            cohort = RunInput(series_uids=tuple(chosen))
        else:
            raise InvalidInput("select series first (the boxes in the first column)")
        found, ids = models.segment(kahu, s.user, model, project, cohort, "POST /explore/segment")
    except KahuError as exc:
        return flash(back, f"Not started: {exc}")
    return flash(back, f"Segmenting with {found.ref}: run {ids[0]}.")


# -- datasets ------------------------------------------------------------------------------------


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
    actor = s.actor(request, "POST /datasets")
    chosen = (series or [])[:10_000]
    if what == "add":
        try:
            if not chosen:
                raise InvalidInput("select series first (the boxes in the first column)")
            done = datasets.change_series(kahu, actor, into, add=chosen)
        except KahuError as exc:
            return flash(back, f"Nothing was added: {exc}")
        return flash(back, f"Added to {into}: it holds {done.result.series_count} series now.")
    try:
        if what == "selected":
            if not chosen:
                raise InvalidInput("select series first (the boxes in the first column)")
            done = datasets.create_dataset(kahu, actor, name, series=chosen, project=project)
        else:
            query = _query(q, filters) or "*"
            done = datasets.create_dataset(kahu, actor, name, query=query, project=project)
    except KahuError as exc:
        return flash(back, f"The dataset was not made: {exc}")
    return flash(back, done.message)


@router.get("/datasets", response_class=HTMLResponse)
def datasets_page(
    request: Request, kahu: KahuDep, msg: Annotated[str, Query(max_length=500)] = ""
) -> Response:
    s = session(request, kahu)
    datasets = kahu.curation.datasets(s.listed)
    return page(
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
    do = {"freeze": datasets.freeze_dataset, "delete": datasets.delete_dataset}.get(action)
    try:
        if do is None:
            raise InvalidInput(f"no action {action!r}")
        message = do(kahu, s.actor(request, f"POST /datasets/{{name}}/{action}"), name).message
    except KahuError as exc:
        message = f"Nothing changed: {exc}"
    return flash("/datasets", message)
