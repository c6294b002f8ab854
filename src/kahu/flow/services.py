"""What an internal operator may do: :class:`OperatorServices`, built for each task and bound
to the task's run, its project and the rights of whoever launched it.

Internal operators run inside the server, beside the catalog. They receive this narrow door
instead of the whole instance, so an operator cannot read a series outside its run's
project, store results elsewhere, or send to a node of another project, whatever it asks.
Reads go through the run's :class:`~kahu.catalog.scope.SeriesScope`; a series it leaves out
is reported as missing (:class:`~kahu.errors.NotFound`), as it is to a user."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kahu.audit import AuditLog
from kahu.auth.projects import Projects
from kahu.auth.users import Accounts
from kahu.catalog.ingest import Ingestor, document_of, read_instance
from kahu.catalog.lineage import Lineage
from kahu.catalog.records import IngestResult, InstanceRow, SeriesRow
from kahu.catalog.repository import Catalog
from kahu.catalog.scope import SeriesScope
from kahu.dimse.nodes import Node, NodeRegistry
from kahu.errors import NotFound, PermissionDenied
from kahu.flow.job import Job
from kahu.models.registry import ModelInfo, ModelRegistry
from kahu.storage.base import BlobStore
from kahu.storage.objects import ObjectStore


class OperatorServices(Protocol):
    """The catalog, the store and the run's surroundings, as one task of one run sees them."""

    @property
    def project(self) -> str:
        """The run's project: what it reads, and where its results go."""

    @property
    def ae_title(self) -> str:
        """The instance's own AE title (for associations it opens)."""

    def series(self, series_uid: str) -> SeriesRow:
        """A series of the run's scope (NotFound for any other, as if absent)."""

    def instances(self, series_uid: str) -> list[InstanceRow]:
        """The instances of a series of the run's scope (none for any other)."""

    def read(self, instance: InstanceRow) -> bytes:
        """The stored bytes of an instance :meth:`instances` returned."""

    def local_path(self, instance: InstanceRow) -> Path | None:
        """Where the instance's file is on this machine, if it is (to copy, not to change)."""

    def copy_to(self, instance: InstanceRow, target: Path) -> None:
        """The instance's stored file as ``target``."""

    def ingest(self, files: Sequence[bytes], *, source: str) -> list[IngestResult]:
        """Store result files through the one ingest path, into the run's project."""

    def record_lineage(self, series_uid: str, sources: Sequence[str]) -> None:
        """Note that this run made ``series_uid`` from ``sources``."""

    def delete_series(self, series_uid: str) -> int:
        """Delete a series of the run's scope (audited); how many files went."""

    def reindex_series(self, series_uid: str) -> str:
        """Extract a series' metadata again from its first instance; that instance's UID."""

    def objects(self) -> ObjectStore:
        """The run's project's buckets."""

    def node(self, name: str) -> Node:
        """A DICOM node that may receive the run's project's series (PermissionDenied else)."""

    def audited(
        self, action: str, *, series: Sequence[str], client: str = "", detail: dict[str, Any]
    ) -> contextlib.AbstractContextManager[int]:
        """Record ``action`` by this run in the audit log around the ``with`` block."""

    def put_thumbnail(self, series_uid: str, png: bytes) -> None:
        """Keep a series' thumbnail (for the gallery and WADO-RS)."""

    def deidentification_key(self) -> bytes:
        """The site's de-identification key (made on first use)."""

    def install_model(self, folder: Path) -> ModelInfo:
        """Install the model in ``folder`` (audited), available to the run's project only."""


@dataclass(frozen=True)
class Parts:
    """The parts of an instance that :class:`RunServices` lends out, narrowed."""

    catalog: Catalog
    store: BlobStore
    ingestor: Ingestor
    lineage: Lineage
    objects: ObjectStore
    nodes: NodeRegistry
    audit: AuditLog
    projects: Projects
    accounts: Accounts
    ae_title: str
    home: Path
    models: ModelRegistry | None = None


def run_scope(parts: Parts, project: str, launched_by: str) -> SeriesScope:
    """What a run's operators may read: the series of the run's project, and nothing while
    the user who launched it no longer holds a role there (an administrator's run reads its
    project too, not every project). Runs that no user launched (a trigger, the CLI) read
    their project."""
    pk = parts.projects.pk(project)
    user = parts.accounts.find(launched_by) if launched_by else None
    if user is not None and not user.is_admin and project not in parts.projects.roles_of(user.name):
        return SeriesScope(frozenset(), f"{launched_by}, who launched the run, has left {project}")
    return SeriesScope(frozenset({pk}), f"run in {project}")


class RunServices:
    """:class:`OperatorServices` for one task (see :func:`run_scope` for what it reads)."""

    def __init__(self, parts: Parts, job: Job) -> None:
        self._parts = parts
        self._job = job
        self._scope = run_scope(parts, job.project, job.launched_by)
        self._readable: set[str] = set()  # series whose instances this task was given

    def _allowed(self) -> SeriesScope:
        """The run's scope; refused whole when its launcher has left the project."""
        if self._scope.projects == frozenset():
            raise PermissionDenied(f"this run may not act any more: {self._scope.holder}")
        return self._scope

    @property
    def project(self) -> str:
        return self._job.project

    @property
    def ae_title(self) -> str:
        return self._parts.ae_title

    def series(self, series_uid: str) -> SeriesRow:
        try:
            return self._parts.catalog.get_series(self._allowed(), series_uid)
        except NotFound:
            raise NotFound(f"series {series_uid} is not in project {self.project}") from None

    def instances(self, series_uid: str) -> list[InstanceRow]:
        rows = self._parts.catalog.instances(self._allowed(), series_uid=series_uid)
        if rows:
            self._readable.add(series_uid)
        return rows

    def _readable_blob(self, instance: InstanceRow) -> str:
        """The instance's blob key, once its series is known to be in the run's scope."""
        if instance.series_instance_uid not in self._readable:
            self.series(instance.series_instance_uid)  # in scope, or NotFound naming it
            self._readable.add(instance.series_instance_uid)
        return instance.blob_key

    def read(self, instance: InstanceRow) -> bytes:
        return self._parts.store.get(self._readable_blob(instance))

    def local_path(self, instance: InstanceRow) -> Path | None:
        local = self._parts.store.local_path(self._readable_blob(instance))
        return None if local is None else Path(local)

    def copy_to(self, instance: InstanceRow, target: Path) -> None:
        local = self.local_path(instance)
        if local is not None:
            shutil.copyfile(local, target)
        else:
            target.write_bytes(self.read(instance))

    def ingest(self, files: Sequence[bytes], *, source: str) -> list[IngestResult]:
        self._allowed()
        return self._parts.ingestor.ingest_many(files, source=source, project=self.project)

    def record_lineage(self, series_uid: str, sources: Sequence[str]) -> None:
        job = self._job
        self._parts.lineage.record(series_uid, job.run_id, job.workflow, job.version, sources)

    def delete_series(self, series_uid: str) -> int:
        self.series(series_uid)  # in scope, or NotFound
        with self.audited("series.delete", series=[series_uid], detail={}):
            return self._parts.ingestor.delete_series(series_uid)

    def reindex_series(self, series_uid: str) -> str:
        rows = self.instances(series_uid)
        if not rows:
            raise NotFound(f"series {series_uid} is not in project {self.project}")
        facts, header = read_instance(self.read(rows[0]))
        self._parts.catalog.reindex_series(series_uid, facts, document_of(facts, header))
        return rows[0].sop_instance_uid

    def objects(self) -> ObjectStore:
        self._allowed()
        return self._parts.objects.of_project(self.project)

    def node(self, name: str) -> Node:
        self._allowed()
        node = self._parts.nodes.get(name)
        if self.project not in node.projects:
            raise PermissionDenied(
                f"node {node.name} may not receive series of project {self.project} "
                f"(its projects: {', '.join(node.projects) or 'none'})"
            )
        return node

    @contextlib.contextmanager
    def audited(
        self, action: str, *, series: Sequence[str], client: str = "", detail: dict[str, Any]
    ) -> Iterator[int]:
        job = self._job
        with self._parts.audit.action(
            job.run_id,
            action,
            kind="run",
            path="workflow",
            client=client,
            project=job.project,
            series=list(series),
            detail=detail,
        ) as record:
            yield record

    def put_thumbnail(self, series_uid: str, png: bytes) -> None:
        from kahu.catalog.thumbnails import thumbnail_key

        if series_uid not in self._readable:  # its instances were read: in scope
            self.series(series_uid)
        self._parts.store.put(thumbnail_key(series_uid), png)

    def deidentification_key(self) -> bytes:
        from kahu.dicom.deidentify import site_key

        return site_key(self._parts.home)

    def install_model(self, folder: Path) -> ModelInfo:
        job = self._job
        if self._parts.models is None:
            raise NotFound("this instance has no model registry")
        with self.audited("model.install", series=[], detail={"source": f"run {job.run_id}"}):
            return self._parts.models.install(
                folder,
                installed_by=job.launched_by or f"run {job.run_id}",
                source_label=f"run {job.run_id} ({job.workflow} {job.version})",
                projects=[job.project],
            )


class ServiceFactory:
    """Builds each task's :class:`RunServices` from the instance's parts (the engine's
    ``services``)."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts

    def __call__(self, job: Job) -> OperatorServices:
        return RunServices(self.parts, job)
