"""Ray: tasks run on a Ray cluster (scale-out across machines). Each operator's declared
CPU, memory and GPU memory become Ray's ``num_cpus``, ``memory`` and ``num_gpus`` requests;
run folders must be on a file system every node mounts at the same path."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kahu.flow.executors.base import Executor, Outcome, Report, Started
from kahu.flow.job import Job

log = logging.getLogger(__name__)


def _execute(job: Job, home: str, memory_slack_mb: int) -> tuple[bool, str, bool]:
    """Runs on a Ray worker: the job in its own process, as the local executor does."""
    from kahu.flow.inline import execute

    return execute(job, Path(home), memory_slack_mb)


@dataclass
class _Pending:
    job: Job
    ref: Any
    deadline: float
    cancelled: bool = False
    timed_out: bool = False


class RayExecutor(Executor):
    name = "ray"

    def __init__(
        self,
        home: Path,
        *,
        address: str = "",
        memory_slack_mb: int = 1024,
        num_cpus: float | None = None,
        gpu_memory_mb: int = 0,
        queue_grace_s: float = 600.0,
    ) -> None:
        self.home = home.resolve()
        self.address = address
        self.memory_slack_mb = memory_slack_mb
        self.num_cpus = num_cpus
        #: memory of one GPU, to turn declared GPU memory into a fraction of a GPU
        self.gpu_memory_mb = gpu_memory_mb
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._report: Report | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        #: how long past its timeout a task may take on the driver's clock before the driver
        #: cancels it (queue time in the cluster, a node that stopped answering)
        self.queue_grace_s = queue_grace_s
        self._remote: Any = None
        self._started_ray = False

    def start(self, report: Report, preload: Sequence[str] = ()) -> None:
        import ray

        self._report = report
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": logging.WARNING,
            }
            if self.address:
                kwargs["address"] = self.address
            elif self.num_cpus is not None:
                kwargs["num_cpus"] = self.num_cpus
            ray.init(**kwargs)
            self._started_ray = True
        self._remote = ray.remote(_execute)
        self._thread = threading.Thread(target=self._monitor, name="kahu-flow-ray", daemon=True)
        self._thread.start()

    def capacity(self) -> tuple[float, int] | None:
        import ray

        total: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        return float(total.get("CPU", 1.0)), int(total.get("memory", 0) // (1024 * 1024))

    def submit(self, job: Job) -> Started:
        job.out_dir.mkdir(parents=True, exist_ok=True)
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {
            "num_cpus": job.cpu,
            "memory": job.memory_mb * 1024 * 1024,
            "max_retries": 0,
        }
        if job.gpu_memory_mb:
            share = job.gpu_memory_mb / self.gpu_memory_mb if self.gpu_memory_mb else 1.0
            options["num_gpus"] = min(1.0, share)
        ref = self._remote.options(**options).remote(job, str(self.home), self.memory_slack_mb)
        with self._lock:
            # the node enforces the timeout from the task's start; this backstop also
            # counts the time the task waited in Ray's queue
            deadline = time.monotonic() + job.timeout_s + self.queue_grace_s
            self._pending[job.task_id] = _Pending(job, ref, deadline)
        return Started()

    def cancel(self, task_id: int) -> None:
        import ray

        with self._lock:
            item = self._pending.get(task_id)
            if item is not None:
                item.cancelled = True
        if item is not None:
            ray.cancel(item.ref, force=True)

    def stop(self) -> None:
        import ray

        self._stopping = True
        with self._lock:
            items = list(self._pending.values())
        for item in items:
            ray.cancel(item.ref, force=True)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._started_ray:
            ray.shutdown()

    def _monitor(self) -> None:
        import ray

        while not self._stopping:
            with self._lock:
                items = {id(i.ref): i for i in self._pending.values()}
            if not items:
                time.sleep(0.02)
                continue
            refs = [i.ref for i in items.values()]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0.05)
            for ref in ready:
                item = items[id(ref)]
                with self._lock:
                    self._pending.pop(item.job.task_id, None)
                self._deliver(item, ref)
            now = time.monotonic()
            for item in items.values():
                if not item.timed_out and item.deadline <= now:
                    item.timed_out = True
                    ray.cancel(item.ref, force=True)

    def _deliver(self, item: _Pending, ref: Any) -> None:
        import ray

        job = item.job
        try:
            ok, error, timed_out = ray.get(ref)  # the node times the job out itself
            outcome = Outcome(job.task_id, job.attempt, ok, error, timed_out)
        except Exception as exc:
            if item.cancelled:
                outcome = Outcome(job.task_id, job.attempt, False, "cancelled", cancelled=True)
            elif item.timed_out:
                outcome = Outcome(
                    job.task_id, job.attempt, False, f"timed out after {job.timeout_s:g} s", True
                )
            else:
                outcome = Outcome(job.task_id, job.attempt, False, f"{type(exc).__name__}: {exc}")
        if self._report is not None and not self._stopping:
            self._report(outcome)
