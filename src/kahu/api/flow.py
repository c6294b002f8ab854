"""Workflow routes: the catalogue, launching runs, watching them, logs, cancel and retry,
human-in-the-loop tasks, triggers, and the lineage of series."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, Field
from starlette.datastructures import UploadFile

from kahu.actions import runs, triggers
from kahu.api.deps import ActorDep, CurrentUser, KahuDep, Scope
from kahu.auth.policy import readable_projects, require_in_project, require_role
from kahu.auth.projects import Role
from kahu.auth.users import UserPublic
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.core import Kahu
from kahu.errors import InvalidInput, NotFound
from kahu.flow.cohort import RunInput
from kahu.flow.job import RunPaths
from kahu.flow.launch import launch
from kahu.flow.runs import RunInfo, TaskInfo
from kahu.flow.states import RUN_ACTIVE, RUN_DONE
from kahu.search.query import MAX_LENGTH

router = APIRouter(prefix="/api/v1")
NameParam = Annotated[str, Path(max_length=64)]
RunParam = Annotated[str, Path(max_length=96)]
#: an upload completing a human step (a corrected SEG, say)
MAX_UPLOAD = 2 * 1024**3


class RunCreate(BaseModel):
    workflow: str = Field(max_length=64)
    version: str | None = Field(default=None, max_length=32)
    params: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = Field(default=None, max_length=64)
    query: str | None = Field(default=None, max_length=MAX_LENGTH)
    series_uids: list[Annotated[str, Field(max_length=64)]] = Field(
        default_factory=list, max_length=100_000
    )
    limit: int | None = Field(default=None, ge=1, description="cohort size limit")
    fetch_references: bool = Field(
        default=False, description="also fetch the series the cohort's series refer to"
    )
    one_run_per_series: bool = False
    project: str = Field(
        default=DEFAULT_PROJECT,
        max_length=64,
        description="the project whose series the run reads and whose catalog its results enter",
    )


@router.get("/workflows", summary="Workflows with their parameter schemas")
def list_workflows(kahu: KahuDep, _user: CurrentUser) -> dict[str, Any]:
    formats = kahu.models.formats()
    return {
        "workflows": [
            {**w.public(), "unavailable": w.unavailable(formats)} for w in kahu.workflows.all()
        ],
        "errors": [{"source": e.source, "message": e.message} for e in kahu.workflows.errors],
    }


@router.get("/workflows/{name}", summary="One workflow")
def get_workflow(
    name: NameParam,
    kahu: KahuDep,
    _user: CurrentUser,
    version: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    workflow = kahu.workflows.get(name, version)
    return {**workflow.public(), "unavailable": workflow.unavailable(kahu.models.formats())}


@router.post("/runs", status_code=201, summary="Start a workflow on a cohort")
def create_run(body: RunCreate, kahu: KahuDep, user: CurrentUser) -> dict[str, Any]:
    """Parameters are checked against the workflow's JSON Schema: errors name the field
    (HTTP 422). The caller must be a scientist (or manager) of the project."""
    require_role(kahu.projects, user, body.project, "scientist")
    ids = launch(
        kahu.catalog,
        kahu.workflows,
        kahu.flow,
        body.workflow,
        body.params,
        RunInput(
            dataset=body.dataset,
            query=body.query,
            series_uids=tuple(body.series_uids),
            limit=body.limit,
            fetch_references=body.fetch_references,
        ),
        version=body.version,
        one_run_per_series=body.one_run_per_series,
        audit=kahu.audit,
        path="POST /api/v1/runs",
        created_by=user.name,
        project=body.project,
    )
    return {"runs": [kahu.runs.run(i).public() for i in ids]}


def _run(
    kahu: Kahu, user: UserPublic, run_id: str, needed: Role = "viewer", *, with_series: bool = False
) -> RunInfo:
    """The run, if the caller may see it (and act with ``needed``) in its project."""
    info = kahu.runs.run(run_id, with_series=with_series)
    require_in_project(kahu.projects, user, info.project, needed, f"run {run_id!r}")
    return info


@router.get("/runs", summary="Runs, newest first")
def list_runs(
    kahu: KahuDep,
    user: CurrentUser,
    state: Annotated[list[str], Query(max_length=10)] = [],  # noqa: B006 - FastAPI's idiom
    workflow: Annotated[str | None, Query(max_length=64)] = None,
    active: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    states = list(state) + (sorted(RUN_ACTIVE) if active else [])
    unknown = [s for s in states if s not in RUN_ACTIVE | RUN_DONE]
    if unknown:
        raise InvalidInput(f"unknown run states: {unknown}")
    runs = kahu.runs.runs(
        states=states,
        workflow=workflow,
        limit=limit,
        offset=offset,
        projects=readable_projects(kahu.projects, user),
    )
    return {"runs": [r.public() for r in runs]}


@router.get("/runs/{run_id}", summary="A run with its progress")
def get_run(run_id: RunParam, kahu: KahuDep, user: CurrentUser) -> dict[str, Any]:
    info = _run(kahu, user, run_id, with_series=True)
    return {**info.public(), "series": info.series}


@router.get("/runs/{run_id}/tasks", summary="A run's tasks")
def run_tasks(
    run_id: RunParam,
    kahu: KahuDep,
    user: CurrentUser,
    state: Annotated[list[str], Query(max_length=10)] = [],  # noqa: B006
) -> dict[str, Any]:
    _run(kahu, user, run_id)
    return {"tasks": [t.public() for t in kahu.runs.tasks(run_id, states=state)]}


@router.get(
    "/runs/{run_id}/tasks/{task_id}/log",
    response_class=PlainTextResponse,
    summary="A task's log (every attempt)",
)
def task_log(run_id: RunParam, task_id: int, kahu: KahuDep, user: CurrentUser) -> Response:
    _run(kahu, user, run_id)
    task = kahu.runs.task(task_id)
    if task.run_id != run_id:
        raise NotFound(f"no task {task_id} in run {run_id}")
    path = RunPaths(kahu.settings.runs_root, run_id).log(task.operator, task.series_uid)
    if not path.is_file():
        return PlainTextResponse("")
    return FileResponse(path, media_type="text/plain; charset=utf-8")


#: files listed per call (a run over a large cohort writes many)
MAX_LISTED = 10_000


@router.get("/runs/{run_id}/files", summary="The files a run's operators wrote")
def run_files(
    run_id: RunParam,
    kahu: KahuDep,
    user: CurrentUser,
    prefix: Annotated[str, Query(max_length=512, description="a folder of the run")] = "",
) -> dict[str, Any]:
    _run(kahu, user, run_id)
    root = RunPaths(kahu.settings.runs_root, run_id).root.resolve()
    start = _inside(root, prefix) if prefix else root
    files = []
    if start.is_dir():
        for path in sorted(start.rglob("*")):
            if path.is_file() and not path.is_symlink():
                files.append({"path": str(path.relative_to(root)), "size": path.stat().st_size})
                if len(files) == MAX_LISTED:
                    break
    return {"run_id": run_id, "files": files, "truncated": len(files) == MAX_LISTED}


@router.get("/runs/{run_id}/files/{path:path}", summary="Download a file a run wrote")
def run_file(run_id: RunParam, path: str, kahu: KahuDep, user: CurrentUser) -> Response:
    _run(kahu, user, run_id)
    target = _inside(RunPaths(kahu.settings.runs_root, run_id).root.resolve(), path)
    if not target.is_file():
        raise NotFound(f"run {run_id} has no file {path}")
    return FileResponse(target, filename=target.name)


def _inside(root: FsPath, relative: str) -> FsPath:
    """``root/relative`` if it stays inside ``root`` (after following links)."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root):
        raise NotFound(f"no file {relative}")
    return target


@router.post("/runs/{run_id}/cancel", summary="Cancel a run (running tasks are killed)")
def cancel_run(run_id: RunParam, kahu: KahuDep, actor: ActorDep) -> dict[str, Any]:
    runs.cancel_run(kahu, actor, run_id)
    return kahu.runs.run(run_id, with_series=False).public()


@router.post("/runs/{run_id}/retry", summary="Run the failed and cancelled tasks again")
def retry_run(run_id: RunParam, kahu: KahuDep, actor: ActorDep) -> dict[str, Any]:
    count = runs.retry_run(kahu, actor, run_id).result
    return {**kahu.runs.run(run_id, with_series=False).public(), "retried_tasks": count}


@router.get("/pending", summary="Human-in-the-loop tasks waiting for a user")
def pending(kahu: KahuDep, user: CurrentUser) -> dict[str, Any]:
    return {"tasks": [t.public() for t in pending_steps(kahu, user)]}


def pending_steps(kahu: Kahu, user: UserPublic) -> list[TaskInfo]:
    """Human steps waiting in the caller's projects (the API's route and the pages')."""
    tasks = kahu.runs.tasks(states=["waiting_input"])
    readable = readable_projects(kahu.projects, user)
    if readable is not None:
        projects = kahu.runs.projects_of(t.run_id for t in tasks)
        tasks = [t for t in tasks if projects.get(t.run_id) in readable]
    return tasks


@router.post("/pending/{task_id}/complete", summary="Complete a human step (optional files)")
async def complete_pending(
    task_id: int, request: Request, kahu: KahuDep, user: CurrentUser
) -> dict[str, Any]:
    """Form field ``files`` (any number) lands in the task's output folder, where the next
    operators read it; then the run continues. Scientists of the run's project only."""
    return (await complete_step(kahu, user, task_id, request)).public()


async def complete_step(kahu: Kahu, user: UserPublic, task_id: int, request: Request) -> TaskInfo:
    """Complete a human step: the request's multipart ``files`` (if any) land in the task's
    output folder, then the run continues (the API's route and the runs page use this)."""
    task = kahu.runs.task(task_id)
    project = kahu.runs.projects_of([task.run_id]).get(task.run_id, "")
    require_in_project(kahu.projects, user, project, "scientist", f"task {task_id}")
    if task.state != "waiting_input":
        raise InvalidInput(f"task {task_id} is {task.state}, not waiting for a user")
    out = RunPaths(kahu.settings.runs_root, task.run_id).out_dir(task.operator, task.series_uid)
    out.mkdir(parents=True, exist_ok=True)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=100, max_part_size=MAX_UPLOAD) as form:
            uploads = [
                u
                for u in form.getlist("files")
                if not (isinstance(u, UploadFile) and not u.filename)
            ]
            for upload in uploads:
                if not isinstance(upload, UploadFile):
                    raise InvalidInput("'files' must be file parts")
                _safe_name(upload.filename or "")
            for upload in uploads:
                assert isinstance(upload, UploadFile)
                with open(out / _safe_name(upload.filename or ""), "wb") as fh:
                    while chunk := await upload.read(1024 * 1024):
                        fh.write(chunk)
    kahu.flow.complete(task_id)
    return kahu.runs.task(task_id)


def _safe_name(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if not base or base in (".", "..") or base.startswith(".") or len(base) > 255:
        raise InvalidInput(f"unsafe file name {name!r}")
    return base


@router.get("/series/{uid}/lineage", summary="What a series was derived from and into")
def lineage(
    uid: Annotated[str, Path(max_length=64)], kahu: KahuDep, scope: Scope
) -> dict[str, Any]:
    return kahu.lineage.of(uid, scope.condition())


class TriggerCreate(BaseModel):
    name: str = Field(max_length=64)
    workflow: str = Field(max_length=64)
    query: str = Field(
        default="", max_length=MAX_LENGTH, description="on arrival: a completed series matches"
    )
    cron: str = Field(default="", max_length=128, description="on a schedule: cron expression")
    params: dict[str, Any] = Field(default_factory=dict)
    dataset: str | None = Field(default=None, max_length=64, description="schedule's cohort")
    cohort_query: str | None = Field(
        default=None, max_length=MAX_LENGTH, description="schedule's cohort"
    )
    limit: int | None = Field(default=None, ge=1)
    project: str = Field(
        default=DEFAULT_PROJECT, max_length=64, description="the project of its runs"
    )


class TriggerChange(BaseModel):
    enabled: bool


@router.get("/triggers", summary="Arrival rules and schedules")
def list_triggers(kahu: KahuDep, user: CurrentUser) -> dict[str, Any]:
    readable = readable_projects(kahu.projects, user)
    return {
        "triggers": [
            t.public() for t in kahu.triggers.all() if readable is None or t.project in readable
        ]
    }


@router.post("/triggers", status_code=201, summary="Add an arrival rule or a schedule")
def create_trigger(body: TriggerCreate, kahu: KahuDep, actor: ActorDep) -> dict[str, Any]:
    done = triggers.add_trigger(
        kahu,
        actor,
        body.name,
        body.workflow,
        query=body.query,
        cron=body.cron,
        params=body.params,
        run_input=RunInput(dataset=body.dataset, query=body.cohort_query, limit=body.limit),
        project=body.project,
    )
    public: dict[str, Any] = done.result.public()
    return public


@router.patch("/triggers/{name}", summary="Enable or disable a trigger")
def change_trigger(
    name: NameParam, body: TriggerChange, kahu: KahuDep, actor: ActorDep
) -> dict[str, Any]:
    triggers.set_enabled(kahu, actor, name, body.enabled)
    return next(t.public() for t in kahu.triggers.all() if t.name == name)


@router.delete("/triggers/{name}", status_code=204, summary="Remove a trigger")
def delete_trigger(name: NameParam, kahu: KahuDep, actor: ActorDep) -> Response:
    triggers.remove_trigger(kahu, actor, name)
    return Response(status_code=204)
