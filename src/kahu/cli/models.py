"""``kahu models``: the AI models installed at this site (docs/models.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kahu.cli.common import DbOpt, HomeOpt, _fail, _guard, _open, _settings

models_app = typer.Typer(
    help="AI models: install offline (zip, folder, DICOM), list, show, uninstall, projects.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")


def _projects(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [p.strip() for p in value.split(",") if p.strip()]


@models_app.command("list")
@_guard
def models_list(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Installed models: name@version, format, labels, who may use them."""
    with _open(_settings(home, database_url)) as kahu:
        for m in kahu.models.all():
            who = "all projects" if m.projects is None else ",".join(m.projects) or "no project"
            labels = ",".join(label.name for label in m.manifest.labels.values())
            typer.echo(f"{m.ref}\t{m.format}\t{labels}\t{who}")


@models_app.command("show")
@_guard
def models_show(
    model: Annotated[str, typer.Argument(help="name or name@version")],
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """A model as JSON, with its README."""
    from kahu.models.registry import split_ref

    with _open(_settings(home, database_url)) as kahu:
        info = kahu.models.get(*split_ref(model))
        typer.echo(json.dumps(info.public(readme=True) | {"path": str(info.path)}, indent=2))


Source = Annotated[
    Path | None,
    typer.Argument(help="a zip archive or a folder (nnU-Net results, MONAI bundle, ...)"),
]


@models_app.command("install")
@_guard
def models_install(
    source: Source = None,
    series: Annotated[
        str | None, typer.Option(help="install the DICOM-wrapped model of this series")
    ] = None,
    name: Annotated[str | None, typer.Option(help="name (else from the model)")] = None,
    version: Annotated[str | None, typer.Option(help="version (else from the model)")] = None,
    licence: Annotated[str | None, typer.Option(help="licence, when the model has none")] = None,
    title: Annotated[str | None, typer.Option()] = None,
    labels: Annotated[
        Path | None,
        typer.Option(help="JSON file: label value -> {name, code, category, colour}"),
    ] = None,
    sha256: Annotated[
        str, typer.Option(help="refuse unless the archive or the model's files have it")
    ] = "",
    projects: Annotated[
        str | None, typer.Option(help="comma-separated projects that may use it (else all)")
    ] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Install a model from a zip archive, a folder, or a model series in the catalog.
    ``kahu models import`` is the same (for a weights folder such as TotalSegmentator's)."""
    from kahu.actions import Actor
    from kahu.actions import models as actions

    if (source is None) == (series is None):
        _fail("give a zip archive or folder, or --series")
    overrides = {"name": name, "version": version, "licence": licence, "title": title}
    if labels is not None:
        try:
            overrides["labels"] = json.loads(labels.read_text())
        except (OSError, ValueError) as exc:
            _fail(f"--labels: {exc}")
    with _open(_settings(home, database_url)) as kahu:
        if series is not None:
            done = actions.install_from_series(
                kahu, Actor.cli(), series, projects=_projects(projects)
            )
        else:
            assert source is not None
            done = actions.install(
                kahu,
                Actor.cli(),
                source,
                label=f"{'folder' if source.is_dir() else 'archive'} {source.resolve()}",
                overrides={k: v for k, v in overrides.items() if v is not None},
                sha256=sha256,
                projects=_projects(projects),
            )
    typer.echo(done.message)


models_app.command("import", help="Same as install: a model or weights folder, or a zip.")(
    models_install
)


@models_app.command("uninstall")
@_guard
def models_uninstall(
    model: Annotated[str, typer.Argument(help="name@version")],
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Remove an installed version (refused while an unfinished run uses it)."""
    from kahu.actions import Actor
    from kahu.actions import models as actions
    from kahu.models.registry import split_ref

    name, version = split_ref(model)
    if version is None:
        _fail("name the version to uninstall: name@version")
    assert version is not None
    with _open(_settings(home, database_url)) as kahu:
        typer.echo(actions.uninstall(kahu, Actor.cli(), name, version).message)


@models_app.command("projects")
@_guard
def models_projects(
    model: Annotated[str, typer.Argument(help="name (every version) or name@version")],
    only: Annotated[
        str | None, typer.Option(help="comma-separated projects that may use it")
    ] = None,
    everywhere: Annotated[bool, typer.Option(help="every project may use it")] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Which projects may use a model."""
    from kahu.actions import Actor
    from kahu.actions import models as actions
    from kahu.models.registry import split_ref

    if everywhere == (only is not None):
        _fail("give --only PROJECTS or --everywhere")
    with _open(_settings(home, database_url)) as kahu:
        done = actions.set_projects(
            kahu, Actor.cli(), *split_ref(model), None if everywhere else _projects(only)
        )
    typer.echo(done.message)


@models_app.command("to-catalog")
@_guard
def models_to_catalog(
    model: Annotated[str, typer.Argument(help="name or name@version")],
    project: Annotated[str, typer.Option()] = "default",
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Store a model in the catalog as a DICOM instance, to send it to another site."""
    from kahu.actions import Actor
    from kahu.actions import models as actions
    from kahu.models.registry import split_ref

    with _open(_settings(home, database_url)) as kahu:
        typer.echo(actions.to_catalog(kahu, Actor.cli(), *split_ref(model), project).message)


@models_app.command("export")
@_guard
def models_export(
    model: Annotated[str, typer.Argument(help="name or name@version")],
    target: Annotated[Path, typer.Argument(help="the zip archive to write")],
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Write a model's files as a zip archive (``kahu models install`` takes it)."""
    from kahu.actions import Actor
    from kahu.actions import models as actions
    from kahu.models.archive import pack
    from kahu.models.registry import split_ref

    with _open(_settings(home, database_url)) as kahu:
        info = actions.export(kahu, Actor.cli(), *split_ref(model))
        pack(info.path, target)
    typer.echo(f"wrote {target} ({info.ref}, SHA-256 of the files {info.sha256})")
