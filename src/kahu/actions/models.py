"""Model actions: install (from a zip archive, a folder, or a DICOM-wrapped model in the
catalog), uninstall, say which projects may use a model, and put a model into the catalog
as a DICOM instance so that it travels to other sites. Administrators only; anyone signed in
sees the models their projects may use (:func:`visible`)."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from kahu.actions import Actor, Done, perform
from kahu.auth.policy import read_scope, readable_projects, require_role
from kahu.auth.users import UserPublic
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.core import Kahu
from kahu.errors import Conflict, InvalidInput, NotFound
from kahu.flow.cohort import RunInput
from kahu.flow.job import RunPaths
from kahu.flow.launch import launch
from kahu.models.archive import file_sha256, pack
from kahu.models.manifest import InvalidModel
from kahu.models.registry import ModelInfo, split_ref
from kahu.operators.documents import InvalidChunks, binary_to_dicom, dicom_to_binary


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
    """Install the model a series of the catalog carries (Kahu binary chunks of its zip,
    as :func:`to_catalog` made them at this or another site; the joined archive must match
    the SHA-256 recorded in the chunks)."""

    def change() -> ModelInfo:
        _check_projects(kahu, projects)
        rows = kahu.catalog.instances(read_scope(kahu.projects, actor.user), series_uid=series_uid)
        if not rows:
            raise NotFound(f"no series {series_uid}")
        with _scratch(kahu) as folder:
            files: list[Path] = []
            for row in rows:
                files.append(folder / f"{len(files):06d}.dcm")
                files[-1].write_bytes(kahu.store.get(row.blob_key))
            try:
                archive = dicom_to_binary(files, folder / "joined")
            except (InvalidChunks, ValueError) as exc:
                raise InvalidModel(f"series {series_uid} holds no whole model: {exc}") from None
            return kahu.models.install(
                archive,
                sha256=file_sha256(archive),
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


@contextlib.contextmanager
def _scratch(kahu: Kahu) -> Iterator[Path]:
    root = kahu.settings.models_root / ".staging"
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix="work-") as folder:
        yield Path(folder)


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
    """Store the model in ``project`` as one DICOM series: its zip archive in Kahu's binary
    chunks (Encapsulated Document instances, which every PACS stores). From there it goes to
    other sites as any series does, and installs there with :func:`install_from_series`."""

    def change() -> str:
        model = kahu.models.get(name, version)
        with _scratch(kahu) as folder:
            archive = pack(model.path, folder / f"{model.name}-{model.version}.kahu-model.zip")
            chunks = binary_to_dicom(
                archive, series_description=f"Model {model.name} {model.version}"
            )
            series_uid = ""
            for ds in chunks:
                out = io.BytesIO()
                ds.save_as(out, enforce_file_format=True)
                result = kahu.ingestor.ingest(out.getvalue(), source="model", project=project)
                if result.status == "rejected" or not result.series_instance_uid:
                    raise InvalidModel(f"the catalog refused the model: {result.reason}")
                series_uid = result.series_instance_uid
        return series_uid

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


#: the workflow that runs an installed model of each format on a series
MODEL_WORKFLOWS = {
    "nnunetv2": "nnunet-inference",
    "totalsegmentator": "totalsegmentator",
    "monai-bundle": "monai-bundle",
}


def runnable(kahu: Kahu, user: UserPublic, projects: list[str]) -> list[ModelInfo]:
    """The models ``user`` can run on series (a workflow runs their format) in one of
    ``projects``."""
    return [
        m for m in visible(kahu, user)
        if m.format in MODEL_WORKFLOWS and any(m.available_to(p) for p in projects)
    ]  # fmt: skip


def segment(
    kahu: Kahu, user: UserPublic, ref: str, project: str, cohort: RunInput, path: str
) -> tuple[ModelInfo, list[str]]:
    """Launch the workflow of model ``ref``'s format on ``cohort`` in ``project`` (a
    scientist's launch, recorded as any launch is). Returns the model and the run ids."""
    require_role(kahu.projects, user, project, "scientist")
    chosen = kahu.models.resolve(ref, project)
    if chosen.format not in MODEL_WORKFLOWS:
        raise InvalidInput(f"{chosen.ref} is a {chosen.format} model; no workflow runs it here")
    ids = launch(
        kahu.catalog, kahu.workflows, kahu.flow, MODEL_WORKFLOWS[chosen.format],
        {"model": chosen.ref}, cohort, audit=kahu.audit, path=path, created_by=user.name,
        project=project,
    )  # fmt: skip
    return chosen, ids
