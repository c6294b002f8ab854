"""The coordinator's side of federated runs: one launch becomes one part per partner site; the
partners fetch their part (a long poll: a launch wakes the waiting requests at once), report
how it goes and send the outputs the workflow declares; once every site has finished, given up
or timed out, an ordinary run of the aggregation workflow combines what arrived.

Every change of a site's part is an ``UPDATE ... WHERE state IN (allowed sources)`` following
:data:`SITE_TRANSITIONS`, so several processes on one database (and a late or repeated report)
change nothing they should not."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select, update

from kahu.catalog.database import Database
from kahu.catalog.tables import utcnow
from kahu.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from kahu.federation.peers import Peers
from kahu.federation.tables import FedOutput, FedPeer, FedRun, FedSiteRun
from kahu.flow.engine import Engine
from kahu.flow.model import Workflow
from kahu.flow.registry import WorkflowRegistry
from kahu.flow.states import RUN_DONE
from kahu.storage.objects import ObjectStore

log = logging.getLogger(__name__)

BUCKET = "federation"
#: what a site's part may become from each state (the partner reports, the coordinator gives
#: up on a silent site: ``unreachable`` is left again when the site comes back; the
#: coordinator's admin cancels)
SITE_TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset(
        {"waiting_approval", "refused", "running", "done", "failed", "unreachable", "cancelled"}
    ),
    "waiting_approval": frozenset(
        {"refused", "running", "done", "failed", "unreachable", "cancelled"}
    ),
    "running": frozenset({"running", "done", "failed", "unreachable", "cancelled"}),
    "unreachable": frozenset(
        {"waiting_approval", "refused", "running", "done", "failed", "cancelled"}
    ),
    "refused": frozenset(),
    "done": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
SITE_FINISHED = frozenset({"refused", "done", "failed", "unreachable", "cancelled"})
#: what only the coordinator decides of a part, never a partner's report
NOT_REPORTED = frozenset({"unreachable", "cancelled"})
#: work fetched but not reported on is handed out again after this long
REDELIVER_S = 30.0
#: the longest a federated run may wait for its sites: a week
MAX_TIMEOUT_S = 7 * 24 * 3600.0


def _sources(target: str) -> list[str]:
    return [s for s, targets in SITE_TRANSITIONS.items() if target in targets]


@dataclass(frozen=True, slots=True)
class SitePart:
    """One site of a launch: who, and on which of its datasets."""

    site: str
    dataset: str


class FedRuns:
    """The federated runs this site coordinates."""

    def __init__(
        self,
        db: Database,
        peers: Peers,
        registry: WorkflowRegistry,
        engine: Engine,
        objects: ObjectStore,
        *,
        site_timeout_s: float,
    ) -> None:
        self.db = db
        self.peers = peers
        self.registry = registry
        self.engine = engine
        self.objects = objects
        self.site_timeout_s = site_timeout_s
        self._new_work = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- launching and watching ---------------------------------------------------------

    def launch(
        self,
        workflow_name: str,
        sites: Sequence[SitePart],
        params: dict[str, Any] | None,
        *,
        version: str | None = None,
        created_by: str,
        project: str,
        timeout_s: float = 3600.0,
    ) -> str:
        """Ask ``sites`` (partners by name or id) to run their pinned copy of the workflow."""
        workflow = self.registry.get(workflow_name, version)
        if not workflow.outputs:
            raise InvalidInput(f"workflow {workflow.name} declares no outputs: it is not federated")
        if not sites:
            raise InvalidInput("name at least one partner site")
        if not 0 < timeout_s <= MAX_TIMEOUT_S:  # also refuses NaN
            raise InvalidInput(f"timeout_s must be more than 0 and at most {MAX_TIMEOUT_S:.0f}")
        values = dict(workflow.validate_parameters(params))
        partners = [(self.peers.find(p.site, "partner"), p.dataset) for p in sites]
        for peer, dataset in partners:
            if not peer.active:
                raise PermissionDenied(f"partner {peer.name} was revoked: {peer.revoked_reason}")
            if not dataset:
                raise InvalidInput(f"name the dataset of {peer.name}")
        if len({p.site_id for p, _ in partners}) != len(partners):
            raise InvalidInput("a site is named twice")
        if workflow.aggregate:
            self.registry.get(workflow.aggregate)  # NotFound before anything is asked
        run_id = f"fed-{workflow.name}-{utcnow():%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
        with self.db.write() as s:
            s.add(
                FedRun(
                    id=run_id,
                    workflow=workflow.name,
                    version=workflow.version,
                    digest=self.registry.digest(workflow),
                    params=values,
                    project=project,
                    created_by=created_by,
                    state="running",
                    timeout_s=timeout_s,
                    error="",
                    aggregate_run="",
                )
            )
            s.flush()
            for peer, dataset in partners:
                s.add(
                    FedSiteRun(
                        id=f"{run_id}.{peer.site_id[:12]}",
                        fed_run=run_id,
                        site_id=peer.site_id,
                        site_name=peer.name,
                        dataset=dataset,
                        state="queued",
                        reason="",
                        progress={},
                    )
                )
        with self._new_work:
            self._new_work.notify_all()
        return run_id

    def status(self, run_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            run = s.get(FedRun, run_id)
            if run is None:
                raise NotFound(f"no federated run {run_id}")
            parts = s.scalars(
                select(FedSiteRun).where(FedSiteRun.fed_run == run_id).order_by(FedSiteRun.id)
            ).all()
            outputs = s.scalars(
                select(FedOutput).where(FedOutput.site_run.in_([p.id for p in parts]))
            ).all()
            return {
                **_run_public(run),
                "sites": [
                    {
                        "site": p.site_name,
                        "site_id": p.site_id,
                        "dataset": p.dataset,
                        "state": p.state,
                        "reason": p.reason,
                        "progress": p.progress,
                        "updated_at": p.updated_at,
                        "outputs": [
                            {
                                "name": o.name,
                                "kind": o.kind,
                                "bytes": o.bytes,
                                "sha256": o.sha256,
                                "key": o.key,
                            }
                            for o in outputs
                            if o.site_run == p.id
                        ],
                    }
                    for p in parts
                ],
            }

    def runs(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.db.read() as s:
            rows = s.scalars(select(FedRun).order_by(FedRun.created_at.desc()).limit(limit))
            return [_run_public(r) for r in rows]

    # -- what partners call -------------------------------------------------------------

    def work_for(self, site_id: str, wait_s: float) -> dict[str, list[dict[str, Any]]]:
        """The work waiting for ``site_id`` and the work it has that was cancelled since,
        waiting up to ``wait_s`` for either to arrive."""
        deadline = time.monotonic() + wait_s
        while True:
            answer = {"jobs": self._take(site_id), "cancelled": self._cancellations(site_id)}
            left = deadline - time.monotonic()
            if answer["jobs"] or answer["cancelled"] or left <= 0 or self._stop.is_set():
                return answer
            with self._new_work:  # a launch here wakes it; one in another process, the re-check
                self._new_work.wait(min(left, 0.25))

    def _take(self, site_id: str) -> list[dict[str, Any]]:
        now = utcnow()
        again = now - timedelta(seconds=REDELIVER_S)
        waiting = (
            select(FedSiteRun, FedRun)
            .join(FedRun, FedRun.id == FedSiteRun.fed_run)
            .where(
                FedSiteRun.site_id == site_id,
                FedSiteRun.acknowledged.is_(False),
                FedSiteRun.state.in_(("queued", "unreachable")),
                FedRun.state == "running",
                or_(FedSiteRun.picked_up_at.is_(None), FedSiteRun.picked_up_at < again),
            )
        )
        with self.db.read() as s:  # the usual answer, without taking the writer's lock
            if s.execute(waiting.limit(1)).first() is None:
                return []
        with self.db.write() as s:
            found = s.execute(waiting).all()
            for part, _ in found:
                part.picked_up_at = now
            return [
                {
                    "id": part.id,
                    "fed_run": run.id,
                    "workflow": run.workflow,
                    "version": run.version,
                    "digest": run.digest,
                    "params": run.params,
                    "dataset": part.dataset,
                    "requested_by": run.created_by,
                }
                for part, run in found
            ]

    def _cancellations(self, site_id: str) -> list[dict[str, Any]]:
        """Cancelled parts the site took and has not answered on (told again after a while)."""
        again = utcnow() - timedelta(seconds=REDELIVER_S)
        told = (
            select(FedSiteRun)
            .where(
                FedSiteRun.site_id == site_id,
                FedSiteRun.state == "cancelled",
                FedSiteRun.acknowledged.is_(False),
                or_(FedSiteRun.picked_up_at.is_(None), FedSiteRun.picked_up_at < again),
            )
            .limit(100)
        )
        with self.db.read() as s:
            if s.execute(told.limit(1)).first() is None:
                return []
        with self.db.write() as s:
            found = s.scalars(told).all()
            for part in found:
                part.picked_up_at = utcnow()
            return [{"id": p.id, "fed_run": p.fed_run, "reason": p.reason} for p in found]

    def cancel(self, run_id: str, reason: str) -> None:
        """Stop a run: its unfinished parts are cancelled (each site is told on its next poll
        and stops its local run), its aggregation too; nothing more is taken from the sites."""
        with self.db.write() as s:
            run = s.get(FedRun, run_id)
            if run is None:
                raise NotFound(f"no federated run {run_id}")
            if run.state not in ("running", "aggregating"):
                raise Conflict(f"federated run {run_id} is {run.state}: nothing to cancel")
            aggregate_run = run.aggregate_run
            run.state, run.error, run.finished_at = "cancelled", reason, utcnow()
            for part in s.scalars(select(FedSiteRun).where(FedSiteRun.fed_run == run_id)):
                if part.state in SITE_FINISHED - {"unreachable"}:
                    continue
                # a site that never took the work needs no word; one that did is told
                told = part.picked_up_at is not None
                part.state, part.reason, part.updated_at = "cancelled", reason, utcnow()
                part.acknowledged, part.picked_up_at = not told, None
        if aggregate_run:
            with contextlib.suppress(Conflict):  # it finished in the meantime
                self.engine.cancel(aggregate_run)
        with self._new_work:
            self._new_work.notify_all()

    def _part(self, site_id: str, part_id: str) -> tuple[FedSiteRun, FedRun]:
        with self.db.read() as s:
            part = s.get(FedSiteRun, part_id)
            if part is None or part.site_id != site_id:  # another site's part does not exist
                raise NotFound(f"no work {part_id} for this site")
            run = s.get(FedRun, part.fed_run)
            assert run is not None
            return part, run

    def report(
        self,
        site_id: str,
        part_id: str,
        state: str,
        *,
        reason: str = "",
        progress: dict[str, Any] | None = None,
    ) -> str:
        """A partner says how its part goes; returns the state the part is in now (a report
        the part is past already changes nothing and is not an error: it was a repeat)."""
        if state not in SITE_TRANSITIONS or state in NOT_REPORTED:
            raise InvalidInput(f"unknown state {state!r}")
        part, _ = self._part(site_id, part_id)
        if state == "done":
            self._check_outputs(part)
        with self.db.write() as s:
            done = s.execute(
                update(FedSiteRun)
                .where(FedSiteRun.id == part_id, FedSiteRun.state.in_(_sources(state)))
                .values(
                    state=state,
                    reason=reason[:2000],
                    progress=progress or {},
                    acknowledged=True,
                    updated_at=utcnow(),
                )
            )
            if not getattr(done, "rowcount", 0):
                s.execute(
                    update(FedSiteRun).where(FedSiteRun.id == part_id).values(acknowledged=True)
                )
            now = s.get(FedSiteRun, part_id)
            assert now is not None
            current = now.state
        self.tick_run(part.fed_run)
        return current

    def _declared(self, run: FedRun) -> Workflow:
        return self.registry.get(run.workflow, run.version)

    def _check_outputs(self, part: FedSiteRun) -> None:
        with self.db.read() as s:
            run = s.get(FedRun, part.fed_run)
            assert run is not None
            got = set(s.scalars(select(FedOutput.name).where(FedOutput.site_run == part.id)))
        missing = [o.name for o in self._declared(run).outputs if o.name not in got]
        if missing:
            raise Conflict(f"done, but output {', '.join(missing)} did not arrive")

    def store_output(self, site_id: str, part_id: str, name: str, data: bytes) -> dict[str, Any]:
        """Keep an output a partner sent, if its workflow declares it and it fits; the same
        bytes sent again are the same output (a resend after a lost answer)."""
        part, run = self._part(site_id, part_id)
        declared = {o.name: o for o in self._declared(run).outputs}
        output = declared.get(name)
        if output is None:
            raise PermissionDenied(f"workflow {run.workflow} declares no output {name!r}")
        if len(data) > output.max_bytes:
            raise InvalidInput(f"output {name} is over its {output.max_bytes} bytes")
        if part.state not in ("running", "unreachable", "queued", "waiting_approval"):
            raise Conflict(f"this site's part is {part.state}: it takes no outputs")
        sha = hashlib.sha256(data).hexdigest()
        key = f"{run.id}/{part.site_name}/{name}"
        with self.db.read() as s:
            old = s.get(FedOutput, (part_id, name))
        if old is not None:
            if old.sha256 != sha:
                raise Conflict(f"output {name} arrived already with other content")
            return {"name": name, "bytes": old.bytes, "sha256": sha, "key": old.key}
        self.objects.of_project(run.project).put_bytes(BUCKET, key, data)
        with self.db.write() as s:
            if s.get(FedOutput, (part_id, name)) is None:
                s.add(
                    FedOutput(
                        site_run=part_id,
                        name=name,
                        kind=output.kind,
                        bytes=len(data),
                        sha256=sha,
                        key=key,
                    )
                )
        return {"name": name, "bytes": len(data), "sha256": sha, "key": key}

    # -- giving up and aggregating ------------------------------------------------------

    def tick(self) -> None:
        """One pass over the unfinished runs (the background thread calls it every second)."""
        with self.db.read() as s:
            ids = list(
                s.scalars(select(FedRun.id).where(FedRun.state.in_(("running", "aggregating"))))
            )
        for run_id in ids:
            try:
                self.tick_run(run_id)
            except Exception:
                log.exception("federated run %s", run_id)

    def tick_run(self, run_id: str) -> None:
        now = utcnow()
        with self.db.read() as s:
            run = s.get(FedRun, run_id)
            if run is None or run.state not in ("running", "aggregating"):
                return
            if run.state == "aggregating":
                self._follow_aggregation(run)
                return
            parts = s.scalars(select(FedSiteRun).where(FedSiteRun.fed_run == run_id)).all()
            seen = {
                p.site_id: p.last_seen_at
                for p in s.scalars(select(FedPeer).where(FedPeer.role == "partner"))
            }
        overdue = now - run.created_at > timedelta(seconds=run.timeout_s)
        silent = now - timedelta(seconds=self.site_timeout_s)
        for part in parts:
            if part.state in SITE_FINISHED:
                continue
            last = max(filter(None, (seen.get(part.site_id), part.updated_at)))
            if overdue or last < silent:
                why = (
                    "the run's time is up"
                    if overdue
                    else f"not heard from for {self.site_timeout_s:.0f} s"
                )
                self._move(part.id, "unreachable", why)
        with self.db.read() as s:
            states = list(s.scalars(select(FedSiteRun.state).where(FedSiteRun.fed_run == run_id)))
        if not all(st in SITE_FINISHED for st in states):
            return
        workflow = self._declared(run)
        done = states.count("done")
        if done == len(states) or (done and workflow.partial_aggregation):
            self._aggregate(run, workflow)
        else:
            self._finish(
                run_id,
                "failed",
                f"{done} of {len(states)} sites finished; "
                + ("none did" if not done else "the workflow needs all of them"),
            )

    def _move(self, part_id: str, state: str, reason: str) -> None:
        with self.db.write() as s:
            s.execute(
                update(FedSiteRun)
                .where(FedSiteRun.id == part_id, FedSiteRun.state.in_(_sources(state)))
                .values(state=state, reason=reason, updated_at=utcnow())
            )

    def _finish(self, run_id: str, state: str, error: str = "") -> None:
        with self.db.write() as s:
            s.execute(
                update(FedRun)
                .where(FedRun.id == run_id, FedRun.state.in_(("running", "aggregating")))
                .values(state=state, error=error, finished_at=utcnow())
            )

    def _aggregate(self, run: FedRun, workflow: Workflow) -> None:
        if not workflow.aggregate:
            self._finish(run.id, "done")
            return
        with self.db.write() as s:  # the process that wins this launches the aggregation
            won = s.execute(
                update(FedRun)
                .where(FedRun.id == run.id, FedRun.state == "running")
                .values(state="aggregating")
            )
            if not getattr(won, "rowcount", 0):
                return
        self._start_aggregation(run)

    def _start_aggregation(self, run: FedRun) -> None:
        aggregate = self.registry.get(self._declared(run).aggregate)
        local = self.engine.create_run(
            aggregate,
            dict(aggregate.validate_parameters({"federated_run": run.id})),
            [],
            input={"federated_run": run.id},
            trigger="federation",
            created_by=run.created_by,
            project=run.project,
        )
        with self.db.write() as s:
            s.execute(update(FedRun).where(FedRun.id == run.id).values(aggregate_run=local))

    def _follow_aggregation(self, run: FedRun) -> None:
        if not run.aggregate_run:  # the process stopped between the two steps: start it now
            self._start_aggregation(run)
            return
        state = self.engine.runs.run(run.aggregate_run, with_series=False).state
        if state in RUN_DONE:
            self._finish(
                run.id,
                "done" if state == "succeeded" else "failed",
                "" if state == "succeeded" else f"the aggregation {state}",
            )

    # -- the background thread ----------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="kahu-federation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._new_work:
            self._new_work.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.tick()


def _run_public(run: FedRun) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow": run.workflow,
        "version": run.version,
        "digest": run.digest,
        "params": run.params,
        "project": run.project,
        "created_by": run.created_by,
        "created_at": run.created_at,
        "state": run.state,
        "aggregate_run": run.aggregate_run,
        "error": run.error,
        "finished_at": run.finished_at,
    }
