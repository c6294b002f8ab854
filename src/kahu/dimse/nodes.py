"""Remote DICOM nodes (C-MOVE destinations, send targets), kept in the catalog database."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import delete, select

from kahu.catalog.database import Database
from kahu.catalog.tables import DicomNode, utcnow
from kahu.dicom.uids import validate_ae_title
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


def _public(row: DicomNode) -> Node:
    return Node(row.name, row.ae_title, row.host, row.port, row.description)


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
        with self.db.write() as s:
            if s.scalar(select(DicomNode.id).where(DicomNode.name == node.name)):
                raise Conflict(f"node {node.name!r} exists")
            s.add(
                DicomNode(
                    name=node.name,
                    ae_title=aet,
                    host=node.host,
                    port=node.port,
                    description=node.description,
                    created_at=utcnow(),
                )
            )
        return Node(node.name, aet, node.host, node.port, node.description)

    def list(self) -> list[Node]:
        with self.db.read() as s:
            return [_public(n) for n in s.scalars(select(DicomNode).order_by(DicomNode.name))]

    def get(self, name: str) -> Node:
        with self.db.read() as s:
            row = s.scalar(select(DicomNode).where(DicomNode.name == name))
        if row is None:
            raise NotFound(f"no DICOM node {name!r}")
        return _public(row)

    def by_ae_title(self, ae_title: str) -> Node | None:
        with self.db.read() as s:
            row = s.scalar(select(DicomNode).where(DicomNode.ae_title == ae_title.strip()).limit(1))
        return _public(row) if row else None

    def remove(self, name: str) -> None:
        with self.db.write() as s:
            if s.execute(delete(DicomNode).where(DicomNode.name == name)).rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"no DICOM node {name!r}")
