"""The executor interface: submit a job, hear about its outcome, cancel it, stop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kahu.flow.job import Job


@dataclass(frozen=True, slots=True)
class Outcome:
    task_id: int
    attempt: int
    ok: bool
    error: str = ""
    timed_out: bool = False
    cancelled: bool = False


Report = Callable[[Outcome], None]


@dataclass(frozen=True, slots=True)
class Started:
    """Where a job runs, so a restarted server can find and stop a leftover process."""

    pid: int | None = None
    pid_started: int | None = None


class Executor(ABC):
    """Runs python, command and container jobs; reports each outcome exactly once."""

    name: str = "executor"

    @abstractmethod
    def start(self, report: Report, preload: Sequence[str] = ()) -> None:
        """Begin; ``preload`` names the operators' modules, which a process-starting
        executor may import once up front."""

    def capacity(self) -> tuple[float, int] | None:
        """(CPUs, memory MB) to schedule against when the executor is not this machine."""
        return None

    @abstractmethod
    def submit(self, job: Job) -> Started:
        """Start ``job``; its outcome comes later through ``report``. Raising means it did
        not start (the engine records the failure)."""

    @abstractmethod
    def cancel(self, task_id: int) -> None:
        """Kill the job of ``task_id`` if it runs; its outcome is reported as cancelled."""

    @abstractmethod
    def stop(self) -> None:
        """Kill every running job (the server is stopping) without reporting them."""
