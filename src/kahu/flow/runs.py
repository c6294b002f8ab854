"""Runs and tasks in the catalog database: creating them, moving them through the state
tables, and reading them for the API. Every transition is an ``UPDATE ... WHERE state IN
(allowed sources)``, so a change that lost a race changes nothing."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from kahu.catalog.database import Database
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.catalog.tables import utcnow
from kahu.errors import Conflict, NotFound
from kahu.flow.model import Workflow
from kahu.flow.states import (
    RUN_DONE,
    TASK_DONE,
    TASK_TRANSITIONS,
    IllegalTransition,
    RunState,
    run_next,
    task_next,
    task_sources,
    task_target,
)
from kahu.flow.tables import FlowRun, FlowRunSeries, FlowTask


@dataclass(frozen=True, slots=True)
class TaskInfo:
    id: int
    run_id: str
    operator: str
    series_uid: str
    state: str
    attempt: int
    error: str
    reason: str
    started_at: datetime | None
    finished_at: datetime | None
    not_before: datetime | None
    owner: str
    pid: int | None
    pid_started: int | None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "run_id": self.run_id,
            "operator": self.operator,
            "series_uid": self.series_uid or None,
            "state": self.state,
            "attempt": self.attempt,
            "error": self.error,
            "reason": self.reason,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: str
    workflow: str
    version: str
    state: str
    params: dict[str, Any]
    input: dict[str, Any]
    missing: list[str]
    trigger: str
    created_by: str
    error: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    series: list[str] = field(default_factory=list)
    task_states: dict[str, int] = field(default_factory=dict)
    project: str = DEFAULT_PROJECT

    def public(self) -> dict[str, Any]:
        total = sum(self.task_states.values())
        done = sum(n for s, n in self.task_states.items() if s in TASK_DONE)
        return {
            "id": self.id,
            "workflow": self.workflow,
            "version": self.version,
            "state": self.state,
            "params": self.params,
            "input": self.input,
            "missing_references": self.missing,
            "trigger": self.trigger,
            "created_by": self.created_by,
            "project": self.project,
            "error": self.error,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "series_count": len(self.series),
            "tasks": self.task_states,
            "progress": {"done": done, "total": total},
        }


def _task_info(t: FlowTask) -> TaskInfo:
    return TaskInfo(
        t.id,
        t.run_id,
        t.operator,
        t.series_uid,
        t.state,
        t.attempt,
        t.error,
        t.reason,
        t.started_at,
        t.finished_at,
        t.not_before,
        t.owner,
        t.pid,
        t.pid_started,
    )


def _update_tasks(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """One ``UPDATE ... WHERE id = :_id AND state = :_from`` per row (an executemany); the
    other keys of the rows, the same in each, are the columns set."""
    table = FlowTask.__table__
    conn.execute(
        update(table).where(  # type: ignore[arg-type]
            table.c.id == bindparam("_id"), table.c.state == bindparam("_from")
        ),
        rows,
    )


def new_run_id(workflow: str) -> str:
    return f"{workflow}-{utcnow():%y%m%d%H%M%S}-{secrets.token_hex(3)}"


class RunStore:
    """Persistence of runs and tasks."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._batch = threading.local()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The transitions this thread writes inside the block share one transaction (the
        engine's scheduling pass: one commit instead of one per step)."""
        if getattr(self._batch, "session", None) is not None:
            yield
            return
        with self.db.write() as s:
            self._batch.session = s
            try:
                yield
            finally:
                self._batch.session = None

    @contextmanager
    def _write(self) -> Iterator[Session]:
        session: Session | None = getattr(self._batch, "session", None)
        if session is not None:
            yield session
            return
        with self.db.write() as s:
            yield s

    # -- creating --------------------------------------------------------------------------

    def create(
        self,
        workflow: Workflow,
        params: dict[str, Any],
        series: Sequence[str],
        *,
        input: dict[str, Any],
        missing: Sequence[str] = (),
        trigger: str = "manual",
        created_by: str = "",
        project: str = DEFAULT_PROJECT,
    ) -> str:
        """A queued run with one task per (per-series operator, series) and per run-level
        operator; tasks without inputs are queued at once, the others pending."""
        run_id = new_run_id(workflow.name)
        now = utcnow()
        tasks: list[dict[str, Any]] = []
        for name in workflow.order:
            op = workflow.operator(name)
            state = "pending" if op.inputs else "queued"
            targets = list(series) if op.per == "series" else [""]
            tasks += [
                {
                    "run_id": run_id,
                    "operator": name,
                    "series_uid": uid,
                    "state": state,
                    "attempt": 0,
                    "error": "",
                    "reason": "",
                    "owner": "",
                }
                for uid in targets
            ]
        with self.db.write() as s:
            s.add(
                FlowRun(
                    id=run_id,
                    workflow=workflow.name,
                    version=workflow.version,
                    state="queued",
                    params=params,
                    input=input,
                    missing=list(missing),
                    trigger=trigger,
                    created_by=created_by,
                    project=project,
                    error="",
                    created_at=now,
                )
            )
            s.flush()
            if series:
                s.execute(
                    insert(FlowRunSeries),
                    [
                        {"run_id": run_id, "position": i, "series_uid": u}
                        for i, u in enumerate(series)
                    ],
                )
            if tasks:
                s.execute(insert(FlowTask), tasks)
        return run_id

    # -- reading ---------------------------------------------------------------------------

    def run(self, run_id: str, *, with_series: bool = True) -> RunInfo:
        with self.db.read() as s:
            run = s.get(FlowRun, run_id)
            if run is None:
                raise NotFound(f"no run {run_id!r}")
            series = (
                list(
                    s.scalars(
                        select(FlowRunSeries.series_uid)
                        .where(FlowRunSeries.run_id == run_id)
                        .order_by(FlowRunSeries.position)
                    )
                )
                if with_series
                else []
            )
            counts = dict(
                s.execute(
                    select(FlowTask.state, func.count())
                    .where(FlowTask.run_id == run_id)
                    .group_by(FlowTask.state)
                ).all()
            )
            return self._info(run, series, counts)

    @staticmethod
    def _info(run: FlowRun, series: list[str], counts: dict[str, int]) -> RunInfo:
        return RunInfo(
            run.id,
            run.workflow,
            run.version,
            run.state,
            dict(run.params),
            dict(run.input),
            list(run.missing),
            run.trigger,
            run.created_by,
            run.error,
            run.created_at,
            run.started_at,
            run.finished_at,
            series,
            {k: int(v) for k, v in counts.items()},
            run.project,
        )

    def runs(
        self,
        *,
        states: Iterable[str] = (),
        workflow: str | None = None,
        limit: int = 100,
        offset: int = 0,
        projects: Sequence[str] | None = None,
    ) -> list[RunInfo]:
        """Newest first; only those of ``projects`` when given."""
        stmt = select(FlowRun).order_by(FlowRun.created_at.desc(), FlowRun.id.desc())
        if projects is not None:
            stmt = stmt.where(FlowRun.project.in_(list(projects)))
        wanted = list(states)
        if wanted:
            stmt = stmt.where(FlowRun.state.in_(wanted))
        if workflow:
            stmt = stmt.where(FlowRun.workflow == workflow)
        with self.db.read() as s:
            runs = list(s.scalars(stmt.limit(limit).offset(offset)))
            ids = [r.id for r in runs]
            counts: dict[str, dict[str, int]] = {i: {} for i in ids}
            sizes: dict[str, int] = {}
            if ids:
                for run_id, state, n in s.execute(
                    select(FlowTask.run_id, FlowTask.state, func.count())
                    .where(FlowTask.run_id.in_(ids))
                    .group_by(FlowTask.run_id, FlowTask.state)
                ):
                    counts[run_id][state] = int(n)
                sizes = dict(
                    s.execute(
                        select(FlowRunSeries.run_id, func.count())
                        .where(FlowRunSeries.run_id.in_(ids))
                        .group_by(FlowRunSeries.run_id)
                    ).all()
                )
            return [self._info(r, [""] * int(sizes.get(r.id, 0)), counts[r.id]) for r in runs]

    def tasks(
        self, run_id: str | None = None, *, states: Iterable[str] = (), ids: Iterable[int] = ()
    ) -> list[TaskInfo]:
        stmt = select(FlowTask).order_by(FlowTask.id)
        if run_id is not None:
            stmt = stmt.where(FlowTask.run_id == run_id)
        wanted = list(states)
        if wanted:
            stmt = stmt.where(FlowTask.state.in_(wanted))
        chosen = list(ids)
        if chosen:
            stmt = stmt.where(FlowTask.id.in_(chosen))
        with self.db.read() as s:
            return [_task_info(t) for t in s.scalars(stmt)]

    def task(self, task_id: int) -> TaskInfo:
        found = self.tasks(ids=[task_id])
        if not found:
            raise NotFound(f"no task {task_id}")
        return found[0]

    def projects_of(self, run_ids: Iterable[str]) -> dict[str, str]:
        """Run id -> project."""
        ids = list(set(run_ids))
        if not ids:
            return {}
        with self.db.read() as s:
            return dict(
                s.execute(select(FlowRun.id, FlowRun.project).where(FlowRun.id.in_(ids))).all()
            )

    def task_counts(self) -> dict[str, int]:
        """How many tasks of runs not yet finished are in each state (the queue's depth)."""
        with self.db.read() as s:
            rows = s.execute(
                select(FlowTask.state, func.count(FlowTask.id))
                .join(FlowRun, FlowRun.id == FlowTask.run_id)
                .where(FlowRun.state.not_in(list(RUN_DONE)))
                .group_by(FlowTask.state)
            ).all()
        return {str(state): int(count) for state, count in rows}

    def active_run_ids(self) -> list[str]:
        with self.db.read() as s:
            return list(
                s.scalars(
                    select(FlowRun.id)
                    .where(FlowRun.state.not_in(list(RUN_DONE)))
                    .order_by(FlowRun.created_at, FlowRun.id)
                )
            )

    # -- transitions -----------------------------------------------------------------------

    def move_tasks(self, event: str, task_ids: Sequence[int], **values: Any) -> list[int]:
        """Apply ``event`` to the tasks that are in a state it applies to; return those moved.

        ``values`` are further columns to set; ``attempt_plus_one=True`` counts an attempt.
        """
        if not task_ids:
            return []
        sources = task_sources(event)
        target = task_target(event)
        plus_one = values.pop("attempt_plus_one", False)
        moved: list[int] = []
        with self.db.write() as s:
            for chunk_start in range(0, len(task_ids), 500):
                chunk = list(task_ids[chunk_start : chunk_start + 500])
                ids = list(
                    s.scalars(
                        select(FlowTask.id).where(
                            FlowTask.id.in_(chunk), FlowTask.state.in_(sources)
                        )
                    )
                )
                if not ids:
                    continue
                changes: dict[str, Any] = {"state": target, **values}
                if plus_one:
                    changes["attempt"] = FlowTask.attempt + 1
                s.execute(update(FlowTask).where(FlowTask.id.in_(ids)).values(**changes))
                moved += ids
        return moved

    def set_task(self, task_id: int, **values: Any) -> None:
        with self.db.write() as s:
            s.execute(update(FlowTask).where(FlowTask.id == task_id).values(**values))

    def apply(self, changes: Sequence[tuple[str, int, dict[str, Any]]]) -> set[int]:
        """Several task transitions in one transaction: (event, task id, columns). Returns the
        ids that moved (a task no longer in a source state of its event is left alone).

        The engine's hot path: Core statements, one ``executemany`` per run of changes that
        set the same columns."""
        moved: set[int] = set()
        if not changes:
            return moved
        table = FlowTask.__table__
        with self._write() as s:
            conn = s.connection()
            current: dict[int, str] = {}
            ids = sorted({c[1] for c in changes})
            for start in range(0, len(ids), 500):
                current.update(
                    conn.execute(
                        select(table.c.id, table.c.state).where(
                            table.c.id.in_(ids[start : start + 500])
                        )
                    ).all()
                )
            batch: list[dict[str, Any]] = []
            columns: tuple[str, ...] = ()
            for event, task_id, values in changes:
                state = current.get(task_id)
                if state is None or (state, event) not in TASK_TRANSITIONS:
                    continue
                target = task_next(state, event)
                keys = tuple(sorted(values))
                if batch and keys != columns:
                    _update_tasks(conn, batch)
                    batch = []
                columns = keys
                batch.append({"_id": task_id, "_from": state, "state": target, **values})
                current[task_id] = target
                moved.add(task_id)
            if batch:
                _update_tasks(conn, batch)
        return moved

    def move_run(self, run_id: str, event: str, **values: Any) -> RunState | None:
        """Apply ``event`` to a run if its current state allows it; return the new state."""
        with self._write() as s:
            state = s.scalar(select(FlowRun.state).where(FlowRun.id == run_id))
            if state is None:
                raise NotFound(f"no run {run_id!r}")
            try:
                target = run_next(state, event)
            except IllegalTransition:
                return None
            s.execute(
                update(FlowRun)
                .where(FlowRun.id == run_id, FlowRun.state == state)
                .values(state=target, **values)
            )
            return target

    def require_run_state(self, run_id: str, event: str) -> RunState:
        target = self.move_run(run_id, event)
        if target is None:
            state = self.run(run_id, with_series=False).state
            raise Conflict(f"run {run_id} is {state}; it cannot {event}")
        return target

    def rerun(self, run_id: str) -> int:
        """Put a finished run's failed, upstream-failed and cancelled tasks back to pending
        and the run to running, in one transaction (the engine never sees half of it)."""
        target = task_target("rerun")
        with self.db.write() as s:
            state = s.scalar(select(FlowRun.state).where(FlowRun.id == run_id))
            if state is None:
                raise NotFound(f"no run {run_id!r}")
            try:
                run_state = run_next(state, "retry")
            except IllegalTransition:
                raise Conflict(f"run {run_id} is {state}; it cannot retry") from None
            moved = cast(
                CursorResult[Any],
                s.execute(
                    update(FlowTask)
                    .where(FlowTask.run_id == run_id, FlowTask.state.in_(task_sources("rerun")))
                    .values(state=target, attempt=0, error="", reason="", finished_at=None)
                ),
            ).rowcount
            s.execute(
                update(FlowRun)
                .where(FlowRun.id == run_id)
                .values(state=run_state, finished_at=None, error="")
            )
            return int(moved)

    def set_run(self, run_id: str, **values: Any) -> None:
        with self.db.write() as s:
            s.execute(update(FlowRun).where(FlowRun.id == run_id).values(**values))

    def fail_run(self, run_id: str, error: str) -> None:
        """End a run that cannot go on (its workflow is gone) and its open tasks."""
        now = utcnow()
        with self._write() as s:
            s.execute(
                update(FlowTask)
                .where(FlowTask.run_id == run_id, FlowTask.state.not_in(list(TASK_DONE)))
                .values(state="cancelled", finished_at=now, error=error)
            )
            s.execute(
                update(FlowRun)
                .where(FlowRun.id == run_id)
                .values(state="failed", error=error, finished_at=now)
            )

    def set_reasons(self, reasons: Sequence[tuple[int, str]]) -> None:
        if not reasons:
            return
        table = FlowTask.__table__
        with self._write() as s:
            s.connection().execute(
                update(table).where(table.c.id == bindparam("_id")),  # type: ignore[arg-type]
                [{"_id": i, "reason": r} for i, r in reasons],
            )

    def set_pids(self, pids: Sequence[tuple[int, int | None, int | None]]) -> None:
        if not pids:
            return
        table = FlowTask.__table__
        with self._write() as s:
            s.connection().execute(
                update(table).where(table.c.id == bindparam("_id")),  # type: ignore[arg-type]
                [{"_id": i, "pid": pid, "pid_started": started} for i, pid, started in pids],
            )

    def delete(self, run_id: str) -> None:
        with self.db.write() as s:
            s.execute(delete(FlowRun).where(FlowRun.id == run_id))
