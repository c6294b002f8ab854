"""Container operators: the command line each runtime gets (no engine runs on the test
machines, so what is checked is the contract: the Kaapana environment, the run's folders
mounted at the same paths with inputs read-only, no network, the scheduler's GPU and
limits), and a clear failure where no runtime is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kahu.core import Kahu
from kahu.flow import Workflow, container_operator
from kahu.flow.job import Job
from kahu.flow.sandbox import container_command
from kahu.operators import get_input
from tests.flow.conftest import add_series, flow_settings, run_workflow, start_kahu


def _job(tmp_path: Path, gpu: str | None = None) -> Job:
    return Job(
        task_id=7,
        attempt=1,
        run_id="r1",
        workflow="seg",
        version="1.0",
        operator="nnunet",
        kind="container",
        per="series",
        series_uid="1.2.3",
        inputs={"get-input": "series"},
        params={"fold": 2},
        run_dir=str(tmp_path / "runs" / "r1"),
        series=("1.2.3", "1.2.4"),
        timeout_s=60,
        cpu=2,
        memory_mb=4096,
        gpu_memory_mb=8000 if gpu else 0,
        image="registry.example/nnunet:2.1",
        command=("predict", "--fold", "2"),
        gpu=gpu,
    )


def _pairs(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_docker_and_podman_get_the_environment_mounts_and_limits(tmp_path: Path) -> None:
    job = _job(tmp_path, gpu="0")
    run = tmp_path / "runs" / "r1"
    (run / "conf").mkdir(parents=True)
    (run / "batch" / "1.2.3" / "get-input").mkdir(parents=True)
    for runtime in ("/usr/bin/docker", "/usr/bin/podman"):
        argv = container_command(job, runtime)
        assert argv[:3] == [runtime, "run", "--rm"]
        assert argv[argv.index("--network") + 1] == "none"
        assert argv[-4:] == ["registry.example/nnunet:2.1", "predict", "--fold", "2"]
        volumes = _pairs(argv, "--volume")
        assert f"{run / 'conf'}:{run / 'conf'}:ro" in volumes
        assert f"{run / 'batch/1.2.3'}:{run / 'batch/1.2.3'}:ro" in volumes
        out = run / "batch" / "1.2.3" / "nnunet"
        assert volumes[-1] == f"{out}:{out}:rw"  # last: over the read-only series folder
        assert not any("1.2.4" in v for v in volumes)  # another series stays out of sight
        env = dict(e.split("=", 1) for e in _pairs(argv, "--env"))
        assert env["WORKFLOW_DIR"] == str(run)
        assert env["OPERATOR_IN_DIR"] == "get-input"
        assert env["OPERATOR_OUT_DIR"] == "nnunet"
        assert env["FOLD"] == "2"
        assert env["CUDA_VISIBLE_DEVICES"] == "0"
        assert _pairs(argv, "--gpus") == ["device=0"]
        assert _pairs(argv, "--memory") == ["4096m"]
        assert _pairs(argv, "--cpus") == ["2"]
        assert argv[argv.index("--workdir") + 1] == str(out)


def test_apptainer_runs_the_image_contained_without_network(tmp_path: Path) -> None:
    argv = container_command(_job(tmp_path, gpu="1"), "/opt/bin/apptainer")
    assert argv[:3] == ["/opt/bin/apptainer", "exec", "--containall"]
    assert "--net" in argv
    assert argv[argv.index("--network") + 1] == "none"
    assert "--nv" in argv
    assert argv[-4:] == ["docker://registry.example/nnunet:2.1", "predict", "--fold", "2"]


def test_without_a_runtime_the_task_fails_saying_so(make_settings: Any) -> None:
    kahu: Kahu = start_kahu(flow_settings(make_settings, container_runtime="no-such-runtime-kahu"))
    try:
        kahu.workflows.add(
            Workflow(
                "in-a-container",
                "1.0",
                (
                    get_input(),
                    container_operator("tool", "alpine:3", ["true"], inputs=["get-input"]),
                ),
            )
        )
        series = add_series(kahu, 1)
        run_id = run_workflow(kahu, "in-a-container", series)
        assert kahu.flow.wait_idle(run_id, 60) == "failed"
        [tool] = [t for t in kahu.runs.tasks(run_id) if t.operator == "tool"]
        assert "no container runtime (docker, podman or apptainer) is installed" in tool.error
    finally:
        kahu.stop()
