"""The process side of a Python operator: runs in a fresh process forked from a preloaded
server (multiprocessing's forkserver), so a task can be killed, limited and crash alone."""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import resource
import select
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import Any

from kahu.flow.job import Job, TaskContext
from kahu.flow.model import load_callable

_PR_SET_PDEATHSIG = 1

#: the server's main script, set by the local executor before the fork server starts
MAIN_PATH_VARIABLE = "KAHU_FORK_SERVER_MAIN"


def _skip_main_import() -> None:
    """In the fork server: let multiprocessing believe the server's main script is loaded,
    so that each task process does not import it again (it needs none of it: its target is
    ``run_python`` and operators are named by module). Python 3.11's ``__main__`` preload
    would import it but never receives the path."""
    main = os.environ.get(MAIN_PATH_VARIABLE)
    current = sys.modules.get("__main__")
    in_fork_server = "multiprocessing.forkserver" in sys.modules
    if main and in_fork_server and current is not None and not hasattr(current, "__file__"):
        current.__file__ = main


_skip_main_import()


def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


#: loaded once (in the fork server), not in every task process
_LIBC = _libc()


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def die_with_server(server_pid: int) -> None:
    """Kill this task's process group when the server process ends (even by SIGKILL).

    A task process is forked by multiprocessing's fork server, which may outlive the server
    for a while; a thread waiting on the server's pidfd does not depend on it.
    """
    try:
        fd = os.pidfd_open(server_pid)
    except OSError:
        os.killpg(0, signal.SIGKILL)  # the server is already gone
        return

    def watch() -> None:
        select.select([fd], [], [])
        os.killpg(0, signal.SIGKILL)

    threading.Thread(target=watch, name="kahu-server-watch", daemon=True).start()


def _mapped_bytes() -> int:
    """This process's address space now (what it inherited from its parent)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def limit_memory(memory_mb: int, slack_mb: int, *, inherited: bool = True) -> None:
    """Cap the address space at the declared memory plus slack for what every process maps
    as it goes (thread stacks, libraries it loads), on top of what the process already maps
    when it keeps its parent's image (``inherited``: a fork of the fork server or of a Ray
    worker, whose sizes differ a lot); a program about to be exec'ed starts from nothing."""
    if memory_mb <= 0:
        return
    limit = (memory_mb + slack_mb) * 1024 * 1024 + (_mapped_bytes() if inherited else 0)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def resolve(job: Job) -> Callable[..., Any]:
    assert job.function is not None
    if job.module_file:
        module_name, _, _qualname = job.function.partition(":")
        if module_name not in sys.modules:
            spec = importlib.util.spec_from_file_location(module_name, job.module_file)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {job.module_file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
    return load_callable(job.function)


def run_python(job: Job, memory_slack_mb: int, server_pid: int | None = None) -> None:
    """Entry point of the task process: exit 0 on success, 1 with ``<log>.error`` on failure."""
    os.setpgid(0, 0)  # its own process group: a timeout kills what it started too
    die_with_parent()
    if server_pid is not None:
        die_with_server(server_pid)
    log_fd = os.open(job.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    log = logging.getLogger(f"kahu.task.{job.operator}")
    try:
        function = resolve(job)  # importing the operator's module is not the task's work
        limit_memory(job.memory_mb, memory_slack_mb)
        os.environ.update(job.environment())
        os.chdir(job.out_dir)
        function(TaskContext(job, log))
    except BaseException as exc:
        traceback.print_exc()
        summary = f"{type(exc).__name__}: {exc}"[:2000]
        with open(job.error_path, "w") as fh:
            fh.write(summary)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    mark_done(job)
    os._exit(0)


def mark_done(job: Job) -> None:
    tmp = job.done_path.with_suffix(".done-tmp")
    tmp.write_text(str(job.attempt))
    os.replace(tmp, job.done_path)
