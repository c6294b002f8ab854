"""The workflow engine: creates runs, promotes tasks whose inputs are done, admits them by
resources, hands them to the executor and records every outcome.

One thread owns the scheduling; the database holds the truth, so a restart (even after
``kill -9``) picks up unfinished runs: tasks a dead engine had started are stopped if their
process still lives, and queued again. Outcomes and claims are written in batches, one
transaction per scheduling pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.catalog.tables import utcnow
from kahu.errors import Conflict, InvalidInput
from kahu.flow.active import (
    ActiveRun,
    ActiveTask,
    build_run,
    engine_identity,
    finished_before_loss,
    job_for,
    owner_alive,
)
from kahu.flow.executors.base import Executor, Outcome
from kahu.flow.job import Job, RunPaths, TaskContext, write_conf
from kahu.flow.model import Workflow, load_callable
from kahu.flow.processes import kill_leftover
from kahu.flow.registry import WorkflowRegistry
from kahu.flow.resources import Admission
from kahu.flow.runs import RunStore, TaskInfo
from kahu.flow.states import RUN_DONE, TASK_DONE

if TYPE_CHECKING:
    from kahu.flow.services import OperatorServices
    from kahu.models.registry import ModelRegistry

log = logging.getLogger(__name__)

#: internal operators get their task's services (:mod:`kahu.flow.services`) beside their context
InternalFunction = Callable[[TaskContext, "OperatorServices"], None]
#: builds a task's services from its job
ServicesFor = Callable[[Job], "OperatorServices"]


class Engine:
    """Runs workflows. ``services`` builds what internal operators get for their task (an
    :class:`~kahu.flow.services.OperatorServices` bound to the run)."""

    def __init__(
        self,
        *,
        runs: RunStore,
        registry: WorkflowRegistry,
        executor: Executor,
        admission: Admission,
        runs_root: Path,
        services: ServicesFor | None = None,
        poll_seconds: float = 1.0,
        internal_workers: int = 4,
        models: ModelRegistry | None = None,
    ) -> None:
        self.runs = runs
        self.models = models  # the installed models a launch may name
        self.registry = registry
        self.executor = executor
        self.admission = admission
        self.runs_root = runs_root
        self.services = services
        self.poll = poll_seconds
        self.owner = engine_identity()
        self._cond = threading.Condition()
        self._outcomes: list[Outcome] = []
        self._woken = False
        self._stopped = False
        self._active: dict[str, ActiveRun] = {}
        self._thread: threading.Thread | None = None
        self._internal = ThreadPoolExecutor(internal_workers, thread_name_prefix="kahu-op")
        self._internal_running: set[int] = set()
        self._last_poll = 0.0
        self._fail_fast: set[str] = set()
        #: process ids of tasks started in the last pass, written with the next pass
        self._pids: list[tuple[int, int | None, int | None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.runs_root.mkdir(parents=True, exist_ok=True)
        self.executor.start(self._on_outcome, self.registry.python_modules())
        capacity = self.executor.capacity()
        if capacity is not None:  # a cluster: its totals, not this machine's readings
            self.admission.use_capacity(*capacity)
        self._thread = threading.Thread(target=self._loop, name="kahu-flow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.executor.stop()
        self._internal.shutdown(wait=True, cancel_futures=True)
        # what was running is queued again for the next start (not counted as an attempt)
        running = [
            t for r in self._active.values() for t in r.tasks.values() if t.state == "running"
        ]
        self.runs.apply([("lost", t.id, {"attempt": max(0, t.attempt - 1)}) for t in running])

    def thread_id(self) -> int:
        """The native id of the engine's thread (for measuring its CPU time)."""
        if self._thread is None or self._thread.native_id is None:
            raise RuntimeError("the engine is not running")
        return self._thread.native_id

    def wake(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def _on_outcome(self, outcome: Outcome) -> None:
        with self._cond:
            self._outcomes.append(outcome)
            self._cond.notify_all()

    # -- the public operations -------------------------------------------------------------

    def create_run(
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
        models: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> str:
        """A new run; ``models``: what its parameters named (``ModelInfo.run_record``)."""
        if not series and any(op.per == "series" for op in workflow.operators):
            raise InvalidInput("the cohort is empty: no series to run on")
        run_id = self.runs.create(
            workflow,
            params,
            series,
            input=input,
            missing=missing,
            trigger=trigger,
            created_by=created_by,
            project=project,
        )
        conf: dict[str, Any] = {"run_id": run_id, "workflow": workflow.name}
        conf |= {"version": workflow.version, "project": project, "workflow_form": params}
        conf["models"] = dict(models or {})
        conf["data_form"] = {"series_uids": list(series), **input}
        write_conf(RunPaths(self.runs_root, run_id), conf)
        self.wake()
        return run_id

    def cancel(self, run_id: str) -> None:
        self.runs.require_run_state(run_id, "cancel")
        self.wake()

    def retry(self, run_id: str) -> int:
        """Run the failed, upstream-failed and cancelled tasks of a finished run again."""
        count = self.runs.rerun(run_id)
        self.wake()
        return count

    def complete(self, task_id: int) -> None:
        """A user finished a human step: the run continues."""
        task = self.runs.task(task_id)
        if task.state != "waiting_input":
            raise Conflict(f"task {task_id} is {task.state}, not waiting for input")
        self._on_outcome(Outcome(task_id, task.attempt, True))

    def wait_idle(self, run_id: str, timeout: float) -> str:
        """Block until ``run_id`` has finished (tests, ``kahu run``); return its state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.runs.run(run_id, with_series=False).state
            if state in RUN_DONE:
                return state
            time.sleep(0.05)
        return self.runs.run(run_id, with_series=False).state

    # -- the loop --------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                if not self._outcomes and not self._woken:
                    self._cond.wait(timeout=self._next_wait())
                if self._stopped:
                    return
                outcomes, self._outcomes = self._outcomes, []
                woken, self._woken = self._woken, False
            try:
                self._pass(outcomes, woken)
            except Exception:
                log.exception("workflow engine pass failed; reloading the runs and retrying")
                with self._cond:
                    self._outcomes = outcomes + self._outcomes
                    self._woken = True
                # what this pass changed in memory may not have been committed
                for run_id in list(self._active):
                    self._drop(run_id)
                time.sleep(1)

    def _next_wait(self) -> float:
        now = time.monotonic()
        wait = max(0.0, self._last_poll + self.poll - now)
        due = [
            t.not_before
            for r in self._active.values()
            for t in r.tasks.values()
            if t.state == "queued" and t.not_before > now
        ]
        if due:
            wait = min(wait, max(0.0, min(due) - now))
        return wait

    def _pass(self, outcomes: list[Outcome], woken: bool) -> None:
        now = time.monotonic()
        if woken or now - self._last_poll >= self.poll:
            self._last_poll = now
            self._sync_runs()
        touched: set[str] = set()
        # one transaction for the pass's transitions; processes start after it commits, so
        # a task runs only once it is durably claimed
        pids = list(self._pids)
        with self.runs.batch():
            self.runs.set_pids(pids)
            if outcomes:
                touched |= self._record(outcomes)
            for run in list(self._active.values()):
                if run.state == "cancelling":
                    self._cancel_tasks(run)
                    touched.add(run.id)
            touched |= self._promote()
            claimed = self._claim()
        del self._pids[: len(pids)]
        touched |= self._start(claimed)
        for run_id in touched | set(self._active):
            self._settle(run_id)

    # -- loading runs ----------------------------------------------------------------------

    def _sync_runs(self) -> None:
        """New runs from the database (this or another process), and state changes made
        outside the loop (cancel, retry)."""
        active = self.runs.active_run_ids()
        for run_id in active:
            if run_id not in self._active:
                self._load(run_id)
        for run_id in list(self._active):
            if run_id not in active:
                # finished elsewhere (or deleted)
                self._drop(run_id)
                continue
            state = self.runs.run(run_id, with_series=False).state
            run = self._active[run_id]
            if state != run.state:
                run.state = state

    def _load(self, run_id: str) -> None:
        info = self.runs.run(run_id)
        try:
            workflow = self.registry.get(info.workflow, info.version)
        except Exception as exc:
            self.runs.fail_run(run_id, f"workflow not available: {exc}")
            return
        tasks = self.runs.tasks(run_id)
        run = build_run(info, workflow, tasks, self.runs_root)
        lost = [t for t in tasks if t.state == "running" and t.owner != self.owner]
        mine = [run.tasks[t.id] for t in tasks if t.state == "running" and t.owner == self.owner]
        for task in mine:
            if task.op.kind != "application":
                # reloaded while this engine runs it: it holds its resources again
                self.admission.take(task.op.resources, None)
                task.held = True
        self._active[run_id] = run
        self._recover(run, lost)

    def _recover(self, run: ActiveRun, lost: list[TaskInfo]) -> None:
        """Tasks started by an engine that is gone: stop what is left of them; those that
        finished (their process left its done marker) succeed, the others are queued."""
        requeue: list[TaskInfo] = []
        finished: list[TaskInfo] = []
        for t in lost:
            alive = owner_alive(t.owner)
            if alive is None:
                log.warning("task %s runs on another machine (%s); leaving it", t.id, t.owner)
                continue
            if alive:
                continue  # another engine on this machine still runs it
            if t.pid is not None and kill_leftover(t.pid, t.pid_started):
                log.warning("killed leftover process %s of task %s", t.pid, t.id)
            (finished if finished_before_loss(run, t) else requeue).append(t)
        now = utcnow()
        moved = self.runs.apply(
            [("lost", t.id, {"attempt": max(0, t.attempt - 1), "pid": None}) for t in requeue]
            + [("succeed", t.id, {"finished_at": now, "error": ""}) for t in finished]
        )
        for t in requeue:
            if t.id in moved:
                task = run.tasks[t.id]
                task.state = "queued"
                task.attempt = max(0, t.attempt - 1)
        for t in finished:
            if t.id in moved:
                run.tasks[t.id].state = "succeeded"

    def _drop(self, run_id: str) -> None:
        run = self._active.pop(run_id, None)
        if run is None:
            return
        for task in run.tasks.values():
            if task.held:
                self.admission.give(task.op.resources, task.gpu)
                task.held = False

    # -- outcomes --------------------------------------------------------------------------

    def _find(self, task_id: int) -> tuple[ActiveRun, ActiveTask] | None:
        for run in self._active.values():
            task = run.tasks.get(task_id)
            if task is not None:
                return run, task
        return None

    def _record(self, outcomes: list[Outcome]) -> set[str]:
        changes: list[tuple[str, int, dict[str, Any]]] = []
        follow: list[tuple[ActiveRun, ActiveTask, str, float]] = []
        now = utcnow()
        for outcome in outcomes:
            found = self._find(outcome.task_id)
            if found is None:
                continue
            run, task = found
            if task.state == "waiting_input" and outcome.ok:
                changes.append(("complete", task.id, {"finished_at": now, "reason": ""}))
                follow.append((run, task, "succeeded", 0.0))
                continue
            if task.state != "running" or outcome.attempt != task.attempt:
                continue  # an old attempt, or already settled
            if task.held:
                self.admission.give(task.op.resources, task.gpu)
                task.held = False
            if outcome.ok:
                changes.append(("succeed", task.id, {"finished_at": now, "error": ""}))
                follow.append((run, task, "succeeded", 0.0))
            elif outcome.cancelled or run.state == "cancelling":
                changes.append(("cancel", task.id, {"finished_at": now, "error": outcome.error}))
                follow.append((run, task, "cancelled", 0.0))
            elif task.attempt <= task.op.retries:
                delay = task.op.retry_delay_s * (2 ** (task.attempt - 1))
                changes.append(
                    (
                        "retry_later",
                        task.id,
                        {"error": outcome.error, "not_before": now + timedelta(seconds=delay)},
                    )
                )
                follow.append((run, task, "queued", time.monotonic() + delay))
            else:
                changes.append(("fail", task.id, {"finished_at": now, "error": outcome.error}))
                follow.append((run, task, "failed", 0.0))
        moved = self.runs.apply(changes)
        touched = set()
        for run, task, state, not_before in follow:
            if task.id not in moved:
                continue
            task.state = state
            task.not_before = not_before
            touched.add(run.id)
            if state == "failed" and run.workflow.fail_fast and run.state == "running":
                self.runs.move_run(run.id, "cancel", error=f"task {task.id} failed (fail fast)")
                run.state = "cancelling"
                self._fail_fast.add(run.id)
        return touched

    # -- promotion -------------------------------------------------------------------------

    def _promote(self) -> set[str]:
        """Pending tasks whose inputs are all done become queued (or upstream_failed)."""
        changes: list[tuple[str, int, dict[str, Any]]] = []
        follow: list[tuple[ActiveRun, ActiveTask, str]] = []
        for run in self._active.values():
            if run.state not in ("queued", "running", "waiting"):
                continue
            for task in run.tasks.values():
                if task.state != "pending":
                    continue
                deps = [run.tasks[d] for d in task.deps]
                if any(d.state not in TASK_DONE for d in deps):
                    continue
                ok = [d for d in deps if d.state == "succeeded"]
                # a run-level task goes on with the series that succeeded; a per-series task
                # needs all of its inputs
                per_series_fanin = not task.series_uid and any(d.series_uid for d in deps)
                good = bool(ok) if per_series_fanin else len(ok) == len(deps)
                if not deps or good:
                    changes.append(("ready", task.id, {}))
                    follow.append((run, task, "queued"))
                else:
                    failed = next(d for d in deps if d.state != "succeeded")
                    changes.append(
                        (
                            "upstream_failed",
                            task.id,
                            {"error": f"input {failed.op.name} {failed.state}"},
                        )
                    )
                    follow.append((run, task, "upstream_failed"))
        moved = self.runs.apply(changes)
        touched = set()
        for run, task, state in follow:
            if task.id in moved:
                task.state = state
                touched.add(run.id)
        if any(state == "upstream_failed" for *_, state in follow):
            touched |= self._promote()  # failures travel down the graph
        return touched

    # -- dispatch --------------------------------------------------------------------------

    def _claim(self) -> list[tuple[ActiveRun, ActiveTask]]:
        """Queued tasks that fit now, claimed (running, attempt counted) in the pass's
        transaction; their processes start after it commits."""
        now = time.monotonic()
        claims: list[tuple[str, int, dict[str, Any]]] = []
        chosen: list[tuple[ActiveRun, ActiveTask]] = []
        reasons: list[tuple[ActiveTask, str]] = []
        runs = sorted(self._active.values(), key=lambda r: (r.created, r.id))
        started_at = utcnow()
        for run in runs:
            if run.state not in ("queued", "running", "waiting"):
                continue
            for task in sorted(run.tasks.values(), key=lambda t: t.id):
                if task.state != "queued" or task.not_before > now:
                    continue
                if task.op.kind != "application":
                    decision = self.admission.check(task.op.resources)
                    if not decision.ok:
                        if decision.reason != task.reason:
                            reasons.append((task, decision.reason))
                        continue
                    self.admission.take(task.op.resources, decision.gpu)
                    task.held = True
                    task.gpu = decision.gpu
                claims.append(
                    (
                        "claim",
                        task.id,
                        {
                            "attempt": task.attempt + 1,
                            "started_at": started_at,
                            "owner": self.owner,
                            "reason": "",
                            "not_before": None,
                        },
                    )
                )
                if task.op.kind == "application":
                    claims.append(("wait_input", task.id, {"reason": "waiting for a user"}))
                chosen.append((run, task))
        for task, reason in reasons:
            task.reason = reason
        self.runs.set_reasons([(t.id, r) for t, r in reasons])
        moved = self.runs.apply(claims)
        claimed: list[tuple[ActiveRun, ActiveTask]] = []
        for run, task in chosen:
            if task.id not in moved:
                if task.held:
                    self.admission.give(task.op.resources, task.gpu)
                    task.held = False
                continue
            task.attempt += 1
            task.reason = ""
            task.state = "waiting_input" if task.op.kind == "application" else "running"
            claimed.append((run, task))
        return claimed

    def _start(self, claimed: list[tuple[ActiveRun, ActiveTask]]) -> set[str]:
        touched: set[str] = set()
        for run, task in claimed:
            touched.add(run.id)
            if task.op.kind == "application":
                run.paths.out_dir(task.op.name, task.series_uid).mkdir(parents=True, exist_ok=True)
                continue
            job = job_for(run, task, self.registry.module_file(task.op.function))
            if task.op.kind == "internal":
                self._internal.submit(self._run_internal, job)
                continue
            try:
                started = self.executor.submit(job)
                self._pids.append((task.id, started.pid, started.pid_started))
            except Exception as exc:
                log.warning("task %s did not start: %s", task.id, exc)
                self._on_outcome(Outcome(task.id, task.attempt, False, f"did not start: {exc}"))
        return touched

    def _run_internal(self, job: Job) -> None:
        """An internal operator, in a thread of the server: it uses the server's services."""
        job.out_dir.mkdir(parents=True, exist_ok=True)
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        logger = logging.getLogger(f"kahu.task.{job.run_id}.{job.task_id}")
        handler = logging.FileHandler(job.log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        try:
            assert job.function is not None
            if self.services is None:
                raise RuntimeError("this engine runs no internal operators (no services)")
            function: InternalFunction = load_callable(job.function)
            function(TaskContext(job, logger), self.services(job))
            outcome = Outcome(job.task_id, job.attempt, True)
        except Exception as exc:
            logger.exception("failed")
            outcome = Outcome(job.task_id, job.attempt, False, f"{type(exc).__name__}: {exc}")
        finally:
            logger.removeHandler(handler)
            handler.close()
        self._on_outcome(outcome)

    # -- cancel and settle -----------------------------------------------------------------

    def _cancel_tasks(self, run: ActiveRun) -> None:
        waiting = [
            t for t in run.tasks.values() if t.state in ("pending", "queued", "waiting_input")
        ]
        now = utcnow()
        moved = self.runs.apply([("cancel", t.id, {"finished_at": now}) for t in waiting])
        for task in waiting:
            if task.id in moved:
                task.state = "cancelled"
        for task in run.tasks.values():
            if task.state == "running" and task.op.kind not in ("internal", "application"):
                self.executor.cancel(task.id)

    def _settle(self, run_id: str) -> None:
        run = self._active.get(run_id)
        if run is None:
            return
        states = [t.state for t in run.tasks.values()]
        open_states = [s for s in states if s not in TASK_DONE]
        now = utcnow()
        started = any(s not in ("pending", "queued") for s in states)
        if (
            run.state == "queued"
            and started
            and self.runs.move_run(run.id, "start", started_at=now)
        ):
            run.state = "running"
        if run.state == "cancelling" and not any(s == "running" for s in states):
            if run.id in self._fail_fast:
                self._fail_fast.discard(run.id)
                self.runs.move_run(run.id, "fail", finished_at=now)
            else:
                self.runs.move_run(run.id, "cancelled", finished_at=now)
            self._drop(run.id)
            return
        if run.state in ("running", "waiting") and not open_states:
            failed = sum(1 for s in states if s != "succeeded")
            if failed:
                self.runs.move_run(
                    run.id,
                    "fail",
                    finished_at=now,
                    error=f"{failed} of {len(states)} tasks did not succeed",
                )
            else:
                self.runs.move_run(run.id, "succeed", finished_at=now)
            self._drop(run.id)
            return
        busy = any(s in ("running", "queued") for s in open_states)
        if run.state == "running" and "waiting_input" in open_states and not busy:
            if self.runs.move_run(run.id, "wait"):
                run.state = "waiting"
        elif run.state == "waiting" and busy and self.runs.move_run(run.id, "resume"):
            run.state = "running"
