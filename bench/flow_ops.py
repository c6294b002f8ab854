"""The workflows the engine benchmark runs (imported by task processes)."""

from __future__ import annotations

from kahu.flow import Resources, TaskContext, Workflow, python_operator


def noop(ctx: TaskContext) -> None:
    return None


NOOP = Workflow(
    "bench-noop",
    "1.0",
    (python_operator("noop", noop, resources=Resources(cpu=1, memory_mb=128)),),
    title="No-op per series (engine overhead)",
)
