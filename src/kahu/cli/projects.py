"""``kahu projects``: projects, their members and roles, AE title mappings, series."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from kahu.cli.common import DbOpt, HomeOpt, _guard, _open, _settings

projects_app = typer.Typer(
    help="Projects: who may see which series, and where arriving data goes.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(projects_app, name="projects")


@projects_app.command("list")
@_guard
def projects_list(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Projects with their series counts and AE titles."""
    with _open(_settings(home, database_url)) as kahu:
        for p in kahu.projects.all():
            typer.echo(f"{p.name}\t{p.series_count} series\t{','.join(p.ae_titles)}")


@projects_app.command("show")
@_guard
def projects_show(name: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """A project as JSON: description, series count, members and roles, AE titles."""
    with _open(_settings(home, database_url)) as kahu:
        typer.echo(json.dumps(kahu.projects.get(name).public(), indent=2, default=str))


@projects_app.command("create")
@_guard
def projects_create(
    name: str,
    description: Annotated[str, typer.Option()] = "",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create a project."""
    from kahu.actions import Actor
    from kahu.actions import projects as actions

    with _open(_settings(home, database_url)) as kahu:
        actions.create_project(kahu, Actor.cli(), name, description)
    typer.echo(f"created project {name}")


@projects_app.command("delete")
@_guard
def projects_delete(name: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Delete a project (its series stay in the catalog and in their other projects)."""
    from kahu.actions import Actor
    from kahu.actions import projects as actions

    with _open(_settings(home, database_url)) as kahu:
        actions.delete_project(kahu, Actor.cli(), name)
    typer.echo(f"deleted project {name}")


@projects_app.command("add-member")
@_guard
def projects_add_member(
    project: str,
    user: str,
    role: Annotated[str, typer.Option(help="viewer, scientist or manager")] = "viewer",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Give a user a role in a project (or change it)."""
    from kahu.actions import Actor
    from kahu.actions import projects as actions

    with _open(_settings(home, database_url)) as kahu:
        actions.set_member(kahu, Actor.cli(), project, user, role)
    typer.echo(f"{user} is {role} in {project}")


@projects_app.command("remove-member")
@_guard
def projects_remove_member(
    project: str, user: str, home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """Take a user out of a project."""
    from kahu.actions import Actor
    from kahu.actions import projects as actions

    with _open(_settings(home, database_url)) as kahu:
        actions.remove_member(kahu, Actor.cli(), project, user)
    typer.echo(f"removed {user} from {project}")


@projects_app.command("map-ae")
@_guard
def projects_map_ae(
    ae_title: str, project: str, home: HomeOpt = None, database_url: DbOpt = None
) -> None:
    """Data sent to this called AE title enters the project."""
    from kahu.actions import Actor
    from kahu.actions import projects as actions

    with _open(_settings(home, database_url)) as kahu:
        actions.map_ae(kahu, Actor.cli(), ae_title, project)
    typer.echo(f"{ae_title} -> {project}")


@projects_app.command("unmap-ae")
@_guard
def projects_unmap_ae(ae_title: str, home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Data sent to this AE title enters the default project again."""
    from kahu.actions import Actor
    from kahu.actions import projects as actions

    with _open(_settings(home, database_url)) as kahu:
        actions.unmap_ae(kahu, Actor.cli(), ae_title)
    typer.echo(f"{ae_title} unmapped")


@projects_app.command("copy-series")
@_guard
def projects_copy_series(
    target: str,
    series: Annotated[list[str], typer.Argument(help="SeriesInstanceUIDs")],
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Add series to a project (they stay in their other projects)."""
    from kahu.actions import Actor
    from kahu.actions import projects as actions

    with _open(_settings(home, database_url)) as kahu:
        added = actions.add_series(kahu, Actor.cli(), target, series).result
    typer.echo(f"added {added} series to {target}")


@projects_app.command("move-series")
@_guard
def projects_move_series(
    source: str,
    target: str,
    series: Annotated[list[str], typer.Argument(help="SeriesInstanceUIDs")],
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Move series from one project to another."""
    from kahu.actions import Actor
    from kahu.actions import projects as actions

    with _open(_settings(home, database_url)) as kahu:
        actions.add_series(kahu, Actor.cli(), target, series, move_from=source)
    typer.echo(f"moved {len(series)} series from {source} to {target}")
