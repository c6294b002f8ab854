"""The model registry: install a model from a zip archive or a folder, list, show,
uninstall, say which projects may use it, and find the one a run asks for.

An install happens in a staging folder: the files are unpacked (or copied) there, the
manifest is read and checked, the digest computed and compared with the one expected; only
then is the row written and the folder moved into place. Whatever fails on the way, the
staging folder is removed and the installed models stay as they were.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select

from kahu.catalog.database import Database
from kahu.errors import Conflict, NotFound
from kahu.models.archive import Digest, Limits, copy_folder, model_root, tree_digest, unpack_zip
from kahu.models.archive import file_sha256 as file_sha256
from kahu.models.manifest import MANIFEST_NAME, InvalidModel, Manifest, detect
from kahu.models.tables import InstalledModel

STAGING = ".staging"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """An installed model as the rest of Kahu sees it."""

    name: str
    version: str
    format: str
    sha256: str
    size_bytes: int
    files: int
    manifest: Manifest
    readme: str
    #: the projects that may use it; None: every project
    projects: tuple[str, ...] | None
    source: str
    installed_by: str
    installed_at: datetime
    path: Path

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def available_to(self, project: str) -> bool:
        return self.projects is None or project in self.projects

    def public(self, *, readme: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "title": self.manifest.title,
            "description": self.manifest.description,
            "licence": self.manifest.licence,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "files": self.files,
            "labels": {str(k): v.model_dump(mode="json") for k, v in self.manifest.labels.items()},
            "inputs": self.manifest.inputs.model_dump(mode="json"),
            "resources": self.manifest.resources.model_dump(mode="json"),
            "projects": list(self.projects) if self.projects is not None else None,
            "source": self.source,
            "installed_by": self.installed_by,
            "installed_at": self.installed_at.isoformat(),
        }
        if readme:
            data["readme"] = self.readme
        return data

    def run_record(self) -> dict[str, Any]:
        """What a run keeps of the model it used (``conf.json`` → ``models``)."""
        return {
            "name": self.name,
            "version": self.version,
            "format": self.format,
            "sha256": self.sha256,
            "path": str(self.path),
            "manifest": self.manifest.public(),
        }


def _version_key(version: str) -> tuple[Any, ...]:
    from packaging.version import InvalidVersion, Version

    try:
        return (1, Version(version), "")
    except InvalidVersion:
        return (0, Version("0"), version)


def split_ref(ref: str) -> tuple[str, str | None]:
    """``name`` or ``name@version``."""
    name, _, version = ref.strip().partition("@")
    return name, version or None


class ModelRegistry:
    """Installed models: rows in the ``models`` table, files under ``root``."""

    def __init__(self, db: Database, root: Path, limits: Limits) -> None:
        self.db = db
        self.root = root
        self.limits = limits

    def _info(self, row: InstalledModel) -> ModelInfo:
        return ModelInfo(
            name=row.name,
            version=row.version,
            format=row.format,
            sha256=row.sha256,
            size_bytes=row.size_bytes,
            files=row.files,
            manifest=Manifest.model_validate(row.manifest),
            readme=row.readme,
            projects=tuple(row.projects) if row.projects is not None else None,
            source=row.source,
            installed_by=row.installed_by,
            installed_at=row.installed_at,
            path=self.folder(row.name, row.version),
        )

    def folder(self, name: str, version: str) -> Path:
        """Where an installed model's files are (name and version are checked patterns)."""
        return self.root / name / version / "files"

    # -- reading -----------------------------------------------------------------------------

    def all(self) -> list[ModelInfo]:
        with self.db.read() as session:
            rows = session.scalars(select(InstalledModel)).all()
            found = [self._info(r) for r in rows]
        return sorted(found, key=lambda m: (m.name, _version_key(m.version)))

    def formats(self) -> set[str]:
        """The formats of the installed models (a workflow may need one of them)."""
        return {m.format for m in self.all()}

    def versions(self, name: str) -> list[ModelInfo]:
        return [m for m in self.all() if m.name == name]

    def get(self, name: str, version: str | None = None) -> ModelInfo:
        """A version of a model (the highest when ``version`` is None)."""
        found = self.versions(name)
        if version is not None:
            found = [m for m in found if m.version == version]
        if not found:
            what = f"{name}@{version}" if version else name
            raise NotFound(f"no model {what!r} is installed")
        return found[-1]

    def resolve(self, ref: str, project: str, formats: tuple[str, ...] = ()) -> ModelInfo:
        """The model ``ref`` (``name`` or ``name@version``) names for a run of ``project``:
        the highest version that project may use. Models of other projects do not exist to
        it (the same error as a model that is not installed)."""
        name, version = split_ref(ref)
        found = [m for m in self.versions(name) if m.available_to(project)]
        if version is not None:
            found = [m for m in found if m.version == version]
        if not found:
            raise NotFound(f"no model {ref!r} is installed for project {project!r}")
        model = found[-1]
        if formats and model.format not in formats:
            raise InvalidModel(
                f"model {model.ref} is a {model.format} model; this needs {' or '.join(formats)}"
            )
        return model

    # -- changing ----------------------------------------------------------------------------

    def install(
        self,
        source: Path | IO[bytes],
        *,
        overrides: dict[str, Any] | None = None,
        sha256: str = "",
        installed_by: str = "",
        source_label: str = "",
        projects: list[str] | None = None,
    ) -> ModelInfo:
        """Install the model in ``source``: a zip archive (a path or an open file) or a
        folder. ``sha256`` is what the administrator expects (of the archive file, or the
        digest of the files as given); a different one refuses the install. The installed
        folder holds the manifest as ``kahu-model.json``; the model's SHA-256 is the digest
        of that folder. Installing the same files
        again is a no-op; other files under an installed name and version are refused."""
        staging = self.root / STAGING / uuid.uuid4().hex
        staging.mkdir(parents=True)
        try:
            archive_sha = ""
            if isinstance(source, Path) and source.is_dir():
                root, given = self.root.resolve(), source.resolve()
                if root.is_relative_to(given) or given.is_relative_to(root):
                    raise InvalidModel("install from a folder outside the models folder")
                # under its own name, which may tell (nnU-Net's trainer__plans__configuration)
                copy_folder(source, staging / source.resolve().name, self.limits)
            else:
                if isinstance(source, Path):
                    if not source.is_file():
                        raise NotFound(f"no file or folder {source}")
                    archive_sha = file_sha256(source)
                unpack_zip(source, staging, self.limits)
            folder = model_root(staging)
            manifest = detect(folder, overrides)
            expected = sha256.strip().lower()
            if expected and expected != archive_sha:
                files_sha = tree_digest(folder).sha256
                if expected != files_sha:
                    raise InvalidModel(
                        f"SHA-256 mismatch: expected {expected}, the model's files give "
                        f"{files_sha}" + (f" (the archive {archive_sha})" if archive_sha else "")
                    )
            # the model describes itself from now on: an exported copy installs as it is
            (folder / MANIFEST_NAME).write_text(
                json.dumps(manifest.public(), indent=2, sort_keys=True) + "\n"
            )
            digest = tree_digest(folder)
            return self._put(folder, manifest, digest, installed_by, source_label, projects)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _put(
        self,
        folder: Path,
        manifest: Manifest,
        digest: Digest,
        installed_by: str,
        source: str,
        projects: list[str] | None,
    ) -> ModelInfo:
        readme_path = folder / manifest.readme
        readme = readme_path.read_text(errors="replace")[:200_000] if readme_path.is_file() else ""
        target = self.folder(manifest.name, manifest.version)
        with self.db.write() as session:
            row = session.get(InstalledModel, (manifest.name, manifest.version))
            if row is not None:
                if row.sha256 == digest.sha256:
                    return self._info(row)
                raise Conflict(
                    f"model {manifest.name}@{manifest.version} is installed with other files "
                    f"(SHA-256 {row.sha256}); give the new one another version"
                )
            row = InstalledModel(
                name=manifest.name,
                version=manifest.version,
                format=manifest.format,
                sha256=digest.sha256,
                size_bytes=digest.size_bytes,
                files=digest.files,
                manifest=manifest.public(),
                readme=readme,
                projects=projects,
                source=source[:512],
                installed_by=installed_by,
            )
            session.add(row)
            session.flush()
            # still in the transaction: if the move fails, the row is not committed
            if target.exists():  # left by an install that died between move and commit
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            folder.rename(target)
            return self._info(row)

    def uninstall(self, name: str, version: str) -> ModelInfo:
        model = self.get(name, version)
        with self.db.write() as session:
            row = session.get(InstalledModel, (name, version))
            if row is not None:
                session.delete(row)
        shutil.rmtree(model.path.parent, ignore_errors=True)
        with contextlib.suppress(OSError):
            model.path.parent.parent.rmdir()  # the name's folder, once its last version left
        return model

    def set_projects(
        self, name: str, version: str | None, projects: list[str] | None
    ) -> list[ModelInfo]:
        """Which projects may use ``name`` (one version, or all when ``version`` is None);
        None: every project."""
        targets = [self.get(name, version)] if version else self.versions(name)
        if not targets:
            raise NotFound(f"no model {name!r} is installed")
        with self.db.write() as session:
            for model in targets:
                row = session.get(InstalledModel, (model.name, model.version))
                if row is not None:
                    row.projects = sorted(set(projects)) if projects is not None else None
        return [self.get(m.name, m.version) for m in targets]
