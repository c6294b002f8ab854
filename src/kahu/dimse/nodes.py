"""Remote DICOM nodes (C-MOVE destinations, send targets), kept in the catalog database.

A node belongs to projects: calling as its AE title it may query and retrieve the series of
those projects (C-FIND, C-MOVE, C-GET), and series are sent to it (C-MOVE destination, the
send-to-node workflow) only from those projects. A caller that is no node retrieves nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from kahu.catalog.database import Database
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.catalog.tables import Project, utcnow
from kahu.dicom.uids import validate_ae_title
from kahu.dimse.tables import DicomNode, NodeProject
from kahu.errors import Conflict, InvalidInput, NotFound

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.:_-]{1,253}$")


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    ae_title: str
    host: str
    port: int
    description: str = ""
    #: the projects whose series it may query, retrieve and receive
    projects: tuple[str, ...] = (DEFAULT_PROJECT,)


def _public(row: DicomNode, projects: tuple[str, ...]) -> Node:
    return Node(row.name, row.ae_title, row.host, row.port, row.description, projects)


class NodeRegistry:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, node: Node) -> Node:
        if not _NAME_RE.match(node.name):
            raise InvalidInput(f"invalid node name {node.name!r}")
        if not _HOST_RE.match(node.host):
            raise InvalidInput(f"invalid host {node.host!r}")
        if not 0 < node.port < 65536:
            raise InvalidInput(f"invalid port {node.port}")
        aet = validate_ae_title(node.ae_title)
        projects = tuple(sorted(set(node.projects)))
        with self.db.write() as s:
            if s.scalar(select(DicomNode.id).where(DicomNode.name == node.name)):
                raise Conflict(f"node {node.name!r} exists")
            pks = dict(
                s.execute(select(Project.name, Project.id).where(Project.name.in_(projects))).all()
            )
            missing = [p for p in projects if p not in pks]
            if missing:
                raise NotFound(f"no project {missing[0]!r}")
            row = DicomNode(
                name=node.name,
                ae_title=aet,
                host=node.host,
                port=node.port,
                description=node.description,
                created_at=utcnow(),
            )
            s.add(row)
            s.flush()
            for project in projects:
                s.add(NodeProject(node_pk=row.id, project_pk=pks[project]))
        return Node(node.name, aet, node.host, node.port, node.description, projects)

    def _projects(self, s: Any, node_pks: Sequence[int]) -> dict[int, tuple[str, ...]]:
        found: dict[int, list[str]] = {pk: [] for pk in node_pks}
        for node_pk, name in s.execute(
            select(NodeProject.node_pk, Project.name)
            .join(Project, Project.id == NodeProject.project_pk)
            .where(NodeProject.node_pk.in_(list(node_pks)))
            .order_by(Project.name)
        ):
            found[node_pk].append(name)
        return {pk: tuple(names) for pk, names in found.items()}

    def list(self) -> list[Node]:
        with self.db.read() as s:
            rows = list(s.scalars(select(DicomNode).order_by(DicomNode.name)))
            projects = self._projects(s, [r.id for r in rows])
        return [_public(r, projects[r.id]) for r in rows]

    def get(self, name: str) -> Node:
        with self.db.read() as s:
            row = s.scalar(select(DicomNode).where(DicomNode.name == name))
            if row is None:
                raise NotFound(f"no DICOM node {name!r}")
            return _public(row, self._projects(s, [row.id])[row.id])

    def by_ae_title(self, ae_title: str) -> Node | None:
        with self.db.read() as s:
            row = s.scalar(select(DicomNode).where(DicomNode.ae_title == ae_title.strip()).limit(1))
            return _public(row, self._projects(s, [row.id])[row.id]) if row else None

    def project_pks(self, ae_title: str) -> frozenset[int] | None:
        """The projects (primary keys) of the nodes with this AE title; None when no node
        has it (an unknown caller)."""
        with self.db.read() as s:
            nodes = list(
                s.scalars(select(DicomNode.id).where(DicomNode.ae_title == ae_title.strip()))
            )
            if not nodes:
                return None
            return frozenset(
                s.scalars(select(NodeProject.project_pk).where(NodeProject.node_pk.in_(nodes)))
            )

    def remove(self, name: str) -> None:
        with self.db.write() as s:
            if s.execute(delete(DicomNode).where(DicomNode.name == name)).rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"no DICOM node {name!r}")
