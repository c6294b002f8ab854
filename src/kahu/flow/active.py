"""The engine's picture of an unfinished run: its tasks, their dependencies and what it
holds, read back from the database; and which engine owns a started task.

The database holds the truth; this picture is rebuilt from it whenever the engine starts,
finds a new run or has to recover from a failed pass.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.catalog.tables import utcnow
from kahu.flow.job import Job, RunPaths
from kahu.flow.model import Operator, Workflow
from kahu.flow.processes import process_start_time
from kahu.flow.runs import RunInfo, TaskInfo


def engine_identity() -> str:
    """This engine's owner mark on the tasks it starts: host, process id and start time."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start_time(pid)}"


def owner_alive(owner: str) -> bool | None:
    """Whether the engine ``owner`` still runs: None when it is on another machine."""
    host, _, rest = owner.partition(":")
    if host != socket.gethostname():
        return None
    pid_text, _, started = rest.partition(":")
    if not pid_text.isdigit():
        return False
    return str(process_start_time(int(pid_text))) == started


@dataclass
class ActiveTask:
    id: int
    op: Operator
    series_uid: str
    state: str
    attempt: int
    not_before: float = 0.0  # monotonic time before which a retry waits
    deps: list[int] = field(default_factory=list)
    dependents: list[int] = field(default_factory=list)
    gpu: str | None = None
    reason: str = ""
    held: bool = False  # resources taken from the admission


@dataclass
class ActiveRun:
    id: str
    workflow: Workflow
    params: dict[str, Any]
    series: tuple[str, ...]
    state: str
    paths: RunPaths
    tasks: dict[int, ActiveTask] = field(default_factory=dict)
    created: float = 0.0
    project: str = DEFAULT_PROJECT
    created_by: str = ""


def build_run(
    info: RunInfo, workflow: Workflow, tasks: list[TaskInfo], runs_root: Path
) -> ActiveRun:
    """The run ``info`` of ``workflow`` with its ``tasks`` linked to the tasks whose
    outputs they take (a per-series input from the same series, or from every series)."""
    run = ActiveRun(
        info.id,
        workflow,
        info.params,
        tuple(info.series),
        info.state,
        RunPaths(runs_root, info.id),
        created=info.created_at.timestamp(),
        project=info.project,
        created_by=info.created_by,
    )
    keys: dict[tuple[str, str], int] = {}
    models = run.paths.models()  # what the run's models need raises their operators' needs
    for t in tasks:
        op = workflow.operator(t.operator).fitted(models)
        task = ActiveTask(t.id, op, t.series_uid, t.state, t.attempt)
        if t.not_before is not None:
            task.not_before = time.monotonic() + max(0.0, (t.not_before - utcnow()).total_seconds())
        run.tasks[t.id] = task
        keys[(t.operator, t.series_uid)] = t.id
    for task in run.tasks.values():
        for name in task.op.inputs:
            source = workflow.operator(name)
            if source.per == "series" and task.series_uid:
                deps = [keys[(name, task.series_uid)]]
            elif source.per == "series":
                deps = [keys[(name, uid)] for uid in run.series]
            else:
                deps = [keys[(name, "")]]
            task.deps += deps
            for dep in deps:
                run.tasks[dep].dependents.append(task.id)
    return run


def finished_before_loss(run: ActiveRun, task: TaskInfo) -> bool:
    """Whether the lost ``task``'s process got to the end of its attempt: it leaves a done
    marker holding the attempt's number beside its log."""
    done = run.paths.log(task.operator, task.series_uid).with_suffix(".done")
    try:
        return done.read_text().strip() == str(task.attempt)
    except OSError:
        return False


def job_for(run: ActiveRun, task: ActiveTask, module_file: str | None) -> Job:
    """What the executor (or the internal pool) needs to run ``task`` of ``run``;
    ``module_file`` is the file a Python operator's module was installed from."""
    op = task.op
    workflow = run.workflow
    return Job(
        task_id=task.id,
        attempt=task.attempt,
        run_id=run.id,
        workflow=workflow.name,
        version=workflow.version,
        operator=op.name,
        kind=op.kind,
        per=op.per,
        series_uid=task.series_uid,
        inputs={name: workflow.operator(name).per for name in op.inputs},
        params=run.params,
        run_dir=str(run.paths.root.resolve()),
        series=run.series if op.per == "run" else (),
        timeout_s=op.timeout_s,
        cpu=op.resources.cpu,
        memory_mb=op.resources.memory_mb,
        gpu_memory_mb=op.resources.gpu_memory_mb,
        function=op.function,
        module_file=module_file,
        command=op.command,
        image=op.image,
        isolation=op.isolation,
        extra_env=dict(op.env),
        options=dict(op.options),
        project=run.project,
        launched_by=run.created_by,
        gpu=task.gpu,
    )
