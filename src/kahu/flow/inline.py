"""Running one job to its end in the calling process (a Ray worker): Python operators in a
child process, commands as subprocesses, the same sandbox, environment and logs as the
local executor. The timeout counts from the start on the node (not from the time the task
waited in Ray's queue) and kills the job's whole process group."""

from __future__ import annotations

import multiprocessing
import subprocess
from collections.abc import Callable
from pathlib import Path

from kahu.flow import worker
from kahu.flow.job import Job
from kahu.flow.processes import kill_group
from kahu.flow.sandbox import bwrap_path, command_line, container_command, find_runtime

#: (succeeded, the error, timed out)
Result = tuple[bool, str, bool]


def execute(job: Job, home: Path, memory_slack_mb: int) -> Result:
    job.out_dir.mkdir(parents=True, exist_ok=True)
    job.log_path.parent.mkdir(parents=True, exist_ok=True)
    job.error_path.unlink(missing_ok=True)
    if job.kind == "python":
        process = multiprocessing.get_context("fork").Process(
            target=worker.run_python, args=(job, memory_slack_mb)
        )
        process.start()
        assert process.pid is not None
        process.join(job.timeout_s)
        if process.is_alive():
            return _timed_out(job, process.pid, process.join)
        code = process.exitcode
    elif job.kind in ("command", "container"):
        if job.kind == "container":
            runtime = find_runtime("")
            if runtime is None:
                return False, "no container runtime on this node", False
            argv = container_command(job, runtime)
        else:
            wanted = job.isolation
            if wanted == "required" and bwrap_path() is None:
                return False, f"operator {job.operator} requires isolation; bwrap is missing", False
            argv = command_line(job, home, sandbox=wanted != "off" and bwrap_path() is not None)
        with open(job.log_path, "ab") as out:
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=job.environment() | {"PATH": "/usr/local/bin:/usr/bin:/bin"},
                cwd=job.out_dir,
                process_group=0,
            )
            try:
                code = child.wait(job.timeout_s)
            except subprocess.TimeoutExpired:
                return _timed_out(job, child.pid, child.wait)
    else:
        return False, f"the Ray executor does not run {job.kind} operators", False
    if code == 0:
        return True, "", False
    try:
        return False, job.error_path.read_text().strip() or f"exit code {code}", False
    except OSError:
        return False, f"exit code {code}", False


def _timed_out(job: Job, pid: int, reap: Callable[[], object]) -> Result:
    kill_group(pid)
    reap()
    return False, f"timed out after {job.timeout_s:g} s", True
