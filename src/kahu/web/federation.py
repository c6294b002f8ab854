"""Federation for this site's administrators: the site's identity, its partners and
coordinators, work waiting for approval (approve or refuse with a reason), the federated runs
it coordinates with each site's state, and the egress ledger (filtered, as CSV); each form is
one action of :mod:`kahu.actions.federation`."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from kahu.actions import Actor, Done
from kahu.actions import federation as actions
from kahu.api.deps import KahuDep
from kahu.core import Kahu
from kahu.errors import InvalidInput, KahuError, NotFound, PermissionDenied
from kahu.web.session import flash, page, session

router = APIRouter(include_in_schema=False)
FORMS = ("invite", "revoke", "approve", "refuse")


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
            "jobs": kahu.agent.jobs()[:50],
            "ledger": list(reversed(ledger))[:200],
            "intact": kahu.ledger.verify(),
            "filters": filters,
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
