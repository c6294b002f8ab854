"""Workflows as users run them: drop-in definitions, ``kahu run`` and ``kahu runs``, and a
server killed with SIGKILL in the middle of a run that finishes after a restart with every
task done exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

from kahu.core import Kahu
from kahu.settings import Settings
from tests.conftest import free_port, wait_for_port
from tests.flow.conftest import add_series

KAHU = [sys.executable, "-m", "kahu"]

DROP_IN = textwrap.dedent(
    """
    import os
    import time

    from kahu.flow import Resources, Workflow, command_operator, python_operator
    from kahu.operators import get_input


    def slow(ctx):
        log = ctx.workflow_dir / "events.log"
        with open(log, "a") as fh:
            fh.write(f"start {ctx.job.task_id} {ctx.job.attempt} {os.getpid()}\\n")
        time.sleep(float(ctx.params["seconds"]))
        with open(log, "a") as fh:
            fh.write(f"end {ctx.job.task_id} {ctx.job.attempt} {os.getpid()}\\n")


    WORKFLOWS = [
        Workflow(
            "dropin-slow",
            "2.0",
            (python_operator("slow", slow, resources=Resources(1, 128)),),
            title="Slow drop-in",
            parameters={
                "type": "object",
                "properties": {"seconds": {"type": "number", "default": 1.0}},
            },
        ),
        Workflow(
            "dropin-shell",
            "1.0",
            (
                get_input(),
                command_operator(
                    "count",
                    ["sh", "-c", 'ls "$KAHU_IN_DIR" | wc -l > "$KAHU_OUT_DIR/n.txt"'],
                    inputs=["get-input"],
                    resources=Resources(0.5, 128),
                ),
            ),
        ),
    ]
    """
)


NEEDY = """
from kahu.flow import Workflow
from kahu.operators import get_input

WORKFLOW = Workflow(
    "dropin-needy", "1.0", (get_input(),),
    requires=("kahu_no_such_module",), install="pip install kahu-no-such-module",
)
"""


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "workflows").mkdir(parents=True)
    (home / "workflows" / "mine.py").write_text(DROP_IN)
    (home / "workflows" / "broken.py").write_text("raise RuntimeError('oops')\n")
    (home / "workflows" / "needy.py").write_text(NEEDY)
    return home


def _cli(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KAHU_FLOW__CPUS": "2", "KAHU_FLOW__MIN_FREE_DISK_MB": "0"}
    return subprocess.run(
        [*KAHU, *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def _series(home: Path, count: int) -> list[str]:
    with Kahu(Settings(home=home)) as kahu:
        return add_series(kahu, count)


class TestCli:
    def test_drop_in_workflows_are_listed_and_broken_ones_reported(self, tmp_path: Path) -> None:
        home = _home(tmp_path)
        result = _cli(home, "workflows", "list")
        assert result.returncode == 0, result.stderr
        assert "dropin-slow\t2.0\tSlow drop-in" in result.stdout
        assert "broken.py" in result.stderr
        assert "RuntimeError: oops" in result.stderr
        needy = "workflow dropin-needy needs kahu_no_such_module, not installed here"
        assert f"dropin-needy\t1.0\t\tunavailable: {needy}" in result.stdout
        refused = _cli(home, "run", "dropin-needy", "--query", "Modality:CT")
        assert refused.returncode != 0
        assert "pip install kahu-no-such-module" in refused.stderr
        shown = json.loads(_cli(home, "workflows", "show", "dropin-shell").stdout)
        assert [o["kind"] for o in shown["operators"]] == ["internal", "command"]

    def test_kahu_run_runs_to_the_end(self, tmp_path: Path) -> None:
        home = _home(tmp_path)
        series = _series(home, 2)
        result = _cli(home, "run", "dropin-shell", "--query", "Modality:CT")
        assert result.returncode == 0, result.stderr
        run_id = result.stdout.strip()
        assert f"{run_id}\tsucceeded" in result.stderr
        for uid in series:
            out = home / "runs" / run_id / "batch" / uid / "count" / "n.txt"
            assert out.read_text().strip() == "2"
        listed = _cli(home, "runs", "list").stdout
        assert f"{run_id}\tdropin-shell\tsucceeded\t4/4" in listed
        shown = json.loads(_cli(home, "runs", "show", run_id).stdout)
        assert {t["state"] for t in shown["tasks"]} == {"succeeded"}

    def test_kahu_run_refuses_bad_parameters(self, tmp_path: Path) -> None:
        home = _home(tmp_path)
        series = _series(home, 1)
        result = _cli(home, "run", "dropin-slow", "--series", series[0], "--param", "seconds=x")
        assert result.returncode == 2
        assert "seconds" in result.stderr
        result = _cli(home, "run", "dropin-slow", "--series", series[0], "--param", "noequals")
        assert result.returncode == 2
        assert "key=value" in result.stderr


@pytest.mark.timeout(240)
def test_kill_9_mid_run_then_restart_finishes_every_task_once(tmp_path: Path) -> None:
    home = _home(tmp_path)
    series = _series(home, 6)
    created = _cli(
        home, "run", "dropin-slow", "--query", "Modality:CT", "--param", "seconds=1.5", "--detach"
    )
    assert created.returncode == 0, created.stderr
    run_id = created.stdout.strip()
    events = home / "runs" / run_id / "events.log"

    def serve() -> subprocess.Popen[bytes]:
        port = free_port()
        process = subprocess.Popen(
            [
                *KAHU,
                "serve",
                "--home",
                str(home),
                "--port",
                str(port),
                "--dicom-port",
                str(free_port()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "KAHU_FLOW__CPUS": "2", "KAHU_FLOW__MIN_FREE_DISK_MB": "0"},
        )
        assert wait_for_port(port)
        return process

    server = serve()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = events.read_text().splitlines() if events.exists() else []
        if any(line.startswith("end") for line in lines) and lines[-1].startswith("start"):
            break
        time.sleep(0.05)
    os.kill(server.pid, signal.SIGKILL)
    server.wait()
    interrupted = [line.split() for line in events.read_text().splitlines()]
    started = {(t, pid) for kind, t, _, pid in interrupted if kind == "start"}
    ended = {(t, pid) for kind, t, _, pid in interrupted if kind == "end"}
    assert started - ended, "the kill should interrupt a running task"

    server = serve()
    try:
        deadline = time.monotonic() + 120
        state = ""
        while time.monotonic() < deadline:
            with Kahu(Settings(home=home)) as kahu:
                state = kahu.runs.run(run_id, with_series=False).state
            if state in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.3)
        assert state == "succeeded"
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    lines = [line.split() for line in events.read_text().splitlines()]
    ends = Counter(t for kind, t, *_ in lines if kind == "end")
    assert len(ends) == len(series)
    assert set(ends.values()) == {1}, "every task finished exactly once"
    # the interrupted processes never finished: they died with the server
    finished = {(t, pid) for kind, t, _, pid in lines if kind == "end"}
    assert not (started - ended) & finished
