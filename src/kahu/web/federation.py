"""Federation for this site's administrators: the site's identity, its partners and
coordinators, work waiting for approval (approve or refuse with a reason), the federated runs
it coordinates with each site's state (refreshed while one is running) and the form that starts
one, and the egress ledger (filtered, as CSV); each form is one action of
:mod:`kahu.actions.federation`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from kahu.actions import Actor, Done
from kahu.actions import federation as actions
from kahu.api.deps import KahuDep
from kahu.core import Kahu
from kahu.errors import InvalidInput, InvalidParameters, KahuError, NotFound, PermissionDenied
from kahu.web.flow import parameter_fields, typed_values
from kahu.web.session import Session, flash, page, session

router = APIRouter(include_in_schema=False)
FORMS = ("invite", "revoke", "approve", "refuse", "cancel")


def _when(text: str) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"not a date: {text!r}") from None


@router.get("/federation")
def federation_page(
    request: Request,
    kahu: KahuDep,
    msg: Annotated[str, Query(max_length=2000)] = "",
    partner: Annotated[str, Query(max_length=64)] = "",
    run: Annotated[str, Query(max_length=128)] = "",
    since: Annotated[str, Query(max_length=32)] = "",
) -> Response:
    s = session(request, kahu)
    if not s.user.is_admin:
        raise PermissionDenied("administrators only")
    filters = {k: v for k, v in (("partner", partner), ("run", run), ("since", since)) if v}
    try:
        ledger = kahu.ledger.entries(partner=partner or None, run=run or None, since=_when(since))
    except InvalidInput as exc:
        ledger, msg = [], str(exc)
    runs = [kahu.fed_runs.status(r["id"]) for r in kahu.fed_runs.runs(20)]
    federated = [w for w in kahu.workflows.all() if w.outputs]
    jobs = kahu.agent.jobs()[:50]
    return page(
        request,
        "federation.html",
        {
            "s": s,
            "page": "federation",
            "msg": msg,
            "site": kahu.identity.public(),
            "peers": kahu.peers.all(),
            "waiting": kahu.agent.waiting(),
            "runs": runs,
            "active": any(r["state"] in ("running", "aggregating") for r in runs)
            or any(j["state"] in ("approved", "running") for j in jobs),
            "federated": federated,
            "jobs": jobs,
            "ledger": list(reversed(ledger))[:200],
            "intact": kahu.ledger.verify(),
            "filters": filters,
            "page_query": urlencode(filters),
            "csv_query": urlencode({**filters, "format": "csv"}),
        },
    )


@router.post("/federation/{what}")
async def federation_change(request: Request, kahu: KahuDep, what: str) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    return await run_in_threadpool(_change, request, kahu, what, form)


def _apply(kahu: Kahu, actor: Actor, what: str, form: dict[str, str]) -> Done:
    def get(key: str) -> str:
        return form.get(key, "").strip()[:500]

    if what == "invite":
        return actions.invite(kahu, actor, get("name"))
    if what == "revoke":
        return actions.revoke_partner(kahu, actor, get("name"), get("reason"))
    if what == "approve":
        return actions.approve(kahu, actor, get("job"))
    if what == "cancel":
        return actions.cancel_run(kahu, actor, get("run"), get("reason"))
    return actions.refuse(kahu, actor, get("job"), get("reason"))


def _change(request: Request, kahu: Kahu, what: str, form: dict[str, str]) -> Response:
    s = session(request, kahu, change=form.get("csrf", ""))
    if what not in FORMS:
        raise NotFound(f"no federation action {what!r}")
    try:
        message = _apply(kahu, s.actor(request, f"POST /federation/{what}"), what, form).message
    except PermissionDenied:
        raise
    except KahuError as exc:
        message = f"Nothing changed: {exc}"
    return flash("/federation", message)


def _launch_context(kahu: Kahu, s: Session, name: str) -> dict[str, Any]:
    if not s.user.is_admin:
        raise PermissionDenied("administrators only")
    workflow = kahu.workflows.get(name)
    if not workflow.outputs:
        raise InvalidInput(f"workflow {name} declares no outputs: it is not federated")
    partners = [p for p in kahu.peers.all() if p.role == "partner" and p.active]
    return {
        "s": s,
        "page": "federation",
        "workflow": workflow,
        "fields": parameter_fields(workflow.parameters),
        "partners": partners,
        "projects": s.projects_where("scientist"),
        "values": {},
        "errors": {},
        "chosen": {"project": s.default_project, "timeout_h": "1"},
        "datasets": {},
        "error": None,
    }


@router.get("/federation/launch/{name}", response_class=HTMLResponse)
def federation_launch_page(request: Request, kahu: KahuDep, name: str) -> Response:
    context = _launch_context(kahu, session(request, kahu), name)
    return page(request, "federation_launch.html", context)


@router.post("/federation/launch/{name}", response_class=HTMLResponse)
async def federation_launch_form(request: Request, kahu: KahuDep, name: str) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    return await run_in_threadpool(_launch, request, kahu, name, form)


def _launch(request: Request, kahu: Kahu, name: str, form: dict[str, str]) -> Response:
    s = session(request, kahu, change=form.get("csrf", ""))
    context = _launch_context(kahu, s, name)
    values, errors = typed_values(context["fields"], form)
    datasets = {
        p.site_id: form.get(f"dataset.{p.site_id}", "").strip()[:64] for p in context["partners"]
    }
    chosen = {
        "project": form.get("project", "")[:64],
        "timeout_h": form.get("timeout_h", "1").strip()[:12],
    }
    context.update(values=values, errors=errors, datasets=datasets, chosen=chosen)
    if errors:
        return page(request, "federation_launch.html", context, 422)
    sites = [(site_id, dataset) for site_id, dataset in datasets.items() if dataset]
    try:
        timeout_h = float(chosen["timeout_h"])
    except ValueError:
        context["error"] = f"the time limit {chosen['timeout_h']!r} is not a number of hours"
        return page(request, "federation_launch.html", context, 422)
    try:
        if not sites:
            raise InvalidInput("name a dataset for at least one partner site")
        done = actions.launch(
            kahu,
            s.actor(request, "POST /federation/launch/{name}"),
            name,
            sites,
            values,
            project=chosen["project"],
            timeout_s=timeout_h * 3600,
        )
    except InvalidParameters as exc:
        context["errors"] = {e["field"]: e["message"] for e in exc.errors}
        return page(request, "federation_launch.html", context, 422)
    except PermissionDenied:
        raise
    except KahuError as exc:
        context["error"] = str(exc)
        return page(request, "federation_launch.html", context, 400)
    return flash("/federation", done.message)
