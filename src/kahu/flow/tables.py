"""The tables of the workflow engine: runs, the series of each run, tasks (the state table
of :mod:`kahu.flow.states`) and triggers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from kahu.catalog.tables import Base, UTCDateTime, utcnow


class FlowRun(Base):
    """One launch of a workflow on a cohort (see :mod:`kahu.flow.states` for ``state``)."""

    __tablename__ = "flow_runs"

    id: Mapped[str] = mapped_column(String(96), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(64), index=True)
    version: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: how the cohort was chosen: dataset, query or series UIDs, limit, references
    input: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: referenced series that were asked for but are not in the catalog
    missing: Mapped[list[str]] = mapped_column(JSON, default=list)
    trigger: Mapped[str] = mapped_column(String(128), default="manual")
    created_by: Mapped[str] = mapped_column(String(64), default="")
    #: the project whose series the run reads and whose catalog its results enter
    project: Mapped[str] = mapped_column(String(64), server_default="default", index=True)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class FlowRunSeries(Base):
    """The cohort of a run, in order."""

    __tablename__ = "flow_run_series"

    run_id: Mapped[str] = mapped_column(
        ForeignKey("flow_runs.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_uid: Mapped[str] = mapped_column(String(64))


class FlowTask(Base):
    """One operator of a run, for one series or for the whole run (``series_uid`` empty)."""

    __tablename__ = "flow_tasks"
    __table_args__ = (
        UniqueConstraint("run_id", "operator", "series_uid", name="uq_flow_tasks_run_op_series"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"), index=True)
    operator: Mapped[str] = mapped_column(String(64))
    series_uid: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[str] = mapped_column(String(16), index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str] = mapped_column(Text, default="")
    #: why a queued task does not start (resources), shown to users
    reason: Mapped[str] = mapped_column(Text, default="")
    #: the engine that claimed it, and its process, so a restarted server can stop leftovers
    owner: Mapped[str] = mapped_column(String(128), default="")
    pid: Mapped[int | None] = mapped_column(Integer)
    pid_started: Mapped[int | None] = mapped_column(BigInteger)


class FlowTrigger(Base):
    """Starts a workflow when a series arrives that matches ``query``, or on a cron schedule."""

    __tablename__ = "flow_triggers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    workflow: Mapped[str] = mapped_column(String(64))
    query: Mapped[str] = mapped_column(Text, default="")
    cron: Mapped[str] = mapped_column(String(128), default="")
    #: for schedules: the cohort (dataset, query) as for a manual run
    input: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(64), default="")
    #: the project of its runs (an arrival rule sees only that project's series)
    project: Mapped[str] = mapped_column(String(64), server_default="default")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
