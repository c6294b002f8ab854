"""Model actions: install (from a zip archive, a folder, or a DICOM-wrapped model in the
catalog), uninstall, say which projects may use a model, and put a model into the catalog
as a DICOM instance so that it travels to other sites. Administrators only; anyone signed in
sees the models their projects may use (:func:`visible`)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import IO, Any

from kahu.actions import Actor, Done, perform
from kahu.auth.policy import read_scope, readable_projects
from kahu.auth.users import UserPublic
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.core import Kahu
from kahu.errors import Conflict, NotFound
from kahu.flow.job import RunPaths
from kahu.models.dicom import RAW_DATA_STORAGE, unwrap, wrap
from kahu.models.manifest import InvalidModel
from kahu.models.registry import ModelInfo, split_ref


def visible(kahu: Kahu, user: UserPublic) -> list[ModelInfo]:
    """The models ``user`` may see: all for administrators, else those available to a
    project they are a member of."""
    projects = readable_projects(kahu.projects, user)
    return [
        m for m in kahu.models.all() if projects is None or any(m.available_to(p) for p in projects)
    ]


def find(kahu: Kahu, user: UserPublic, ref: str) -> ModelInfo:
    """One model ``user`` may see (``name`` or ``name@version``: the highest version)."""
    name, version = split_ref(ref)
    found = [m for m in visible(kahu, user) if m.name == name]
    if version is not None:
        found = [m for m in found if m.version == version]
    if not found:
        raise NotFound(f"no model {ref!r} is installed")
    return found[-1]


def _check_projects(kahu: Kahu, projects: list[str] | None) -> None:
    for project in projects or []:
        kahu.projects.pk(project)  # NotFound names a project that does not exist


def install(
    kahu: Kahu,
    actor: Actor,
    source: Path | IO[bytes],
    *,
    label: str,
    overrides: dict[str, Any] | None = None,
    sha256: str = "",
    projects: list[str] | None = None,
) -> Done:
    """Install the model in ``source`` (zip archive or folder; ``label`` says what it was).
    Nothing installed changes when it is refused."""

    def change() -> ModelInfo:
        _check_projects(kahu, projects)
        return kahu.models.install(
            source,
            overrides=overrides,
            sha256=sha256,
            installed_by=actor.user.name,
            source_label=label,
            projects=projects,
        )

    detail = {"source": label, "sha256": sha256, **{k: v for k, v in (overrides or {}).items()}}
    model = perform(kahu, actor, "model.install", "admin", change, detail=detail)
    return Done(f"Model {model.ref} installed ({model.format}, SHA-256 {model.sha256}).", model)


def install_from_series(
    kahu: Kahu, actor: Actor, series_uid: str, *, projects: list[str] | None = None
) -> Done:
    """Install the model a DICOM-wrapped model series of the catalog carries."""

    def change() -> ModelInfo:
        _check_projects(kahu, projects)
        scope = read_scope(kahu.projects, actor.user)
        rows = kahu.catalog.instances(scope, series_uid=series_uid)
        models = [r for r in rows if r.sop_class_uid == RAW_DATA_STORAGE]
        if not rows:
            raise NotFound(f"no series {series_uid}")
        if len(models) != 1:
            raise InvalidModel(f"series {series_uid} does not hold one Kahu model")
        archive, sha256 = unwrap(kahu.store.get(models[0].blob_key))
        return kahu.models.install(
            io.BytesIO(archive),
            sha256=sha256,
            installed_by=actor.user.name,
            source_label=f"series {series_uid}",
            projects=projects,
        )

    model = perform(
        kahu,
        actor,
        "model.install",
        "admin",
        change,
        series=[series_uid],
        detail={"source": f"series {series_uid}"},
    )
    return Done(f"Model {model.ref} installed from series {series_uid}.", model)


def _runs_using(kahu: Kahu, model: ModelInfo) -> list[str]:
    """The unfinished runs that named ``model`` (their tasks read its files)."""
    using = []
    for run_id in kahu.runs.active_run_ids():
        try:
            conf = json.loads(RunPaths(kahu.settings.runs_root, run_id).conf.read_text())
        except (OSError, ValueError):
            continue
        refs = {(m.get("name"), m.get("version")) for m in (conf.get("models") or {}).values()}
        if (model.name, model.version) in refs:
            using.append(run_id)
    return using


def uninstall(kahu: Kahu, actor: Actor, name: str, version: str) -> Done:
    """Remove an installed version; refused while an unfinished run uses it."""

    def change() -> ModelInfo:
        model = kahu.models.get(name, version)
        using = _runs_using(kahu, model)
        if using:
            raise Conflict(f"model {model.ref} is in use by run {', '.join(using)}")
        return kahu.models.uninstall(name, version)

    perform(
        kahu,
        actor,
        "model.uninstall",
        "admin",
        change,
        detail={"name": name, "version": version},
    )
    return Done(f"Model {name}@{version} uninstalled.")


def set_projects(
    kahu: Kahu, actor: Actor, name: str, version: str | None, projects: list[str] | None
) -> Done:
    """Which projects may use the model (every version, or one); None: every project."""

    def change() -> list[ModelInfo]:
        _check_projects(kahu, projects)
        return kahu.models.set_projects(name, version, projects)

    changed = perform(
        kahu,
        actor,
        "model.projects",
        "admin",
        change,
        detail={"name": name, "version": version, "projects": projects},
    )
    who = "every project" if projects is None else ", ".join(projects) or "no project"
    return Done(f"Model {name} is available to {who}.", changed)


def to_catalog(
    kahu: Kahu, actor: Actor, name: str, version: str | None, project: str = DEFAULT_PROJECT
) -> Done:
    """Store the model as a DICOM instance (Raw Data Storage) in ``project``: from there it
    goes to other sites as any series does."""

    def change() -> str:
        model = kahu.models.get(name, version)
        result = kahu.ingestor.ingest(wrap(model), source="model", project=project)
        if result.status == "rejected" or not result.series_instance_uid:
            raise InvalidModel(f"the catalog refused the model: {result.reason}")
        return result.series_instance_uid

    series_uid = perform(
        kahu,
        actor,
        "model.to-catalog",
        "admin",
        change,
        project=project,
        detail={"name": name, "version": version},
    )
    return Done(f"Model {name} stored in the catalog as series {series_uid}.", series_uid)


def export(kahu: Kahu, actor: Actor, name: str, version: str | None) -> ModelInfo:
    """A model whose files are about to leave as a zip archive (recorded: weights are the
    site's to give)."""
    return perform(
        kahu,
        actor,
        "model.export",
        "admin",
        lambda: kahu.models.get(name, version),
        detail={"name": name, "version": version},
    )
