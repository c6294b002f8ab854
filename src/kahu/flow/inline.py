"""Running one job to its end in the calling process (a Ray worker): Python operators in a
child process, commands as subprocesses, the same sandbox, environment and logs as the
local executor."""

from __future__ import annotations

import multiprocessing
import subprocess
from pathlib import Path

from kahu.flow import worker
from kahu.flow.job import Job
from kahu.flow.sandbox import bwrap_path, command_line, container_command, find_runtime


def execute(job: Job, home: Path, memory_slack_mb: int) -> tuple[bool, str]:
    job.out_dir.mkdir(parents=True, exist_ok=True)
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    job.error_path.unlink(missing_ok=True)
    if job.kind == "python":
        process = multiprocessing.get_context("fork").Process(
            target=worker.run_python, args=(job, memory_slack_mb)
        )
        process.start()
        process.join()
        code = process.exitcode
    elif job.kind in ("command", "container"):
        if job.kind == "container":
            runtime = find_runtime("")
            if runtime is None:
                return False, "no container runtime on this node"
            argv = container_command(job, runtime)
        else:
            wanted = job.isolation
            if wanted == "required" and bwrap_path() is None:
                return False, f"operator {job.operator} requires isolation; bwrap is missing"
            argv = command_line(job, home, sandbox=wanted != "off" and bwrap_path() is not None)
        with open(job.log_path, "ab") as out:
            code = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=job.environment() | {"PATH": "/usr/local/bin:/usr/bin:/bin"},
                cwd=job.out_dir,
                check=False,
                process_group=0,
            ).returncode
    else:
        return False, f"the Ray executor does not run {job.kind} operators"
    if code == 0:
        return True, ""
    try:
        return False, job.error_path.read_text().strip() or f"exit code {code}"
    except OSError:
        return False, f"exit code {code}"
