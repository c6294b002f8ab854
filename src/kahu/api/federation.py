"""Federation routes. Partners call ``/api/v1/federation/{join,work,jobs,leave}`` with requests
signed by their site key, and every answer is signed by this site's (:mod:`kahu.federation.client`
is the other end); administrators manage peers, policies, approvals, federated runs and the
egress ledger under the same prefix with their ordinary credentials."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from kahu.actions import federation as actions
from kahu.api.deps import ActorDep, AdminUser, CurrentUser, KahuDep
from kahu.core import Kahu
from kahu.errors import AuthenticationFailed, InvalidInput, KahuError, PermissionDenied
from kahu.federation.client import HEADER_NONCE, HEADER_SIGNATURE, HEADER_SITE, HEADER_TIME
from kahu.federation.coordinator import MAX_TIMEOUT_S
from kahu.federation.egress import as_csv
from kahu.federation.identity import request_text, response_text, site_id_of, verify
from kahu.federation.peers import Peer, join_proof

router = APIRouter(prefix="/api/v1/federation")
MAX_OUTPUT_BYTES = 256 * 1024 * 1024
SIGNATURE_SCHEME = "Kahu-Signature"
#: the routes partners call, signed by their site key (everything else takes a bearer token)
PEER_ROUTES = ("/join", "/work", "/jobs/{job_id}/status", "/jobs/{job_id}/outputs/{name}", "/leave")


def _json(data: Any) -> bytes:
    return json.dumps(data, default=str, separators=(",", ":")).encode()


def _signed(kahu: Kahu, request: Request, status: int, payload: Any, to_site: str) -> Response:
    body = _json(payload)
    nonce = request.headers.get(HEADER_NONCE, "")
    headers = {HEADER_SIGNATURE: kahu.identity.sign(response_text(nonce, status, body, to_site))}
    if status == 401:  # partners authenticate by signature, not by bearer token
        headers["WWW-Authenticate"] = SIGNATURE_SCHEME
    return Response(body, status, media_type="application/json", headers=headers)


def _signed_path(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _caller(kahu: Kahu, request: Request, body: bytes) -> Peer:
    """The partner that signed this request (401: none; 403: one whose peering ended)."""
    h = request.headers
    site = h.get(HEADER_SITE, "")
    if not site or not h.get(HEADER_SIGNATURE):
        raise AuthenticationFailed("a partner's request must be signed by its site key")
    try:
        peer = kahu.peers.get(site, "partner")
    except KahuError:
        raise AuthenticationFailed("this site has no such partner") from None
    text = request_text(
        request.method,
        _signed_path(request),
        h.get(HEADER_TIME, ""),
        h.get(HEADER_NONCE, ""),
        body,
        kahu.identity.site_id,
    )
    verify(peer.public_key, text, h.get(HEADER_SIGNATURE, ""))
    kahu.nonces.fresh(site, h.get(HEADER_NONCE, ""), h.get(HEADER_TIME, ""))
    if not peer.active:
        raise PermissionDenied(f"the peering was revoked: {peer.revoked_reason}")
    kahu.peers.seen(site, "partner")
    return peer


async def _peer_call(
    kahu: Kahu, request: Request, handle: Callable[[Peer, bytes], Any], *, limit: int = 1 << 20
) -> Response:
    """Authenticate the partner, run ``handle`` off the event loop, sign the answer (errors
    too: a partner trusts no unsigned refusal). Refused callers are audited."""
    body = await request.body()
    site = request.headers.get(HEADER_SITE, "")
    try:
        if len(body) > limit:
            raise InvalidInput(f"the request is over {limit} bytes")
        peer = await run_in_threadpool(_caller, kahu, request, body)
        payload = await run_in_threadpool(handle, peer, body)
        return _signed(kahu, request, 200, payload, site)
    except KahuError as exc:
        if exc.http_status in (401, 403):
            await run_in_threadpool(
                kahu.audit.record,
                f"site:{site[:32] or 'unknown'}",
                "federation.peer.refused",
                kind="system",
                path=f"{request.method} {request.url.path}",
                client=request.client.host if request.client else "",
                detail={"reason": str(exc)},
                status=exc.http_status,
            )
        return _signed(kahu, request, exc.http_status, {"detail": str(exc)}, site)


def _body(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise InvalidInput("the body is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object")
    return data


# -- what partners call --------------------------------------------------------------------


@router.post("/join", summary="A partner joins with its one-time token (signed by its key)")
async def join(kahu: KahuDep, request: Request) -> Response:
    body = await request.body()
    site = request.headers.get(HEADER_SITE, "")

    def accept() -> dict[str, Any]:
        data = _body(body)
        given = data.get("site") or {}
        key = str(given.get("public_key") or "")
        if not key or site_id_of(key) != site:
            raise AuthenticationFailed("the request is not signed by the key it carries")
        h = request.headers
        text = request_text(
            "POST", _signed_path(request), h.get(HEADER_TIME, ""), h.get(HEADER_NONCE, ""), body, ""
        )
        verify(key, text, h.get(HEADER_SIGNATURE, ""))
        kahu.nonces.fresh(site, h.get(HEADER_NONCE, ""), h.get(HEADER_TIME, ""))
        token = str(data.get("token") or "")
        with kahu.audit.action(
            f"site:{site}",
            "federation.joined",
            kind="system",
            path="POST /api/v1/federation/join",
            detail={"site": given.get("name"), "site_id": site},
        ):
            peer = kahu.peers.accept(token, key)
        return {
            "coordinator": kahu.identity.public(),
            "partner": peer.public(),
            "proof": join_proof(token, kahu.identity.public_key, site),
        }

    if len(body) > 65536:
        return _signed(kahu, request, 413, {"detail": "the request is too large"}, site)
    try:
        return _signed(kahu, request, 200, await run_in_threadpool(accept), site)
    except (KahuError, ValueError) as exc:
        status = exc.http_status if isinstance(exc, KahuError) else 400
        return _signed(kahu, request, status, {"detail": str(exc)}, site)


@router.get("/work", summary="A partner's long poll for work (signed)")
async def work(
    kahu: KahuDep, request: Request, wait: Annotated[float, Query(ge=0, le=120)] = 0
) -> Response:
    return await _peer_call(
        kahu, request, lambda peer, _: kahu.fed_runs.work_for(peer.site_id, wait)
    )


@router.post("/jobs/{job_id}/status", summary="A partner reports on its part of a run (signed)")
async def job_status(kahu: KahuDep, request: Request, job_id: str) -> Response:
    def handle(peer: Peer, body: bytes) -> dict[str, Any]:
        data = _body(body)
        progress = data.get("progress")
        state = kahu.fed_runs.report(
            peer.site_id,
            job_id,
            str(data.get("state")),
            reason=str(data.get("reason") or ""),
            progress=progress if isinstance(progress, dict) else None,
        )
        return {"state": state}

    return await _peer_call(kahu, request, handle)


@router.put("/jobs/{job_id}/outputs/{name}", summary="A partner sends a declared output (signed)")
async def job_output(kahu: KahuDep, request: Request, job_id: str, name: str) -> Response:
    return await _peer_call(
        kahu,
        request,
        lambda peer, body: kahu.fed_runs.store_output(peer.site_id, job_id, name, body),
        limit=MAX_OUTPUT_BYTES,
    )


@router.post("/leave", summary="A partner ends its peering with this site (signed)")
async def leave(kahu: KahuDep, request: Request) -> Response:
    def handle(peer: Peer, body: bytes) -> dict[str, Any]:
        reason = str(_body(body).get("reason") or "")[:500]
        kahu.peers.revoke(peer.site_id, "partner", f"the partner left: {reason}".strip(": "))
        kahu.audit.record(
            f"site:{peer.site_id}",
            "federation.left",
            kind="system",
            path="POST /api/v1/federation/leave",
            detail={"partner": peer.name, "reason": reason},
            status=200,
        )
        return {"left": True}

    return await _peer_call(kahu, request, handle)


# -- this site's administrators ------------------------------------------------------------


@router.get("/site", summary="This site's identity")
def site(kahu: KahuDep, user: CurrentUser) -> dict[str, str]:
    return kahu.identity.public()


@router.get("/peers", summary="Partners and coordinators of this site")
def peers(kahu: KahuDep, user: AdminUser) -> list[dict[str, Any]]:
    return [p.public() for p in kahu.peers.all()]


class InviteCreate(BaseModel):
    name: str = Field(min_length=1, max_length=63)
    hours: float | None = Field(default=None, gt=0, le=24 * 30)


@router.post("/invites", status_code=201, summary="Invite a partner (the token is shown once)")
def invite(kahu: KahuDep, actor: ActorDep, body: InviteCreate) -> Any:
    return actions.invite(kahu, actor, body.name, body.hours).result


@router.get("/invites", summary="Invitations (never their tokens)")
def invites(kahu: KahuDep, user: AdminUser) -> list[dict[str, Any]]:
    return kahu.peers.invites()


class JoinRequest(BaseModel):
    url: str = Field(min_length=8, max_length=512)
    token: str = Field(min_length=10, max_length=128)
    name: str | None = Field(default=None, max_length=63)


@router.post("/coordinators", status_code=201, summary="Join a coordinator with its token")
def join_coordinator(kahu: KahuDep, actor: ActorDep, body: JoinRequest) -> Any:
    return actions.join(kahu, actor, body.url, body.token, body.name).result


class Revocation(BaseModel):
    reason: str = Field(default="", max_length=500)


@router.post("/partners/{partner}/revoke", summary="End a partner's peering")
def revoke_partner(kahu: KahuDep, actor: ActorDep, partner: str, body: Revocation) -> Any:
    return {"message": actions.revoke_partner(kahu, actor, partner, body.reason).message}


@router.post("/coordinators/{coordinator}/leave", summary="Leave a coordinator")
def leave_coordinator(kahu: KahuDep, actor: ActorDep, coordinator: str, body: Revocation) -> Any:
    return actions.leave(kahu, actor, coordinator, body.reason).result


@router.get("/policies/{coordinator}", summary="What this site allows a coordinator")
def policy(kahu: KahuDep, user: AdminUser, coordinator: str) -> dict[str, Any]:
    peer = kahu.peers.find(coordinator, "coordinator")
    found = kahu.policies.get(peer.site_id)
    return {"coordinator": peer.public(), "rules": found.rules() if found else None}


@router.put("/policies/{coordinator}", summary="Set the whole policy for a coordinator")
def put_policy(
    kahu: KahuDep, actor: ActorDep, coordinator: str, rules: dict[str, Any]
) -> dict[str, Any]:
    try:
        return dict(actions.set_policy(kahu, actor, coordinator, rules).result)
    except (TypeError, KeyError) as exc:
        raise InvalidInput(f"not a policy: {exc}") from None


class Allow(BaseModel):
    workflow: str
    version: str | None = None
    datasets: list[str] = Field(default_factory=list)
    query: str = Field(default="", max_length=2000)
    mode: Literal["auto", "approval"] | None = None


@router.post("/policies/{coordinator}/workflows", summary="Pin an installed workflow")
def allow(kahu: KahuDep, actor: ActorDep, coordinator: str, body: Allow) -> dict[str, Any]:
    changes = {"mode": body.mode} if body.mode else None
    done = actions.allow(
        kahu,
        actor,
        coordinator,
        body.workflow,
        version=body.version,
        datasets=body.datasets,
        query=body.query,
        changes=changes,
    )
    return dict(done.result)


@router.get("/jobs", summary="Work coordinators asked of this site")
def jobs(
    kahu: KahuDep, user: AdminUser, state: Annotated[str | None, Query(max_length=24)] = None
) -> list[dict[str, Any]]:
    return kahu.agent.jobs(state)


@router.get("/approvals", summary="Work waiting for approval, with what would leave")
def approvals(kahu: KahuDep, user: AdminUser) -> list[dict[str, Any]]:
    return kahu.agent.waiting()


@router.post("/jobs/{job_id}/approve", summary="Let waiting work run")
def approve(kahu: KahuDep, actor: ActorDep, job_id: str) -> Any:
    return actions.approve(kahu, actor, job_id).result


@router.post("/jobs/{job_id}/refuse", summary="Refuse waiting work (the reason is sent)")
def refuse(kahu: KahuDep, actor: ActorDep, job_id: str, body: Revocation) -> Any:
    return actions.refuse(kahu, actor, job_id, body.reason).result


class SiteChoice(BaseModel):
    site: str = Field(min_length=1, max_length=64)
    dataset: str = Field(min_length=1, max_length=128)


class FedLaunch(BaseModel):
    workflow: str
    version: str | None = None
    sites: list[SiteChoice] = Field(min_length=1, max_length=100)
    params: dict[str, Any] = Field(default_factory=dict)
    project: str = "default"
    timeout_s: float = Field(default=3600.0, gt=0, le=MAX_TIMEOUT_S)


@router.post("/runs", status_code=201, summary="Launch a federated run")
def launch(kahu: KahuDep, actor: ActorDep, body: FedLaunch) -> Any:
    done = actions.launch(
        kahu,
        actor,
        body.workflow,
        [(s.site, s.dataset) for s in body.sites],
        body.params,
        version=body.version,
        project=body.project,
        timeout_s=body.timeout_s,
    )
    return kahu.fed_runs.status(done.result["id"])


@router.get("/runs", summary="Federated runs this site coordinates")
def runs(kahu: KahuDep, user: AdminUser) -> list[dict[str, Any]]:
    return kahu.fed_runs.runs()


@router.get("/runs/{run_id}", summary="A federated run, each site's part live")
def run(kahu: KahuDep, user: AdminUser, run_id: str) -> dict[str, Any]:
    return kahu.fed_runs.status(run_id)


@router.post("/runs/{run_id}/cancel", summary="Cancel a federated run (the sites are told)")
def cancel_run(kahu: KahuDep, actor: ActorDep, run_id: str, body: Revocation) -> Any:
    actions.cancel_run(kahu, actor, run_id, body.reason)
    return kahu.fed_runs.status(run_id)


@router.get("/egress", summary="The egress ledger (JSON, JSON lines or CSV)")
def egress(
    kahu: KahuDep,
    user: AdminUser,
    partner: Annotated[str | None, Query(max_length=64)] = None,
    run: Annotated[str | None, Query(max_length=128)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int | None, Query(ge=1, le=100000)] = None,
    format: Literal["json", "jsonl", "csv"] = "json",
) -> Any:
    entries = kahu.ledger.entries(partner=partner, run=run, since=since, until=until, limit=limit)
    if format == "csv":
        return StreamingResponse(
            as_csv(entries),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="egress.csv"'},
        )
    if format == "jsonl":
        lines = (json.dumps(e, default=str) + "\n" for e in entries)
        return StreamingResponse(lines, media_type="application/x-ndjson")
    return JSONResponse(json.loads(_json(entries)))


@router.get("/egress/verify", summary="Check the ledger's hash chain")
def egress_verify(kahu: KahuDep, user: AdminUser) -> dict[str, Any]:
    count, problem = kahu.ledger.verify()
    return {"entries": count, "intact": not problem, "problem": problem}
