"""Starting runs: one entry for the API, the CLI and the triggers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kahu.audit import AuditLog
from kahu.catalog.repository import DEFAULT_PROJECT, Catalog
from kahu.errors import Conflict, InvalidInput, InvalidParameters, NotFound
from kahu.flow.cohort import RunInput, modalities, resolve
from kahu.flow.engine import Engine
from kahu.flow.model import Workflow
from kahu.flow.registry import WorkflowRegistry


def resolve_models(
    engine: Engine, workflow: Workflow, values: dict[str, Any], project: str
) -> dict[str, dict[str, Any]]:
    """The installed model each model parameter names, for ``project``; the parameter's
    value becomes ``name@version`` (the run is pinned to that version). Errors name the
    parameter (422), as a parameter outside its schema does."""
    wanted = workflow.model_parameters()
    found: dict[str, dict[str, Any]] = {}
    errors = []
    for key, formats in wanted.items():
        if key not in values:
            continue
        try:
            if engine.models is None:
                raise NotFound("this instance has no model registry")
            model = engine.models.resolve(str(values[key]), project, formats)
        except (NotFound, InvalidInput) as exc:
            errors.append({"field": key, "message": str(exc)})
            continue
        values[key] = model.ref
        found[key] = model.run_record()
    if errors:
        raise InvalidParameters(errors)
    return found


def check_inputs(
    catalog: Catalog, models: dict[str, dict[str, Any]], series: list[str], project: str
) -> None:
    """Refuse (422, naming the parameter) a cohort with series of a modality a model does
    not take (its manifest's ``inputs.modality``; empty: any)."""
    errors, found = [], None
    for key, record in models.items():
        wanted = ((record.get("manifest") or {}).get("inputs") or {}).get("modality") or []
        if not wanted:
            continue
        found = found if found is not None else modalities(catalog, series, project)
        wrong = []
        for uid, modality in found.items():
            if modality not in wanted:
                wrong.append(f"{uid} ({modality or 'no modality'})")
        if wrong:
            errors.append({"field": key, "message": (
                f"{record['name']}@{record['version']} takes {' or '.join(wanted)} series; "
                f"{len(wrong)} of the cohort are not: {', '.join(wrong[:3])}"
            )})  # fmt: skip
    if errors:
        raise InvalidParameters(errors)


def check_fits(engine: Engine, workflow: Workflow, models: dict[str, dict[str, Any]]) -> None:
    """Refuse (409) a run whose models need more than this site has (memory, a GPU)."""
    for op in workflow.operators:
        if not op.models or op.kind == "application":
            continue
        decision = engine.admission.check(op.fitted(models).resources)
        if decision.never:
            names = ", ".join(
                f"{models[k]['name']}@{models[k]['version']}" for k in op.models if k in models
            )
            raise Conflict(f"operator {op.name} with model {names} {decision.reason}")


def launch(
    catalog: Catalog,
    registry: WorkflowRegistry,
    engine: Engine,
    workflow_name: str,
    params: Mapping[str, Any] | None,
    run_input: RunInput,
    *,
    version: str | None = None,
    one_run_per_series: bool = False,
    trigger: str = "manual",
    created_by: str = "",
    project: str = DEFAULT_PROJECT,
    audit: AuditLog,
    path: str = "",
) -> list[str]:
    """Validate the parameters (errors name the field), resolve the cohort within
    ``project`` and create the run, or one run per series. Returns the run ids.

    The launch is recorded in the ``audit`` log first (by whom, which workflow, which series;
    ``path`` says how it came: a route, "cli", "trigger"); no record, no run."""
    workflow = registry.get(workflow_name, version)
    if why := workflow.unavailable(engine.models.formats() if engine.models else set()):
        raise Conflict(why)
    values = workflow.validate_parameters(params)
    models = resolve_models(engine, workflow, values, project)
    check_fits(engine, workflow, models)
    series, missing = resolve(catalog, run_input, project)
    check_inputs(catalog, models, series, project)
    groups = [[uid] for uid in series] if one_run_per_series else [series]
    manual = trigger == "manual"
    record = audit.record(
        created_by if manual else trigger,
        "run.launch",
        kind="user" if manual and created_by != "cli" else "system",
        path=path,
        project=project,
        series=series,
        detail={
            "workflow": workflow.name,
            "version": workflow.version,
            "params": dict(values),
            "created_by": created_by,
        },
    )
    try:
        ids = [
            engine.create_run(
                workflow,
                values,
                group,
                input=run_input.public(),
                missing=missing,
                trigger=trigger,
                created_by=created_by,
                project=project,
                models=models,
            )
            for group in groups
        ]
    except BaseException:
        audit.finish(record, 500)
        raise
    audit.finish(record, 201, {"runs": ids})
    return ids
