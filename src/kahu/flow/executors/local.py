"""Local processes: Python operators in processes forked from a preloaded fork server,
command operators as subprocesses (sandboxed by bubblewrap), containers through the host's
runtime. One monitor thread waits on every process (pidfd) and enforces timeouts by killing
the whole process group."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.process
import multiprocessing.spawn as spawn
import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from kahu.errors import InvalidInput
from kahu.flow import worker
from kahu.flow.executors.base import Executor, Outcome, Report, Started
from kahu.flow.job import Job
from kahu.flow.processes import kill_group, process_start_time
from kahu.flow.sandbox import (
    IsolationUnavailable,
    bwrap_path,
    command_line,
    container_command,
    find_runtime,
)

log = logging.getLogger(__name__)

_PRELOAD = ["kahu.flow.worker", "numpy", "pydicom"]


def _start_fork_server() -> None:
    try:
        multiprocessing.forkserver.ensure_running()
    except Exception:  # the first submit tries again and reports the error
        log.exception("the fork server for Python operators did not start")


@dataclass
class _Running:
    job: Job
    pid: int
    fd: int
    deadline: float
    handle: multiprocessing.process.BaseProcess | subprocess.Popen[bytes]
    timed_out: bool = False
    cancelled: bool = False


class LocalExecutor(Executor):
    name = "local"

    def __init__(
        self,
        home: Path,
        *,
        isolation: str = "auto",
        container_runtime: str = "",
        memory_slack_mb: int = 1024,
    ) -> None:
        self.home = home
        self.isolation = isolation
        self.container_runtime = container_runtime
        self.memory_slack_mb = memory_slack_mb
        self._context = multiprocessing.get_context("forkserver")
        self._running: dict[int, _Running] = {}
        self._lock = threading.Lock()
        self._reap_lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._report: Report | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, report: Report, preload: Sequence[str] = ()) -> None:
        self._report = report
        # the fork server imports these once; each task process is forked with them loaded
        self._context.set_forkserver_preload([*_PRELOAD, *preload])
        # multiprocessing would import the program's main script again in every task process
        # (the `kahu` script loads the whole application, ~1 s); task processes never need it
        main = spawn.get_preparation_data("kahu").get("init_main_from_path")
        if main:
            os.environ[worker.MAIN_PATH_VARIABLE] = main
        # start the fork server now, beside the engine, not in the first task's submit
        threading.Thread(target=_start_fork_server, name="kahu-forkserver", daemon=True).start()
        self._thread = threading.Thread(target=self._monitor, name="kahu-flow-local", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        with self._lock:
            running = list(self._running.values())
        for item in running:
            self._kill(item)
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for item in running:
            self._reap(item)
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- submit / cancel -------------------------------------------------------------------

    def submit(self, job: Job) -> Started:
        job.out_dir.mkdir(parents=True, exist_ok=True)
        job.log_path.parent.mkdir(parents=True, exist_ok=True)
        job.error_path.unlink(missing_ok=True)
        job.done_path.unlink(missing_ok=True)
        handle: multiprocessing.process.BaseProcess | subprocess.Popen[bytes]
        if job.kind == "python":
            process = self._context.Process(
                target=worker.run_python,
                args=(job, self.memory_slack_mb, os.getpid()),
                name=f"kahu-task-{job.task_id}",
                daemon=False,
            )
            with self._reap_lock:  # start() polls finished children (see _reap)
                process.start()
            assert process.pid is not None
            pid, fd, handle = process.pid, process.sentinel, process
        elif job.kind in ("command", "container"):
            argv = self._argv(job)
            with open(job.log_path, "ab") as out:
                out.write(f"$ {' '.join(argv)}\n".encode())
                out.flush()
                popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**_base_env(), **job.environment()},
                    cwd=job.out_dir,
                    process_group=0,
                    preexec_fn=partial(_child_setup, job.memory_mb, self.memory_slack_mb),
                )
            pid, fd, handle = popen.pid, os.pidfd_open(popen.pid), popen
        else:
            raise InvalidInput(f"the local executor does not run {job.kind} operators")
        item = _Running(job, pid, fd, time.monotonic() + job.timeout_s, handle)
        with self._lock:
            self._running[job.task_id] = item
            self._selector.register(fd, selectors.EVENT_READ, job.task_id)
        self._wake()
        return Started(pid, process_start_time(pid))

    def _argv(self, job: Job) -> list[str]:
        if job.kind == "container":
            runtime = find_runtime(self.container_runtime)
            if runtime is None:
                raise InvalidInput(
                    "no container runtime (docker, podman or apptainer) is installed; "
                    "set KAHU_FLOW__CONTAINER_RUNTIME"
                )
            return container_command(job, runtime)
        wanted = job.isolation if job.isolation != "auto" else self.isolation
        if wanted == "required" and bwrap_path() is None:
            raise IsolationUnavailable(
                f"operator {job.operator} requires isolation, but bubblewrap (bwrap) is not "
                "installed on this machine"
            )
        sandbox = wanted != "off" and bwrap_path() is not None
        return command_line(job, self.home, sandbox=sandbox)

    def cancel(self, task_id: int) -> None:
        with self._lock:
            item = self._running.get(task_id)
            if item is not None:
                item.cancelled = True
        if item is not None:
            self._kill(item)

    # -- monitor ---------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _kill(self, item: _Running) -> None:
        kill_group(item.pid)

    def _monitor(self) -> None:
        while not self._stopping:
            with self._lock:
                deadlines = [r.deadline for r in self._running.values() if not r.timed_out]
            timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    os.read(self._wake_r, 4096)
                    continue
                self._finish(key.data)
            now = time.monotonic()
            with self._lock:
                late = [r for r in self._running.values() if r.deadline <= now and not r.timed_out]
                for item in late:
                    item.timed_out = True
            for item in late:
                log.warning("task %s timed out after %ss", item.job.task_id, item.job.timeout_s)
                self._kill(item)

    def _finish(self, task_id: int) -> None:
        with self._lock:
            item = self._running.pop(task_id, None)
            if item is None:
                return
            self._selector.unregister(item.fd)
        code = self._reap(item)
        job = item.job
        if item.cancelled:
            outcome = Outcome(job.task_id, job.attempt, False, "cancelled", cancelled=True)
        elif item.timed_out:
            outcome = Outcome(
                job.task_id, job.attempt, False, f"timed out after {job.timeout_s:g} s", True
            )
        elif code == 0:
            if job.kind != "python":
                worker.mark_done(job)
            outcome = Outcome(job.task_id, job.attempt, True)
        else:
            outcome = Outcome(job.task_id, job.attempt, False, _failure(job, code))
        if self._report is not None and not self._stopping:
            self._report(outcome)

    def _reap(self, item: _Running) -> int | None:
        handle = item.handle
        if isinstance(handle, subprocess.Popen):
            code: int | None = handle.wait()
            os.close(item.fd)
        else:
            # multiprocessing's start() polls every finished child for its exit status (read
            # from the fork server's pipe); two threads reading it at once lose it (255)
            with self._reap_lock:
                handle.join()
                code = handle.exitcode
                handle.close()
        return code


def _base_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TZ", "PYTHONPATH", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k in keep}


def _child_setup(memory_mb: int, slack_mb: int) -> None:
    worker.die_with_parent()
    worker.limit_memory(memory_mb, slack_mb, inherited=False)


def _failure(job: Job, code: int | None) -> str:
    try:
        summary = job.error_path.read_text().strip()
    except OSError:
        summary = ""
    if summary:
        return summary
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return f"killed by {name} (out of memory or killed)"
    tail = _tail(job.log_path)
    return f"exit code {code}" + (f": {tail}" if tail else "")


def _tail(path: Path, lines: int = 5) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])[-1000:]
