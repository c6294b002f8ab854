"""The Models page: the installed AI models a caller's projects may use, each with its
labels (names, codes, colours), input, resources, licence and README; administrators
install (a zip upload), choose the projects, store a model in the catalog and uninstall.
Each form is one action of :mod:`kahu.actions.models`."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from kahu.actions import Done
from kahu.actions import models as actions
from kahu.api.deps import KahuDep
from kahu.core import Kahu
from kahu.errors import KahuError, NotFound, PermissionDenied
from kahu.web.session import Session, flash, page, session

router = APIRouter(include_in_schema=False)


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, kahu: KahuDep) -> Response:
    s = session(request, kahu)
    return page(
        request, "models.html", {"s": s, "page": "models", "models": actions.visible(kahu, s.user)}
    )


@router.get("/models/{name}/{version}", response_class=HTMLResponse)
def model_page(request: Request, kahu: KahuDep, name: str, version: str) -> Response:
    s = session(request, kahu)
    model = actions.find(kahu, s.user, f"{name}@{version}")
    projects = [p.name for p in kahu.projects.all()] if s.user.is_admin else []
    return page(
        request,
        "model.html",
        {"s": s, "page": "models", "model": model, "projects": projects},
    )


def _apply(kahu: Kahu, s: Session, request: Request, what: str, form: dict[str, str]) -> Done:
    actor = s.actor(request, f"POST /models/{what}")
    name, version = form.get("name", "")[:64], form.get("version", "")[:32]
    if what == "uninstall":
        return actions.uninstall(kahu, actor, name, version)
    if what == "projects":
        chosen = [p.strip() for p in form.get("projects", "").split(",") if p.strip()]
        everywhere = form.get("everywhere") == "on"
        return actions.set_projects(kahu, actor, name, None, None if everywhere else chosen)
    if what == "to-catalog":
        return actions.to_catalog(kahu, actor, name, version, form.get("project", "default"))
    raise NotFound(f"no model action {what!r}")


@router.post("/models/install")
async def install(request: Request, kahu: KahuDep) -> Response:
    form = await request.form(max_files=1, max_fields=20)
    try:
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        s = session(request, kahu, change=fields.get("csrf", ""))
        upload = form.get("archive")
        if not s.user.is_admin:  # refused (and recorded) by the action, body unread
            actions.install(kahu, s.actor(request, "POST /models/install"), io.BytesIO(), label="")
        if not isinstance(upload, UploadFile) or not upload.filename:
            return flash("/models", "Nothing installed: choose a zip archive of the model.")
        with tempfile.NamedTemporaryFile(suffix=".zip") as tmp:
            while chunk := await upload.read(1024 * 1024):
                tmp.write(chunk)
            tmp.flush()
            overrides = {k: fields.get(k, "").strip()[:200] for k in ("name", "version", "licence")}

            def work() -> Done:
                return actions.install(
                    kahu,
                    s.actor(request, "POST /models/install"),
                    Path(tmp.name),
                    label=f"upload {upload.filename}"[:200],
                    overrides={k: v for k, v in overrides.items() if v},
                    sha256=fields.get("sha256", "").strip()[:64],
                )

            try:
                message = (await run_in_threadpool(work)).message
            except PermissionDenied:
                raise
            except KahuError as exc:
                message = f"Nothing installed: {exc}"
    finally:
        await form.close()
    return flash("/models", message)


@router.post("/models/{what}")
async def change(request: Request, kahu: KahuDep, what: str) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}

    def work() -> Response:
        s = session(request, kahu, change=form.get("csrf", ""))
        try:
            message = _apply(kahu, s, request, what, form).message
        except PermissionDenied:
            raise
        except KahuError as exc:
            message = f"Nothing changed: {exc}"
        return flash("/models", message)

    return await run_in_threadpool(work)
