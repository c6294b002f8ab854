"""Command operators in bubblewrap: no network, nothing of the home but their own run's
inputs (read-only) and outputs; and a clear failure where isolation is demanded but absent."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator

import pytest

from kahu.core import Kahu
from kahu.flow import sandbox
from kahu.flow.job import RunPaths
from tests.flow.conftest import add_series, run_workflow


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.fixture(scope="module", autouse=True)
def _bwrap() -> None:
    if shutil.which("bwrap") is None:
        pytest.fail("bubblewrap is not installed: run `make test`, which installs it")


def _probe(kahu: Kahu, workflow: str, port: int) -> list[str]:
    series = add_series(kahu, 2)
    first = run_workflow(kahu, "test-chain", series[:1])
    assert kahu.flow.wait_idle(first, 60) == "succeeded"
    other = RunPaths(kahu.settings.runs_root, first).out_dir("mark", series[0]) / "seen.json"
    assert other.is_file()
    run_id = run_workflow(kahu, workflow, series[1:], {"port": port, "other": str(other)})
    assert kahu.flow.wait_idle(run_id, 60) == "succeeded"
    out = RunPaths(kahu.settings.runs_root, run_id).out_dir("probe", series[1]) / "probe.txt"
    return out.read_text().splitlines()


def test_sandboxed_command_has_no_network_and_sees_no_other_run(
    local_kahu: Kahu, listener: int
) -> None:
    net, other, inputs = _probe(local_kahu, "test-probe", listener)
    assert net.startswith("refused")
    assert other == "unreadable: FileNotFoundError"
    assert inputs.startswith("input read-only")


def test_without_the_sandbox_the_same_command_reaches_both(local_kahu: Kahu, listener: int) -> None:
    """The probe itself works: unsandboxed, it connects and reads."""
    net, other, inputs = _probe(local_kahu, "test-probe-open", listener)
    assert net == "connected"
    assert other.startswith("{")
    assert inputs == "wrote input"


def test_required_isolation_without_bubblewrap_fails_clearly(
    local_kahu: Kahu, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kahu.flow.executors.local as local

    monkeypatch.setattr(local, "bwrap_path", lambda: None)
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    series = add_series(local_kahu, 1)
    run_id = run_workflow(local_kahu, "test-probe", series, {"port": 1, "other": "/x"})
    assert local_kahu.flow.wait_idle(run_id, 60) == "failed"
    failed = next(t for t in local_kahu.runs.tasks(run_id) if t.operator == "probe")
    assert "requires isolation, but bubblewrap (bwrap) is not installed" in failed.error


def test_a_program_kept_under_tmp_still_runs_in_the_sandbox(
    local_kahu: Kahu, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The sandbox's /tmp is private: a tool (or a checkout's virtual environment) that
    lives under the host's /tmp is bound back read-only, or it could not start."""
    from kahu.flow import Resources, Workflow, command_operator

    tools = tmp_path_factory.mktemp("tools")
    assert str(tools).startswith("/tmp/")
    tool = tools / "hello.sh"
    tool.write_text('#!/bin/sh\necho hello > "$KAHU_OUT_DIR/hello.txt"\n')
    tool.chmod(0o755)
    local_kahu.workflows.add(
        Workflow(
            "tool-under-tmp",
            "1.0",
            (
                command_operator(
                    "hello", [str(tool)], isolation="required", resources=Resources(0.5, 128)
                ),
            ),
        )
    )
    [series] = add_series(local_kahu, 1)
    run_id = run_workflow(local_kahu, "tool-under-tmp", [series])
    assert local_kahu.flow.wait_idle(run_id, 60) == "succeeded", local_kahu.runs.tasks(run_id)
    out = RunPaths(local_kahu.settings.runs_root, run_id).out_dir("hello", series)
    assert (out / "hello.txt").read_text() == "hello\n"
