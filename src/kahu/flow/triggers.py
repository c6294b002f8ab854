"""Triggers: start a workflow when a completed series matches a query (Kaapana's
auto-trigger), or on a cron schedule.

An arrival rule runs its workflow on the one series that arrived. Series that a run of the
rule's own workflow produced never trigger it again (no loops). A schedule runs its workflow
on its stored cohort (a dataset or a query) at each cron time; a time missed while the server
was down is run once at start.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from croniter import croniter
from sqlalchemy import delete, select, update

from kahu.audit import AuditLog
from kahu.auth.projects import Projects
from kahu.catalog.database import Database
from kahu.catalog.repository import DEFAULT_PROJECT, Catalog
from kahu.catalog.tables import Series, SeriesLineage, utcnow
from kahu.errors import Conflict, InvalidInput, NotFound
from kahu.events import EventBus, SeriesComplete
from kahu.flow.cohort import RunInput
from kahu.flow.engine import Engine
from kahu.flow.launch import launch
from kahu.flow.registry import WorkflowRegistry
from kahu.flow.tables import FlowTrigger
from kahu.search.query import parse
from kahu.search.series import series_condition

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class TriggerInfo:
    name: str
    kind: str
    workflow: str
    query: str
    cron: str
    input: dict[str, Any]
    params: dict[str, Any]
    enabled: bool
    created_by: str
    created_at: datetime
    last_fired_at: datetime | None
    #: the project of its runs; empty (built-in rules): the arriving series' own project
    project: str = DEFAULT_PROJECT

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "workflow": self.workflow,
            "query": self.query or None,
            "cron": self.cron or None,
            "input": self.input,
            "params": self.params,
            "enabled": self.enabled,
            "created_by": self.created_by,
            "project": self.project or None,
            "created_at": self.created_at,
            "last_fired_at": self.last_fired_at,
        }


def builtin_rule(name: str, workflow: str) -> TriggerInfo:
    """An arrival rule that comes from the settings, not the database: it matches every
    series (except the workflow's own results) and cannot be removed, only switched off
    by its setting."""
    return TriggerInfo(name, "arrival", workflow, "", "", {}, {}, True, "kahu", utcnow(), None, "")


def _info(t: FlowTrigger) -> TriggerInfo:
    return TriggerInfo(
        t.name,
        t.kind,
        t.workflow,
        t.query,
        t.cron,
        dict(t.input),
        dict(t.params),
        t.enabled,
        t.created_by,
        t.created_at,
        t.last_fired_at,
        t.project,
    )


class Triggers:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        registry: WorkflowRegistry,
        engine: Engine,
        events: EventBus,
        projects: Projects,
        audit: AuditLog,
        builtin: Sequence[TriggerInfo] = (),
    ) -> None:
        self.db = db
        self.projects = projects
        self.audit = audit
        self.builtin = list(builtin)
        self.catalog = catalog
        self.registry = registry
        self.engine = engine
        events.subscribe(SeriesComplete, self._on_event)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rules: tuple[float, list[TriggerInfo]] | None = None

    #: arrival rules are read again at most this often (another process may change them)
    RULES_TTL_S = 2.0

    def _arrival_rules(self) -> list[TriggerInfo]:
        cached = self._rules
        if cached is None or time.monotonic() - cached[0] > self.RULES_TTL_S:
            rules = [t for t in self.all() if t.enabled and t.kind == "arrival"]
            cached = self._rules = (time.monotonic(), self.builtin + rules)
        return cached[1]

    # -- managing --------------------------------------------------------------------------

    def add(
        self,
        name: str,
        workflow: str,
        *,
        query: str = "",
        cron: str = "",
        params: dict[str, Any] | None = None,
        run_input: RunInput | None = None,
        created_by: str = "",
        project: str = DEFAULT_PROJECT,
    ) -> TriggerInfo:
        """An arrival rule (``query``) or a schedule (``cron`` with ``run_input``); its runs
        belong to ``project``, and an arrival rule sees only that project's series."""
        if not _NAME.match(name):
            raise InvalidInput(f"trigger name {name!r}: letters, digits, '.', '-', '_'")
        if bool(query) == bool(cron):
            raise InvalidInput("a trigger has either a query (on arrival) or a cron schedule")
        values = self.registry.get(workflow).validate_parameters(params)
        self.catalog.project_pk(project)  # NotFound names it
        if query:
            parse(query)
        if cron and not croniter.is_valid(cron):
            raise InvalidInput(f"invalid cron expression {cron!r}")
        cohort = run_input or RunInput()
        if cron and not (cohort.dataset or cohort.query or cohort.series_uids):
            raise InvalidInput("a schedule needs a cohort: a dataset, a query or series")
        if cohort.query:
            parse(cohort.query)
        with self.db.write() as s:
            if s.scalar(select(FlowTrigger.id).where(FlowTrigger.name == name)) is not None:
                raise Conflict(f"trigger {name!r} exists")
            row = FlowTrigger(
                name=name,
                kind="arrival" if query else "schedule",
                workflow=workflow,
                query=query,
                cron=cron,
                input=cohort.public() if cron else {},
                params=values,
                enabled=True,
                created_by=created_by,
                project=project,
                created_at=utcnow(),
                last_fired_at=utcnow() if cron else None,
            )
            s.add(row)
            s.flush()
            info = _info(row)
        self._rules = None
        return info

    def all(self) -> list[TriggerInfo]:
        with self.db.read() as s:
            return [_info(t) for t in s.scalars(select(FlowTrigger).order_by(FlowTrigger.name))]

    def remove(self, name: str) -> None:
        with self.db.write() as s:
            if s.execute(delete(FlowTrigger).where(FlowTrigger.name == name)).rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"no trigger {name!r}")
        self._rules = None

    def set_enabled(self, name: str, enabled: bool) -> None:
        with self.db.write() as s:
            found = s.execute(
                update(FlowTrigger).where(FlowTrigger.name == name).values(enabled=enabled)
            )
            if found.rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"no trigger {name!r}")
        self._rules = None

    # -- firing ----------------------------------------------------------------------------

    def _on_event(self, event: SeriesComplete) -> None:
        self.on_series_complete(event)

    def on_series_complete(self, event: SeriesComplete) -> list[str]:
        """Start the workflows whose rule matches the series; returns the run ids."""
        rules = self._arrival_rules()
        started: list[str] = []
        for rule in rules:
            try:
                project = self._matches(rule, event.series_instance_uid)
                if project is None:
                    continue
                started += launch(
                    self.catalog,
                    self.registry,
                    self.engine,
                    rule.workflow,
                    rule.params,
                    RunInput(series_uids=(event.series_instance_uid,)),
                    trigger=f"rule:{rule.name}",
                    created_by=rule.created_by,
                    audit=self.audit,
                    path="trigger",
                    project=project,
                )
                self._fired(rule.name)
            except Exception:
                log.exception("trigger %s failed for %s", rule.name, event.series_instance_uid)
        return started

    def _matches(self, rule: TriggerInfo, series_uid: str) -> str | None:
        """The project to run ``rule`` in for the series, None when it does not match: the
        series is the rule's own result, is not in the rule's project, or the query fails."""
        projects = self.projects.series_projects(series_uid)
        if rule.project:
            project = rule.project if rule.project in projects else None
        elif DEFAULT_PROJECT in projects:
            project = DEFAULT_PROJECT
        else:
            project = projects[0] if projects else None
        if project is None:
            return None
        with self.db.read() as s:
            made_by_it = s.scalar(
                select(SeriesLineage.run_id)
                .join(Series, Series.id == SeriesLineage.series_pk)
                .where(
                    Series.series_instance_uid == series_uid,
                    SeriesLineage.workflow == rule.workflow,
                )
                .limit(1)
            )
            if made_by_it is not None:
                return None
            if not rule.query:
                return project
            found = s.scalar(
                select(Series.id).where(
                    Series.series_instance_uid == series_uid,
                    series_condition(self.catalog, rule.query),
                )
            )
        return project if found is not None else None

    def _fired(self, name: str, when: datetime | None = None) -> None:
        with self.db.write() as s:
            s.execute(
                update(FlowTrigger)
                .where(FlowTrigger.name == name)
                .values(last_fired_at=when or utcnow())
            )

    def run_due(self, now: datetime | None = None) -> list[str]:
        """Start every schedule whose next cron time since it last fired has come."""
        now = now or utcnow()
        started: list[str] = []
        for trigger in self.all():
            if not trigger.enabled or trigger.kind != "schedule":
                continue
            since = trigger.last_fired_at or trigger.created_at
            due = croniter(trigger.cron, since).get_next(datetime)
            if due > now:
                continue
            self._fired(trigger.name, now)
            try:
                started += launch(
                    self.catalog,
                    self.registry,
                    self.engine,
                    trigger.workflow,
                    trigger.params,
                    RunInput.from_public(trigger.input),
                    trigger=f"schedule:{trigger.name}",
                    created_by=trigger.created_by,
                    audit=self.audit,
                    path="trigger",
                    project=trigger.project,
                )
            except Exception:
                log.exception("scheduled trigger %s failed", trigger.name)
        return started

    def start(self, interval: float = 20.0) -> None:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.run_due()
                except Exception:
                    log.exception("schedules failed")

        self._stop.clear()
        self.run_due()
        self._thread = threading.Thread(target=loop, name="kahu-schedules", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
