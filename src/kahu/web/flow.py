"""Workflows (the launch form built from a workflow's parameters), runs (progress, cancel,
retry) and the human steps a run waits on."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from kahu.actions import runs
from kahu.api.deps import KahuDep
from kahu.api.flow import pending_steps
from kahu.auth.policy import require_in_project, require_role
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.core import Kahu
from kahu.errors import InvalidInput, InvalidParameters, KahuError
from kahu.flow.cohort import RunInput
from kahu.flow.launch import launch
from kahu.flow.model import Workflow
from kahu.flow.states import RUN_ACTIVE, TASK_DONE
from kahu.search.query import MAX_LENGTH
from kahu.web.session import Session, flash, page, session

router = APIRouter(include_in_schema=False)


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


def parameter_fields(schema: Mapping[str, Any]) -> list[Field]:
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


def typed_values(
    fields: list[Field], form: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, str]]:
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
    return page(
        request,
        "workflows.html",
        {
            "s": s,
            "page": "workflows",
            "workflows": kahu.workflows.all(),
            "formats": kahu.models.formats(),
            "problems": kahu.workflows.errors,
        },
    )


def _model_choices(kahu: Kahu, s: Session, workflow: Workflow, fields: list[Field]) -> list[Field]:
    """A parameter naming a model becomes a choice of the installed models (of its formats)
    that the caller's projects may use: ``name`` (its highest version) or ``name@version``."""
    from kahu.actions.models import visible

    wanted = workflow.model_parameters()
    if not wanted:
        return fields
    models = visible(kahu, s.user)
    out = []
    for f in fields:
        if f.name in wanted:
            fit = [m for m in models if not wanted[f.name] or m.format in wanted[f.name]]
            names = sorted({m.name for m in fit})
            f = replace(f, kind="enum", choices=[*names, *(m.ref for m in fit)])
        out.append(f)
    return out


def _launch_context(kahu: Kahu, s: Session, name: str) -> dict[str, Any]:
    workflow = kahu.workflows.get(name)
    return {
        "s": s,
        "page": "workflows",
        "workflow": workflow,
        "fields": _model_choices(kahu, s, workflow, parameter_fields(workflow.parameters)),
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
    return page(request, "launch.html", context)


@router.post("/workflows/{name}", response_class=HTMLResponse)
async def launch_form(request: Request, kahu: KahuDep, name: str) -> Response:
    form = await request.form()
    fields_in = {k: v for k, v in form.items() if isinstance(v, str)}
    return await run_in_threadpool(_launch, request, kahu, name, fields_in)


def _launch(request: Request, kahu: Kahu, name: str, form: dict[str, str]) -> Response:
    s = session(request, kahu, change=form.get("csrf", ""))
    context = _launch_context(kahu, s, name)
    values, errors = typed_values(context["fields"], form)
    cohort = {
        "dataset": form.get("dataset", "")[:64],
        "query": form.get("query", "")[:MAX_LENGTH],
        "limit": form.get("limit", "")[:12],
        "project": form.get("project", DEFAULT_PROJECT)[:64],
    }
    context.update(values=values, errors=errors, cohort=cohort)
    if errors:
        return page(request, "launch.html", context, 422)
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
        return page(request, "launch.html", context, 422)
    except ValueError:
        context["error"] = "the cohort size limit must be a whole number"
        return page(request, "launch.html", context, 422)
    except KahuError as exc:
        context["error"] = str(exc)
        return page(request, "launch.html", context, 400)
    return flash("/runs", f"Started {', '.join(ids)}.")


@router.get("/runs", response_class=HTMLResponse)
def runs_page(
    request: Request, kahu: KahuDep, msg: Annotated[str, Query(max_length=500)] = ""
) -> Response:
    s = session(request, kahu)
    runs = kahu.runs.runs(limit=100, projects=s.listed)
    active = any(r.state in RUN_ACTIVE for r in runs)
    return page(
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
    return page(
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
    do = {"cancel": runs.cancel_run, "retry": runs.retry_run}.get(action)
    try:
        if do is None:
            raise InvalidInput(f"no action {action!r}")
        message = do(kahu, s.actor(request, f"POST /runs/{{run_id}}/{action}"), run_id).message
    except KahuError as exc:
        message = f"Nothing changed: {exc}"
    return flash("/runs", message)


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
    return flash("/runs", message)
