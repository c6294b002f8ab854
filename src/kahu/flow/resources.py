"""What the machine has and what running tasks hold: the local scheduler's admission test.

A task starts only when its declared CPU, memory and GPU memory fit beside the running
tasks' declarations, and live readings agree (available memory, free disk in the home, free
GPU memory by NVML's ``nvidia-smi``). A task that can never fit (it declares more than the
machine has) waits with a reason a user can read; nothing is started that would take down
the server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kahu.flow.model import Resources


@dataclass(frozen=True, slots=True)
class Gpu:
    index: str
    total_mb: int
    free_mb: int


def memory_mb() -> tuple[int, int]:
    """(total, available) memory in MB from ``/proc/meminfo``."""
    info: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) // 1024
    except (OSError, ValueError, IndexError):
        return (0, 0)
    return info.get("MemTotal", 0), info.get("MemAvailable", info.get("MemFree", 0))


def gpus() -> list[Gpu]:
    """GPUs with their memory, from ``nvidia-smi`` (none where it is absent or fails)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    found = []
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            found.append(Gpu(parts[0], int(parts[1]), int(parts[2])))
    return found


@dataclass(frozen=True, slots=True)
class Decision:
    ok: bool
    reason: str = ""
    gpu: str | None = None
    #: the task can never start here (declares more than the machine has)
    never: bool = False


class Admission:
    """Declared capacity, live readings and what running tasks hold."""

    def __init__(
        self,
        home: Path,
        *,
        cpus: float | None = None,
        memory_mb_total: int | None = None,
        min_free_disk_mb: int = 1024,
        reserve_memory_mb: int = 256,
        gpu_reader: object = None,
    ) -> None:
        total, _ = memory_mb()
        self.home = home
        self.cpus = cpus or float(os.cpu_count() or 1)
        self.memory_mb = memory_mb_total or total
        self.min_free_disk_mb = min_free_disk_mb
        self.reserve_memory_mb = reserve_memory_mb
        self._gpus = gpus() if gpu_reader is None else list(gpu_reader)  # type: ignore[call-overload]
        self.cpu_used = 0.0
        self.memory_used = 0
        self.gpu_used: dict[str, int] = {}
        self.live = True
        self._readings: tuple[float, int, int, int] = (-1e9, 0, 0, 0)

    #: how long a reading of available memory and free disk is used (a pass admits many
    #: tasks; what they take is counted by their declarations until the next reading)
    READING_TTL_S = 0.5

    def _live_readings(self) -> tuple[int, int]:
        """(available memory MB, free disk MB in the home), read at most every TTL; memory
        declared by tasks started since the reading is taken off it."""
        at, available, free_disk, used = self._readings
        now = time.monotonic()
        if now - at > self.READING_TTL_S:
            _, available = memory_mb()
            free_disk = shutil.disk_usage(self.home).free // (1024 * 1024)
            used = self.memory_used
            self._readings = (now, available, free_disk, used)
        if available:
            available = max(1, available - max(0, self.memory_used - used))
        return available, free_disk

    def use_capacity(self, cpus: float, memory_mb_total: int) -> None:
        """Schedule against a cluster's totals; live readings of this machine no longer
        apply (the cluster queues what does not fit at the moment)."""
        self.cpus = cpus
        self.memory_mb = memory_mb_total or self.memory_mb
        self.live = False

    @property
    def gpu_list(self) -> list[Gpu]:
        return list(self._gpus)

    def check(self, need: Resources) -> Decision:
        if need.cpu > self.cpus:
            return Decision(
                False, f"needs {need.cpu:g} CPUs; this machine has {self.cpus:g}", never=True
            )
        if need.memory_mb > self.memory_mb:
            return Decision(
                False,
                f"needs {need.memory_mb} MB of memory; this machine has {self.memory_mb} MB",
                never=True,
            )
        if need.gpu_memory_mb and not any(g.total_mb >= need.gpu_memory_mb for g in self._gpus):
            have = ", ".join(f"GPU {g.index}: {g.total_mb} MB" for g in self._gpus) or "no GPU"
            return Decision(
                False, f"needs {need.gpu_memory_mb} MB of GPU memory; {have}", never=True
            )
        if self.cpu_used > 0 and self.cpu_used + need.cpu > self.cpus + 1e-9:
            return Decision(False, "waiting for CPUs")
        if self.memory_used and self.memory_used + need.memory_mb > self.memory_mb:
            return Decision(False, "waiting for memory held by running tasks")
        if not self.live:
            return Decision(True)
        available, free_disk = self._live_readings()
        if available and available - self.reserve_memory_mb < need.memory_mb:
            return Decision(False, f"waiting for memory ({available} MB available)")
        if free_disk < self.min_free_disk_mb:
            return Decision(False, f"waiting for disk space ({free_disk} MB free in the home)")
        gpu = None
        if need.gpu_memory_mb:
            live = {g.index: g.free_mb for g in gpus()} or {g.index: g.free_mb for g in self._gpus}
            for g in self._gpus:
                free = min(g.total_mb - self.gpu_used.get(g.index, 0), live.get(g.index, 0))
                if free >= need.gpu_memory_mb:
                    gpu = g.index
                    break
            if gpu is None:
                return Decision(False, "waiting for GPU memory")
        return Decision(True, gpu=gpu)

    def take(self, need: Resources, gpu: str | None) -> None:
        self.cpu_used += need.cpu
        self.memory_used += need.memory_mb
        if gpu is not None:
            self.gpu_used[gpu] = self.gpu_used.get(gpu, 0) + need.gpu_memory_mb

    def give(self, need: Resources, gpu: str | None) -> None:
        self.cpu_used = max(0.0, self.cpu_used - need.cpu)
        self.memory_used = max(0, self.memory_used - need.memory_mb)
        if gpu is not None:
            self.gpu_used[gpu] = max(0, self.gpu_used.get(gpu, 0) - need.gpu_memory_mb)
