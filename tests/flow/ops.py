"""Operator functions and workflows for the engine tests (imported by task processes)."""

from __future__ import annotations

import json
import os
import time

from kahu.flow import (
    Resources,
    TaskContext,
    Workflow,
    application_operator,
    command_operator,
    python_operator,
)
from kahu.operators import get_input, store_results


def mark(ctx: TaskContext) -> None:
    """Writes what it saw: its series, parameters, inputs, environment."""
    seen = {
        "series": ctx.series_uid,
        "run_series": list(ctx.series),
        "params": dict(ctx.params),
        "env": {k: os.environ[k] for k in ("RUN_ID", "OPERATOR_OUT_DIR", "WORKFLOW_NAME")},
        "inputs": sorted(p.name for p in ctx.in_dir.iterdir()) if ctx.job.inputs else [],
    }
    (ctx.out_dir / "seen.json").write_text(json.dumps(seen))


def count_inputs(ctx: TaskContext) -> None:
    """Run-level: lists the per-series folders of its input."""
    dirs = ctx.series_dirs("mark")
    (ctx.out_dir / "count.json").write_text(json.dumps(sorted(dirs)))


def fail_for_odd(ctx: TaskContext) -> None:
    """Fails for the series named in the parameter ``bad``."""
    if ctx.series_uid in ctx.params.get("bad", []):
        raise RuntimeError(f"cannot process {ctx.series_uid}")
    (ctx.out_dir / "ok").write_text("ok")


def greedy(ctx: TaskContext) -> None:
    """Takes far more memory than it declared (its address-space limit refuses it)."""
    hoard = bytearray(16 * 1024**3)
    (ctx.out_dir / "size").write_text(str(len(hoard)))


def flaky(ctx: TaskContext) -> None:
    """Fails on its first attempt, succeeds on the second."""
    marker = ctx.workflow_dir / f"flaky-{ctx.job.task_id}"
    if not marker.exists():
        marker.write_text("tried")
        raise RuntimeError("first attempt fails")
    (ctx.out_dir / "ok").write_text("ok")


def sleep(ctx: TaskContext) -> None:
    """Records start and end around a sleep of ``seconds`` (default 0.5)."""
    seconds = float(ctx.params.get("seconds", 0.5))
    log = ctx.workflow_dir / "events.log"
    with open(log, "a") as fh:
        fh.write(f"start {ctx.job.task_id} {time.time()}\n")
    time.sleep(seconds)
    with open(log, "a") as fh:
        fh.write(f"end {ctx.job.task_id} {time.time()}\n")


def noop(ctx: TaskContext) -> None:
    return None


def fork_children(ctx: TaskContext) -> None:
    """Starts a grandchild that would outlive it, then hangs."""
    import subprocess

    child = subprocess.Popen(["sleep", "300"])
    (ctx.workflow_dir / "grandchild.pid").write_text(str(child.pid))
    time.sleep(300)


def copy_input(ctx: TaskContext) -> None:
    for path in ctx.in_dir.iterdir():
        (ctx.out_dir / path.name).write_bytes(path.read_bytes())


SCHEMA = {
    "type": "object",
    "properties": {
        "threshold": {"type": "integer", "minimum": 0, "default": 100, "description": "HU"},
        "mode": {"type": "string", "enum": ["fast", "exact"], "default": "fast"},
        "bad": {"type": "array", "items": {"type": "string"}, "default": []},
        "seconds": {"type": "number", "default": 0.5},
    },
    "additionalProperties": False,
}

WORKFLOWS = [
    Workflow(
        "test-chain",
        "1.0",
        (
            get_input(),
            python_operator("mark", mark, inputs=["get-input"], resources=Resources(0.5, 128)),
            python_operator(
                "count", count_inputs, inputs=["mark"], per="run", resources=Resources(0.5, 128)
            ),
        ),
        title="Chain",
        parameters=SCHEMA,
    ),
    Workflow(
        "test-failing",
        "1.0",
        (
            python_operator("work", fail_for_odd, resources=Resources(0.5, 128)),
            python_operator("after", noop, inputs=["work"], resources=Resources(0.5, 128)),
            python_operator(
                "summary", noop, inputs=["work"], per="run", resources=Resources(0.5, 128)
            ),
        ),
        parameters=SCHEMA,
    ),
    Workflow(
        "test-flaky",
        "1.0",
        (
            python_operator(
                "flaky", flaky, retries=1, retry_delay_s=0.1, resources=Resources(0.5, 128)
            ),
        ),
    ),
    Workflow(
        "test-sleep",
        "1.0",
        (python_operator("sleep", sleep, resources=Resources(1, 128), timeout_s=60),),
        parameters=SCHEMA,
    ),
    Workflow(
        "test-timeout",
        "1.0",
        (python_operator("hang", fork_children, resources=Resources(1, 128), timeout_s=1.0),),
    ),
    Workflow(
        "test-huge",
        "1.0",
        (python_operator("huge", noop, resources=Resources(1, 10_000_000)),),
    ),
    Workflow(
        "test-greedy",
        "1.0",
        (
            python_operator("greedy", greedy, resources=Resources(0.5, 128)),
            command_operator(
                "greedy-command",
                ["python3", "-c", "bytearray(16 * 1024**3)"],
                resources=Resources(0.5, 128),
            ),
        ),
    ),
    Workflow(
        "test-human",
        "1.0",
        (
            python_operator("prepare", noop, resources=Resources(0.5, 128)),
            application_operator("review", inputs=["prepare"]),
            python_operator(
                "finish", copy_input, inputs=["review"], per="run", resources=Resources(0.5, 128)
            ),
        ),
    ),
    Workflow(
        "test-command",
        "1.0",
        (
            get_input(),
            command_operator(
                "shell",
                [
                    "sh",
                    "-c",
                    'ls "$WORKFLOW_DIR/$BATCH_NAME" > "$KAHU_OUT_DIR/batch.txt"; '
                    'env | sort > "$KAHU_OUT_DIR/env.txt"',
                ],
                inputs=["get-input"],
                resources=Resources(0.5, 128),
            ),
        ),
        parameters=SCHEMA,
    ),
    Workflow(
        "test-store",
        "1.0",
        (
            get_input(),
            python_operator(
                "copy", copy_input, inputs=["get-input"], resources=Resources(0.5, 128)
            ),
            store_results(["copy"]),
        ),
    ),
]


PROBE = (
    "import os, socket, sys\n"
    "out = os.environ['KAHU_OUT_DIR']\n"
    "try:\n"
    "    socket.create_connection(('127.0.0.1', int(os.environ['PORT'])), timeout=2).close()\n"
    "    net = 'connected'\n"
    "except OSError as exc:\n"
    "    net = 'refused: ' + type(exc).__name__\n"
    "try:\n"
    "    data = open(os.environ['OTHER']).read()\n"
    "except OSError as exc:\n"
    "    data = 'unreadable: ' + type(exc).__name__\n"
    "try:\n"
    "    open(os.path.join(os.environ['BATCH_ELEMENT_DIR'], 'get-input', 'x'), 'w')\n"
    "    wrote = 'wrote input'\n"
    "except OSError as exc:\n"
    "    wrote = 'input read-only: ' + type(exc).__name__\n"
    "open(os.path.join(out, 'probe.txt'), 'w').write(net + '\\n' + data + '\\n' + wrote)\n"
)

PROBE_PARAMS = {
    "type": "object",
    "properties": {"port": {"type": "integer"}, "other": {"type": "string"}},
    "required": ["port", "other"],
}


def probe_workflow(name: str, isolation: str) -> Workflow:
    import sys

    return Workflow(
        name,
        "1.0",
        (
            get_input(),
            command_operator(
                "probe",
                [sys.executable, "-c", PROBE],
                inputs=["get-input"],
                isolation=isolation,  # type: ignore[arg-type]
                resources=Resources(0.5, 128),
            ),
        ),
        parameters=PROBE_PARAMS,
    )


WORKFLOWS += [
    probe_workflow("test-probe", "required"),
    probe_workflow("test-probe-open", "off"),
]
