"""Command lines for command and container operators: bubblewrap isolation and container
runtimes, with the same folders and environment either way.

In the bubblewrap sandbox a command has no network, sees the file system read-only, sees
nothing of the Kahu home (catalog, blobs, other runs) but its own run's inputs (read-only) and
its own output folders (writable), and the installed models its run named (read-only). A
per-series task sees only its series' folder.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from kahu.errors import InvalidInput
from kahu.flow.job import Job


class IsolationUnavailable(InvalidInput):
    """The operator demands isolation and bubblewrap is not there."""


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


def writable_dirs(job: Job) -> list[Path]:
    """The folders a task may write: its output, and for a run-level task also each series'
    folder of its own name (Kaapana's containers write per batch element)."""
    dirs = [job.out_dir]
    if job.per == "run":
        dirs += [job.paths.out_dir(job.operator, uid) for uid in job.series]
    return dirs


def readable_dirs(job: Job) -> list[Path]:
    paths = job.paths
    models = [model.path for model in job.models().values()]
    if job.series_uid:
        return [paths.conf.parent, paths.element(job.series_uid), *models]
    dirs = [paths.conf.parent, paths.batch]
    dirs += [paths.out_dir(name, "") for name, per in job.inputs.items() if per == "run"]
    return dirs + models


def _tools_under_tmp(command: Sequence[str], home: Path) -> list[Path]:
    """The program's folder and the server's Python environment where the sandbox's private
    /tmp would hide them (a checkout or virtual environment under /tmp); never the home."""
    tmp, home = Path("/tmp").resolve(), home.resolve()  # noqa: S108 - a path, not a file
    found = [Path(sys.prefix), Path(sys.base_prefix)]
    program = shutil.which(command[0]) if command else None
    if program is not None:
        found += [Path(program).parent, Path(program).resolve().parent]
    return sorted(
        {
            p.resolve()
            for p in found
            if p.resolve().is_relative_to(tmp)
            and not p.resolve().is_relative_to(home)
            and p.exists()
        }
    )


def bwrap_command(job: Job, home: Path, command: Sequence[str]) -> list[str]:
    bwrap = bwrap_path()
    if bwrap is None:
        raise IsolationUnavailable("bubblewrap (bwrap) is not installed")
    args = [
        bwrap,
        "--die-with-parent",
        "--new-session",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-uts",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",  # noqa: S108 - a fresh, private /tmp inside the sandbox
        "--tmpfs",
        str(home.resolve()),
    ]
    for path in _tools_under_tmp(command, home):
        args += ["--ro-bind", str(path), str(path)]
    for path in readable_dirs(job):
        if path.exists():
            args += ["--ro-bind", str(path), str(path)]
    for path in writable_dirs(job):
        args += ["--bind", str(path), str(path)]
    args += ["--chdir", str(job.out_dir), "--", *command]
    return args


def command_line(job: Job, home: Path, *, sandbox: bool) -> list[str]:
    if not job.command:
        raise InvalidInput(f"operator {job.operator} has no command")
    return bwrap_command(job, home, job.command) if sandbox else list(job.command)


def container_command(job: Job, runtime: str) -> list[str]:
    """``docker|podman run`` or ``apptainer exec`` with the run's folders mounted at the same
    paths, the environment passed and no network."""
    env = job.environment()
    name = Path(runtime).name
    mounts: list[tuple[Path, bool]] = [(p, False) for p in readable_dirs(job) if p.exists()]
    mounts += [(p, True) for p in writable_dirs(job)]
    if name == "apptainer" or name == "singularity":
        args = [runtime, "exec", "--containall", "--net", "--network", "none", "--pwd"]
        args.append(str(job.out_dir))
        for path, rw in mounts:
            args += ["--bind", f"{path}:{path}:{'rw' if rw else 'ro'}"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        if job.gpu is not None:
            args.append("--nv")
        return [*args, f"docker://{job.image}", *job.command]
    args = [runtime, "run", "--rm", "--network", "none", "--workdir", str(job.out_dir)]
    for path, rw in mounts:
        args += ["--volume", f"{path}:{path}:{'rw' if rw else 'ro'}"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    if job.gpu is not None:
        args += ["--gpus", f"device={job.gpu}"]
    if job.memory_mb:
        args += ["--memory", f"{job.memory_mb}m"]
    args += ["--cpus", str(job.cpu)]
    assert job.image is not None
    return [*args, job.image, *job.command]


def find_runtime(preferred: str) -> str | None:
    """The container runtime: the configured one, else the first of docker, podman,
    apptainer on the PATH."""
    for name in [preferred] if preferred else ["docker", "podman", "apptainer"]:
        found = shutil.which(name)
        if found:
            return found
    return None
