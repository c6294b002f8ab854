"""Processes of tasks: telling a pid apart from a reused one, killing a task's whole process
group."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def process_start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot (tells a reused pid apart)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def kill_leftover(pid: int, started: int | None) -> bool:
    """Kill the process group of ``pid`` if that very process still runs; True if it did."""
    if started is None or process_start_time(pid) != started:
        return False
    kill_group(pid)
    deadline = time.monotonic() + 10
    while process_start_time(pid) == started and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (or the process, before it leads one)."""
    try:
        os.killpg(pid, signal.SIGKILL)
        return
    except (ProcessLookupError, PermissionError):
        pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)
