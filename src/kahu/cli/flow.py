"""``kahu workflows``, ``kahu run`` and ``kahu runs``: the workflow commands."""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer

from kahu.cli.common import DbOpt, HomeOpt, _fail, _guard, _open, _settings

workflows_app = typer.Typer(help="List and inspect workflows.", no_args_is_help=True)
runs_app = typer.Typer(help="Watch, cancel and retry workflow runs.", no_args_is_help=True)
triggers_app = typer.Typer(
    help="Start workflows on arrival (a query) or on a schedule (cron).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(workflows_app, name="workflows")
    app.add_typer(runs_app, name="runs")
    app.add_typer(triggers_app, name="triggers")
    app.command("run")(_guard(run))


def _value(text: str) -> Any:
    """A ``--param`` value: JSON where it parses (numbers, lists, true), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _params(items: list[str] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            _fail(f"--param wants key=value, not {item!r}")
        params[key] = _value(text)
    return params


@workflows_app.command("list")
@_guard
def workflows_list(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Every workflow: name, version, title; and definitions that failed to load."""
    with _open(_settings(home, database_url)) as kahu:
        formats = kahu.models.formats()
        for workflow in kahu.workflows.all():
            why = workflow.unavailable(formats)
            typer.echo(
                f"{workflow.name}\t{workflow.version}\t{workflow.title or ''}"
                + (f"\tunavailable: {why}" if why else "")
            )
        for error in kahu.workflows.errors:
            typer.secho(f"not loaded: {error.source}: {error.message}", err=True, fg="red")


@workflows_app.command("show")
@_guard
def workflows_show(name: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """One workflow as JSON: operators, parameters schema, metadata."""
    with _open(_settings(home, database_url)) as kahu:
        workflow = kahu.workflows.get(name)
        shown = {**workflow.public(), "unavailable": workflow.unavailable(kahu.models.formats())}
        typer.echo(json.dumps(shown, indent=2))


def run(
    workflow: Annotated[str, typer.Argument(help="workflow name")],
    dataset: Annotated[str | None, typer.Option(help="run on this dataset")] = None,
    query: Annotated[str | None, typer.Option(help="run on the series this query finds")] = None,
    series: Annotated[list[str] | None, typer.Option(help="a SeriesInstanceUID (repeat)")] = None,
    param: Annotated[
        list[str] | None, typer.Option(help="key=value (value as JSON where it parses)")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="at most this many series")] = None,
    fetch_references: Annotated[bool, typer.Option(help="add the series they refer to")] = False,
    one_run_per_series: Annotated[bool, typer.Option(help="a separate run per series")] = False,
    project: Annotated[
        str, typer.Option(help="the project whose series it reads and its results enter")
    ] = "default",
    detach: Annotated[
        bool, typer.Option(help="only create the run: a running server executes it")
    ] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Start a workflow on a cohort and, unless --detach, run it here until it ends."""
    from kahu.flow.cohort import RunInput
    from kahu.flow.launch import launch

    params = _params(param)
    settings = _settings(home, database_url, dicom={"enabled": False})
    with _open(settings) as kahu:
        ids = launch(
            kahu.catalog,
            kahu.workflows,
            kahu.flow,
            workflow,
            params,
            RunInput(dataset, query, tuple(series or ()), limit, fetch_references),
            one_run_per_series=one_run_per_series,
            audit=kahu.audit,
            path="cli",
            created_by="cli",
            project=project,
        )
        for run_id in ids:
            typer.echo(run_id)
        if detach:
            return
        kahu.flow.start()
        states = {}
        try:
            for run_id in ids:
                while (state := kahu.runs.run(run_id, with_series=False).state) not in (
                    "succeeded",
                    "failed",
                    "cancelled",
                ):
                    time.sleep(0.2)
                states[run_id] = state
        except KeyboardInterrupt:
            for run_id in ids:
                kahu.flow.cancel(run_id)
            raise
        finally:
            kahu.flow.stop()
    for run_id, state in states.items():
        typer.echo(f"{run_id}\t{state}", err=True)
    if any(state != "succeeded" for state in states.values()):
        raise typer.Exit(1)


@runs_app.command("list")
@_guard
def runs_list(
    active: Annotated[bool, typer.Option(help="only queued, running or waiting runs")] = False,
    limit: Annotated[int, typer.Option(min=1)] = 50,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Runs, newest first: id, workflow, state, done/total tasks, created."""
    from kahu.flow.states import RUN_ACTIVE

    with _open(_settings(home, database_url)) as kahu:
        for info in kahu.runs.runs(states=sorted(RUN_ACTIVE) if active else (), limit=limit):
            progress = info.public()["progress"]
            typer.echo(
                f"{info.id}\t{info.workflow}\t{info.state}\t"
                f"{progress['done']}/{progress['total']}\t{info.created_at:%Y-%m-%d %H:%M:%S}"
            )


@runs_app.command("show")
@_guard
def runs_show(run_id: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """A run and its tasks as JSON."""
    with _open(_settings(home, database_url)) as kahu:
        info = kahu.runs.run(run_id)
        body = {**info.public(), "tasks": [t.public() for t in kahu.runs.tasks(run_id)]}
        typer.echo(json.dumps(body, indent=2, default=str))


@runs_app.command("cancel")
@_guard
def runs_cancel(run_id: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Cancel a run (the engine that runs it kills its tasks)."""
    from kahu.actions import Actor, runs

    with _open(_settings(home, database_url)) as kahu:
        runs.cancel_run(kahu, Actor.cli(), run_id)
        typer.echo(kahu.runs.run(run_id, with_series=False).state)


@runs_app.command("retry")
@_guard
def runs_retry(run_id: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Queue the failed and cancelled tasks of a finished run again."""
    from kahu.actions import Actor, runs

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(f"{runs.retry_run(kahu, Actor.cli(), run_id).result} tasks queued again")


@triggers_app.command("add")
@_guard
def triggers_add(
    name: str,
    workflow: Annotated[str, typer.Option(help="workflow to start")],
    query: Annotated[str, typer.Option(help="on arrival: series matching this query")] = "",
    cron: Annotated[str, typer.Option(help="on a schedule: a cron expression")] = "",
    dataset: Annotated[str | None, typer.Option(help="schedule: run on this dataset")] = None,
    cohort_query: Annotated[str | None, typer.Option(help="schedule: run on this query")] = None,
    param: Annotated[list[str] | None, typer.Option(help="key=value")] = None,
    project: Annotated[str, typer.Option(help="the project of its runs")] = "default",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Add an arrival rule (--query) or a schedule (--cron with --dataset or --cohort-query)."""
    from kahu.actions import Actor, triggers
    from kahu.flow.cohort import RunInput

    params = _params(param)
    with _open(_settings(home, database_url)) as kahu:
        info = triggers.add_trigger(
            kahu,
            Actor.cli(),
            name,
            workflow,
            query=query,
            cron=cron,
            params=params,
            run_input=RunInput(dataset=dataset, query=cohort_query),
            project=project,
        ).result
        typer.echo(json.dumps(info.public(), default=str))


@triggers_app.command("list")
@_guard
def triggers_list(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Triggers: name, kind, workflow, query or cron, enabled."""
    with _open(_settings(home, database_url)) as kahu:
        for t in kahu.triggers.all():
            typer.echo(f"{t.name}\t{t.kind}\t{t.workflow}\t{t.query or t.cron}\t{t.enabled}")


@triggers_app.command("remove")
@_guard
def triggers_remove(name: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Remove a trigger (the runs it started stay)."""
    from kahu.actions import Actor, triggers

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(triggers.remove_trigger(kahu, Actor.cli(), name).message)


@triggers_app.command("enable")
@_guard
def triggers_enable(name: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Let a disabled trigger fire again."""
    from kahu.actions import Actor, triggers

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(triggers.set_enabled(kahu, Actor.cli(), name, True).message)


@triggers_app.command("disable")
@_guard
def triggers_disable(name: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Keep a trigger without letting it fire."""
    from kahu.actions import Actor, triggers

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(triggers.set_enabled(kahu, Actor.cli(), name, False).message)
