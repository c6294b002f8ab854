"""Administration: system figures, users, projects, AE titles, nodes, tokens and the audit
log; each form is one action of :mod:`kahu.actions`."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from kahu.actions import Actor, Done
from kahu.api.deps import KahuDep
from kahu.auth.policy import EVERYTHING
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.core import Kahu
from kahu.dimse.nodes import Node
from kahu.errors import KahuError, NotFound, PermissionDenied
from kahu.web.session import Session, flash, page, session

router = APIRouter(include_in_schema=False)


def _admin(request: Request, kahu: Kahu, csrf: str | None = None) -> Session:
    s = session(request, kahu, change=csrf)
    if not s.user.is_admin:
        raise PermissionDenied("administrators only")
    return s


def system_figures(kahu: Kahu) -> dict[str, Any]:
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
    return page(
        request, "admin.html",
        {"s": s, "page": "admin", "msg": msg, "users": kahu.accounts.list_users(),
         "projects": projects, "nodes": kahu.nodes.list(), "tokens": kahu.accounts.list_tokens(),
         "audit": list(reversed(audit)), "actor": actor, "action": action,
         "export_query": urlencode({k: v for k, v in (("actor", actor), ("action", action)) if v}),
         "system": system_figures(kahu)},
    )  # fmt: skip


@router.post("/admin/{what}")
async def admin_change(request: Request, kahu: KahuDep, what: str) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    return await run_in_threadpool(_admin_change, request, kahu, what, form)


#: the administration page's forms; each is one action (:mod:`kahu.actions`)
ADMIN_FORMS = (
    "user-add",
    "user-disable",
    "user-enable",
    "project-add",
    "project-delete",
    "member-set",
    "member-remove",
    "ae-map",
    "ae-unmap",
    "node-add",
    "node-remove",
    "token-revoke",
)


def _admin_apply(kahu: Kahu, actor: Actor, what: str, form: dict[str, str]) -> Done:
    """The form's action, by the one path every door takes."""
    from kahu.actions import accounts, nodes, projects

    def get(key: str) -> str:
        return form.get(key, "").strip()[:256]

    name, project, user = get("name"), get("project"), get("user")
    if what == "user-add":
        password = form.get("password", "")
        return accounts.create_user(kahu, actor, name, password, admin=get("admin") == "on")
    if what in ("user-disable", "user-enable"):
        return accounts.set_disabled(kahu, actor, name, what == "user-disable")
    if what == "project-add":
        return projects.create_project(kahu, actor, name, get("description"))
    if what == "project-delete":
        return projects.delete_project(kahu, actor, name)
    if what == "member-set":
        return projects.set_member(kahu, actor, project, user, get("role"))
    if what == "member-remove":
        return projects.remove_member(kahu, actor, project, user)
    if what == "ae-map":
        return projects.map_ae(kahu, actor, get("ae_title"), project)
    if what == "ae-unmap":
        return projects.unmap_ae(kahu, actor, get("ae_title"))
    if what == "node-add":
        listed = tuple(p.strip() for p in get("projects").split(",") if p.strip())
        port = int(get("port")) if get("port").isdigit() else 0  # 0: refused by the action
        node = Node(name, get("ae_title"), get("host"), port,
                    get("description"), listed or (DEFAULT_PROJECT,))  # fmt: skip
        return nodes.add_node(kahu, actor, node)
    if what == "node-remove":
        return nodes.remove_node(kahu, actor, name)
    return accounts.revoke_token(kahu, actor, int(get("id")) if get("id").isdigit() else 0)


def _admin_change(request: Request, kahu: Kahu, what: str, form: dict[str, str]) -> Response:
    s = session(request, kahu, change=form.get("csrf", ""))
    if what not in ADMIN_FORMS:
        raise NotFound(f"no administration action {what!r}")
    try:
        message = _admin_apply(kahu, s.actor(request, f"POST /admin/{what}"), what, form).message
    except PermissionDenied:
        raise
    except (KahuError, ValueError) as exc:
        message = f"Nothing changed: {exc}"
    return flash("/admin", message)
