"""Run actions: cancel a run, run its failed and cancelled tasks again. Scientists of the
run's project may; to anyone else who is not a member the run does not exist."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from kahu.actions import Actor, Done, perform, scientists_of
from kahu.core import Kahu

T = TypeVar("T")


def _on_run(kahu: Kahu, actor: Actor, run_id: str, verb: str, change: Callable[[], T]) -> T:
    project = kahu.runs.run(run_id, with_series=False).project  # NotFound: no such run
    may = scientists_of(kahu, project, f"run {run_id!r}")
    return perform(kahu, actor, f"run.{verb}", may, change, project=project, detail={"run": run_id})


def cancel_run(kahu: Kahu, actor: Actor, run_id: str) -> Done:
    """Cancel ``run_id``: its waiting tasks at once, its running ones killed by the engine."""
    _on_run(kahu, actor, run_id, "cancel", lambda: kahu.flow.cancel(run_id))
    return Done(f"{run_id} cancelled.")


def retry_run(kahu: Kahu, actor: Actor, run_id: str) -> Done:
    """Queue the failed, upstream-failed and cancelled tasks of the finished ``run_id``."""
    count = _on_run(kahu, actor, run_id, "retry", lambda: kahu.flow.retry(run_id))
    return Done(f"{run_id}: {count} tasks again.", count)
