"""The audit log: who did what to which series, by which path, and how it ended.

Recording is part of the action: :meth:`AuditLog.record` runs before the action does, and an
action whose record cannot be written fails (:class:`AuditUnavailable`, HTTP 503; a DICOM
failure status; a failed task) without taking place. The outcome is filled in once the
action ends (:meth:`AuditLog.finish`); the table accepts nothing else after the insert (its
triggers refuse deletes and other changes), so each audited action leaves exactly one record.

Changes to accounts, projects, nodes, datasets, tags, triggers, runs and series are recorded
by their action (:mod:`kahu.actions`), whichever door they come by. Other HTTP routes are
audited by the table :data:`ROUTES` (the authentication dependency records, a middleware
fills in the status); DICOM query/retrieve, workflow launches, sends to nodes and deletions
by workflows record where they happen.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String, Text, insert, select, update
from sqlalchemy.orm import Mapped, mapped_column

from kahu.catalog.database import Database
from kahu.catalog.tables import Base, UTCDateTime, utcnow
from kahu.errors import KahuError

log = logging.getLogger(__name__)


class AuditUnavailable(KahuError):
    """The audit record could not be written, so the action did not take place (HTTP 503)."""

    http_status = 503


class AuditEvent(Base):
    """One security-relevant action: who (a user, a DICOM node, a run), what, on which
    series, by which path, and how it ended. Append-only: the database refuses to delete a
    record or change one, except to fill in ``status`` and ``result`` once (migration 0009's
    triggers)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_at", "at"),
        Index("ix_audit_events_actor", "actor"),
        Index("ix_audit_events_action", "action"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: user name, DICOM AE title or run id, as ``actor_kind`` says
    actor: Mapped[str] = mapped_column(String(128))
    actor_kind: Mapped[str] = mapped_column(String(16))  # user, node, run, system
    action: Mapped[str] = mapped_column(String(64))
    #: how: an HTTP route ("GET /dicomweb/studies/{study}"), "dimse", "cli", "workflow"
    path: Mapped[str] = mapped_column(String(256), default="")
    client: Mapped[str] = mapped_column(String(256), default="")  # address or AE title
    token_id: Mapped[int | None] = mapped_column(Integer)
    project: Mapped[str | None] = mapped_column(String(64))
    #: SeriesInstanceUIDs (or study/instance UIDs) the action touched, JSON list
    series: Mapped[str] = mapped_column(Text, default="[]")
    #: details: the query, the destination, the role given (JSON object)
    detail: Mapped[str] = mapped_column(Text, default="{}")
    #: the outcome: an HTTP status or a DICOM status; NULL while the action runs
    status: Mapped[int | None] = mapped_column(Integer)
    #: what the action made, filled in with the status (run ids, counts), JSON object
    result: Mapped[str | None] = mapped_column(Text)


#: Audited HTTP routes: (method, route path) -> action. Searches and retrievals name the
#: series in their path; the rest are changes.
ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/series"): "search",
    ("POST", "/api/v1/aggregations"): "search",
    ("GET", "/dicomweb/studies"): "search",
    ("GET", "/dicomweb/series"): "search",
    ("GET", "/dicomweb/instances"): "search",
    ("GET", "/dicomweb/studies/{study}/series"): "search",
    ("GET", "/dicomweb/studies/{study}/instances"): "search",
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances"): "search",
    ("GET", "/api/v1/series/{series_uid}"): "retrieve",
    ("GET", "/api/v1/series/{series_uid}/instances"): "retrieve",
    ("GET", "/api/v1/series/{series_uid}/volume.nii.gz"): "retrieve",
    ("GET", "/api/v1/series/{series_uid}/labels.nii.gz"): "retrieve",
    ("GET", "/dicomweb/studies/{study}"): "retrieve",
    ("GET", "/dicomweb/studies/{study}/series/{series}"): "retrieve",
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}"): "retrieve",
    ("GET", "/dicomweb/studies/{study}/metadata"): "retrieve",
    ("GET", "/dicomweb/studies/{study}/series/{series}/metadata"): "retrieve",
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/metadata"): "retrieve",
    (
        "GET",
        "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    ): "retrieve",
    (
        "GET",
        "/dicomweb/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
    ): "retrieve",
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/rendered"): "retrieve",
    (
        "GET",
        "/dicomweb/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered",
    ): "retrieve",
    ("GET", "/dicomweb/studies/{study}/series/{series}/thumbnail"): "retrieve",
    ("GET", "/dicomweb/studies/{study}/series/{series}/instances/{instance}/thumbnail"): "retrieve",
    ("GET", "/api/v1/runs/{run_id}/files/{path}"): "export.download",
    ("GET", "/api/v1/objects/{bucket}/{key}"): "object.download",
    ("GET", "/api/v1/audit"): "audit.read",
    ("GET", "/api/v1/audit/export"): "audit.read",
    ("POST", "/api/v1/upload"): "store",
    ("POST", "/dicomweb/studies"): "store",
    ("POST", "/dicomweb/studies/{study}"): "store",
    ("DELETE", "/api/v1/objects/{bucket}/{key}"): "object.delete",
    ("PUT", "/api/v1/objects/{bucket}/{key}"): "object.put",
    ("POST", "/api/v1/pending/{task_id}/complete"): "run.complete-step",
    ("POST", "/api/v1/auth/logout"): "logout",
}

#: path parameters that name series, studies or instances (recorded as touched)
UID_PARAMETERS = ("series_uid", "study", "series", "instance")


def _pattern(template: str) -> re.Pattern[str]:
    """A route template as a regular expression: ``{key}`` and ``{path}`` take the rest of
    the path (they are path parameters), others one segment."""
    parts = re.split(r"(\{\w+\})", template)
    regex = "".join(
        (".+" if p in ("{key}", "{path}") else "[^/]+") if p.startswith("{") else re.escape(p)
        for p in parts
    )
    return re.compile(regex + "$")


_PATTERNS = [(method, template, _pattern(template)) for method, template in ROUTES]


def audited_route(method: str, path: str) -> tuple[str, str] | None:
    """(route template, action) of an audited request, None for others."""
    for route_method, template, pattern in _PATTERNS:
        if route_method == method and pattern.match(path):
            return template, ROUTES[(route_method, template)]
    return None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    id: int
    at: datetime
    actor: str
    actor_kind: str
    action: str
    path: str
    client: str
    token_id: int | None
    project: str | None
    series: list[str]
    detail: dict[str, Any]
    status: int | None
    result: dict[str, Any]

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "actor": self.actor,
            "actor_kind": self.actor_kind,
            "action": self.action,
            "path": self.path,
            "client": self.client,
            "token_id": self.token_id,
            "project": self.project,
            "series": self.series,
            "detail": self.detail,
            "status": self.status,
            "result": self.result,
        }


class AuditLog:
    """The audit log in the catalog database (thread-safe: one short transaction each)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(
        self,
        actor: str,
        action: str,
        *,
        kind: str = "user",
        path: str = "",
        client: str = "",
        token_id: int | None = None,
        project: str | None = None,
        series: Sequence[str] = (),
        detail: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> int:
        """Write one record before the action; raises :class:`AuditUnavailable` when it
        cannot be written (the caller must then not act). Returns its id for
        :meth:`finish`, or pass ``status`` for an action that is over already (a login)."""
        values = {
            "at": utcnow(),
            "actor": actor[:128],
            "actor_kind": kind,
            "action": action,
            "path": path[:256],
            "client": client[:256],
            "token_id": token_id,
            "project": project,
            "series": json.dumps(list(series)),
            "detail": json.dumps(detail or {}, default=str),
            "status": status,
        }
        try:
            with self.db.write_connection() as conn:
                return int(
                    conn.execute(
                        insert(AuditEvent).values(**values).returning(AuditEvent.id)
                    ).scalar_one()
                )
        except Exception as exc:
            log.error("audit record for %s by %s could not be written: %s", action, actor, exc)
            raise AuditUnavailable(
                f"the audit log cannot be written, so {action} was not done; try again later"
            ) from exc

    @contextlib.contextmanager
    def action(self, actor: str, action: str, **fields: Any) -> Iterator[int]:
        """Record an action done inside the ``with`` block (which does not run when the
        record cannot be written); its status is 200 when the block ends, the HTTP status of
        the refusal when it raises a Kahu error (a name taken: 409), else 500."""
        record = self.record(actor, action, **fields)
        try:
            yield record
        except KahuError as exc:
            self.finish(record, exc.http_status)
            raise
        except BaseException:
            self.finish(record, 500)
            raise
        self.finish(record, 200)

    def finish(self, record_id: int, status: int, result: dict[str, Any] | None = None) -> None:
        """Fill in how the action ended and what it made (once; the database refuses later
        changes)."""
        try:
            with self.db.write_connection() as conn:
                conn.execute(
                    update(AuditEvent)
                    .where(AuditEvent.id == record_id, AuditEvent.status.is_(None))
                    .values(status=status, result=json.dumps(result or {}, default=str))
                )
        except Exception:
            log.exception("the outcome of audit record %d could not be written", record_id)

    def query(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        project: str | None = None,
        series: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        """Records matching every filter given, oldest first; ``action`` matches a prefix
        ending in '.' too ("run." for every run action); ``series`` any UID touched."""
        stmt = select(AuditEvent).order_by(AuditEvent.id)
        if actor is not None:
            stmt = stmt.where(AuditEvent.actor == actor)
        if action is not None:
            if action.endswith("."):
                stmt = stmt.where(AuditEvent.action.startswith(action, autoescape=True))
            else:
                stmt = stmt.where(AuditEvent.action == action)
        if project is not None:
            stmt = stmt.where(AuditEvent.project == project)
        if series is not None:
            stmt = stmt.where(AuditEvent.series.contains(json.dumps(series), autoescape=True))
        if since is not None:
            stmt = stmt.where(AuditEvent.at >= since)
        if until is not None:
            stmt = stmt.where(AuditEvent.at < until)
        if limit is not None:
            stmt = stmt.limit(limit)
        with self.db.read() as s:
            return [_record(row) for row in s.scalars(stmt.offset(offset))]

    def export(self, **filters: Any) -> Iterator[str]:
        """Every matching record as a line of JSON, in pages (for a download of any size)."""
        offset = 0
        while True:
            page = self.query(**filters, limit=1000, offset=offset)
            for item in page:
                yield json.dumps(item.public(), ensure_ascii=False) + "\n"
            if len(page) < 1000:
                return
            offset += len(page)


def _record(row: AuditEvent) -> AuditRecord:
    return AuditRecord(
        row.id,
        row.at,
        row.actor,
        row.actor_kind,
        row.action,
        row.path,
        row.client,
        row.token_id,
        row.project,
        json.loads(row.series or "[]"),
        json.loads(row.detail or "{}"),
        row.status,
        json.loads(row.result or "{}"),
    )
