"""Run and task state machines, written as transition tables.

Every state change goes through :func:`task_next` or :func:`run_next`; a change the table
does not list is a bug and raises. The database update that applies a transition names the
state it expects (``UPDATE ... WHERE state = :from``), so two engines can never both start a
task.

Tasks::

    pending --ready--> queued --claim--> running --succeed--> succeeded
       |                 |  ^               |--fail--> failed (--retry_later--> queued)
       |                 |  |               |--lost (the server died)--> queued
       |                 |  '--requeue------'
       |--upstream_failed--> upstream_failed     running --wait_input--> waiting_input
       '--cancel--> cancelled                    waiting_input --complete--> succeeded

Runs: queued -> running -> succeeded | failed | cancelled, with cancelling in between and
``waiting`` while a human step is pending; ``retry`` puts a finished run back to running.
"""

from __future__ import annotations

from typing import Literal

TaskState = Literal[
    "pending",
    "queued",
    "running",
    "waiting_input",
    "succeeded",
    "failed",
    "upstream_failed",
    "cancelled",
]
RunState = Literal["queued", "running", "waiting", "cancelling", "succeeded", "failed", "cancelled"]

TASK_TRANSITIONS: dict[tuple[str, str], TaskState] = {
    ("pending", "ready"): "queued",
    ("pending", "upstream_failed"): "upstream_failed",
    ("pending", "cancel"): "cancelled",
    ("queued", "claim"): "running",
    ("queued", "cancel"): "cancelled",
    ("queued", "upstream_failed"): "upstream_failed",
    ("running", "succeed"): "succeeded",
    ("running", "fail"): "failed",
    ("running", "retry_later"): "queued",
    ("running", "lost"): "queued",
    ("running", "wait_input"): "waiting_input",
    ("running", "cancel"): "cancelled",
    ("waiting_input", "complete"): "succeeded",
    ("waiting_input", "fail"): "failed",
    ("waiting_input", "cancel"): "cancelled",
    # re-running the failed part of a run
    ("failed", "rerun"): "pending",
    ("upstream_failed", "rerun"): "pending",
    ("cancelled", "rerun"): "pending",
}

RUN_TRANSITIONS: dict[tuple[str, str], RunState] = {
    ("queued", "start"): "running",
    ("queued", "cancel"): "cancelling",
    ("running", "wait"): "waiting",
    ("waiting", "resume"): "running",
    ("running", "succeed"): "succeeded",
    ("running", "fail"): "failed",
    ("running", "cancel"): "cancelling",
    ("waiting", "cancel"): "cancelling",
    ("waiting", "fail"): "failed",
    ("cancelling", "cancelled"): "cancelled",
    # fail fast: a failed series cancels the rest, and the run ends failed
    ("cancelling", "fail"): "failed",
    ("failed", "retry"): "running",
    ("cancelled", "retry"): "running",
}

TASK_DONE: frozenset[str] = frozenset({"succeeded", "failed", "upstream_failed", "cancelled"})
RUN_DONE: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
RUN_ACTIVE: frozenset[str] = frozenset({"queued", "running", "waiting", "cancelling"})


class IllegalTransition(RuntimeError):
    """A state change the tables do not allow (a bug, never user input)."""


def task_next(state: str, event: str) -> TaskState:
    try:
        return TASK_TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"task in state {state!r} cannot {event!r}") from None


def run_next(state: str, event: str) -> RunState:
    try:
        return RUN_TRANSITIONS[(state, event)]
    except KeyError:
        raise IllegalTransition(f"run in state {state!r} cannot {event!r}") from None


def task_sources(event: str) -> tuple[str, ...]:
    """The states from which ``event`` applies (for ``UPDATE ... WHERE state IN``)."""
    return tuple(sorted(s for (s, e) in TASK_TRANSITIONS if e == event))


def task_target(event: str) -> TaskState:
    """The one state ``event`` leads to (each task event has a single target)."""
    targets = {t for (_, e), t in TASK_TRANSITIONS.items() if e == event}
    if len(targets) != 1:
        raise IllegalTransition(f"task event {event!r} has targets {sorted(targets)}")
    return targets.pop()
