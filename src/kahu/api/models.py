"""Model routes: the installed AI models (docs/models.md). Anyone signed in lists the models
their projects may use; administrators install (a zip body, or a DICOM-wrapped model of the
catalog), uninstall, choose the projects, store a model in the catalog and download it."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from kahu.actions import models as actions
from kahu.api.deps import ActorDep, CurrentUser, KahuDep
from kahu.models.archive import pack

router = APIRouter(prefix="/api/v1/models")

Name = Annotated[str, PathParam(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")]
Version = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,31}$")]
ZIP_TYPES = {"application/zip", "application/x-zip-compressed", "application/octet-stream"}


class FromSeries(BaseModel):
    series_uid: str = Field(max_length=64, pattern=r"^[0-9.]+$")
    projects: list[str] | None = None


class Projects(BaseModel):
    #: None: every project may use it
    projects: list[Annotated[str, Field(max_length=64)]] | None
    #: one version; None: every version
    version: str | None = Field(default=None, max_length=32)


class ToCatalog(BaseModel):
    project: str = Field(default="default", max_length=64)


@router.get("", summary="Installed models the caller's projects may use")
def list_models(kahu: KahuDep, user: CurrentUser) -> list[dict[str, Any]]:
    return [m.public() for m in actions.visible(kahu, user)]


@router.get("/{name}", summary="A model's highest version, with its README")
def show_model(name: Name, kahu: KahuDep, user: CurrentUser) -> dict[str, Any]:
    return actions.find(kahu, user, name).public(readme=True)


@router.get("/{name}/{version}", summary="One version of a model, with its README")
def show_version(name: Name, version: Version, kahu: KahuDep, user: CurrentUser) -> dict[str, Any]:
    return actions.find(kahu, user, f"{name}@{version}").public(readme=True)


@router.post(
    "",
    status_code=201,
    summary="Install a model from a zip archive (the body)",
    description="The body is a zip of a model folder (nnU-Net v2 results, MONAI bundle, or a "
    "folder with kahu-model.json). The query names what the model does not say. A corrupt, "
    "unsafe or mismatched archive is refused (400) and installed models stay as they were.",
)
async def install(
    request: Request,
    kahu: KahuDep,
    actor: ActorDep,
    name: Annotated[str | None, Query(max_length=64)] = None,
    version: Annotated[str | None, Query(max_length=32)] = None,
    licence: Annotated[str | None, Query(max_length=2000)] = None,
    title: Annotated[str | None, Query(max_length=200)] = None,
    sha256: Annotated[str, Query(max_length=64)] = "",
    projects: Annotated[
        str | None, Query(max_length=2000, description="comma-separated; empty: every project")
    ] = None,
) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ZIP_TYPES:
        raise HTTPException(
            415, f"unsupported content type {content_type or '(none)'!r}; send application/zip"
        )
    overrides = {"name": name, "version": version, "licence": licence, "title": title}
    chosen = [p.strip() for p in projects.split(",") if p.strip()] if projects else None

    def run(source: Path | io.BytesIO) -> dict[str, Any]:
        done = actions.install(
            kahu,
            actor,
            source,
            label="upload",
            overrides={k: v for k, v in overrides.items() if v is not None},
            sha256=sha256,
            projects=chosen,
        )
        return dict(done.result.public())

    if not actor.user.is_admin:  # refused and recorded before a byte of the body is read
        return await run_in_threadpool(run, io.BytesIO())
    limit = kahu.settings.models.max_bytes
    kahu.settings.models_root.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=kahu.settings.models_root, prefix=".upload-") as tmp:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"body larger than {limit} bytes")
            tmp.write(chunk)
        tmp.flush()
        return await run_in_threadpool(run, Path(tmp.name))


@router.post("/from-series", status_code=201, summary="Install a DICOM-wrapped model")
def install_from_series(body: FromSeries, kahu: KahuDep, actor: ActorDep) -> dict[str, Any]:
    done = actions.install_from_series(kahu, actor, body.series_uid, projects=body.projects)
    return dict(done.result.public())


@router.put("/{name}/projects", summary="Which projects may use a model")
def set_projects(name: Name, body: Projects, kahu: KahuDep, actor: ActorDep) -> dict[str, Any]:
    done = actions.set_projects(kahu, actor, name, body.version, body.projects)
    return {"message": done.message, "models": [m.public() for m in done.result]}


@router.delete("/{name}/{version}", status_code=204, summary="Uninstall a model version")
def uninstall(name: Name, version: Version, kahu: KahuDep, actor: ActorDep) -> Response:
    actions.uninstall(kahu, actor, name, version)
    return Response(status_code=204)


@router.post(
    "/{name}/{version}/to-catalog",
    status_code=201,
    summary="Store a model in the catalog as a DICOM instance (to send it to another site)",
)
def to_catalog(
    name: Name, version: Version, body: ToCatalog, kahu: KahuDep, actor: ActorDep
) -> dict[str, Any]:
    done = actions.to_catalog(kahu, actor, name, version, body.project)
    return {"series_uid": done.result, "message": done.message}


@router.get("/{name}/{version}/archive", summary="A model's files as a zip (administrators)")
def archive(name: Name, version: Version, kahu: KahuDep, actor: ActorDep) -> Response:
    model = actions.export(kahu, actor, name, version)
    staging = kahu.settings.models_root / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=staging, prefix="export-", suffix=".zip")
    os.close(fd)
    pack(model.path, Path(tmp))
    return FileResponse(
        tmp,
        media_type="application/zip",
        filename=f"{name}-{version}.zip",
        background=BackgroundTask(os.unlink, tmp),
    )
