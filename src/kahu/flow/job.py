"""What one task needs to run, wherever it runs: the :class:`Job`, the run folder layout and
the Kaapana-compatible environment.

Run folder (the contract in the design brief)::

    runs/<run_id>/conf/conf.json
    runs/<run_id>/batch/<SeriesInstanceUID>/<operator>/   per-series outputs
    runs/<run_id>/<operator>/                             run-level outputs
    runs/<run_id>/logs/<operator>[.<SeriesInstanceUID>].log
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BATCH_NAME = "batch"


class RunPaths:
    """Where a run's files are (every part a validated UID or operator name)."""

    def __init__(self, runs_root: Path, run_id: str) -> None:
        self.root = runs_root / run_id
        self.conf = self.root / "conf" / "conf.json"
        self.batch = self.root / BATCH_NAME
        self.logs = self.root / "logs"

    def element(self, series_uid: str) -> Path:
        return self.batch / series_uid

    def out_dir(self, operator: str, series_uid: str) -> Path:
        return self.element(series_uid) / operator if series_uid else self.root / operator

    def log(self, operator: str, series_uid: str) -> Path:
        return self.logs / (f"{operator}.{series_uid}.log" if series_uid else f"{operator}.log")

    def models(self) -> dict[str, dict[str, Any]]:
        """The installed models the run was pinned to at launch, by parameter (conf.json)."""
        try:
            conf = json.loads(self.conf.read_text())
        except (OSError, ValueError):
            return {}
        return dict(conf.get("models") or {})


@dataclass(frozen=True, slots=True)
class RunModel:
    """An installed model as a run uses it: pinned at launch (name, version, SHA-256), with
    its files' folder (read-only) and its manifest (labels, inputs, resources)."""

    name: str
    version: str
    format: str
    sha256: str
    path: Path
    manifest: Mapping[str, Any]

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> RunModel:
        return cls(
            data["name"],
            data["version"],
            data["format"],
            data["sha256"],
            Path(data["path"]),
            data.get("manifest") or {},
        )

    @property
    def labels(self) -> dict[int, dict[str, Any]]:
        """Label value -> name, code, category and colour."""
        return {int(k): dict(v) for k, v in (self.manifest.get("labels") or {}).items()}


@dataclass(frozen=True, slots=True)
class Job:
    """One attempt of one task, in plain data (it crosses process and machine boundaries)."""

    task_id: int
    attempt: int
    run_id: str
    workflow: str
    version: str
    operator: str
    kind: str
    per: str
    series_uid: str
    #: operator name -> "series" or "run", for every input of this operator
    inputs: Mapping[str, str]
    params: Mapping[str, Any]
    run_dir: str
    #: every series of the run, for a run-level task (a per-series task gets none: at
    #: thousands of series they would dominate what every task carries)
    series: tuple[str, ...]
    timeout_s: float
    cpu: float
    memory_mb: int
    gpu_memory_mb: int
    function: str | None = None
    module_file: str | None = None
    command: tuple[str, ...] = ()
    image: str | None = None
    isolation: str = "auto"
    extra_env: Mapping[str, str] = field(default_factory=dict)
    #: the operator's options (``ctx.options``)
    options: Mapping[str, Any] = field(default_factory=dict)
    #: the run's project: its results enter it
    project: str = "default"
    #: who launched the run (a user name; "cli", or empty for the system): internal
    #: operators read with their rights (:func:`kahu.flow.services.run_scope`)
    launched_by: str = ""
    #: GPU chosen by the scheduler (``CUDA_VISIBLE_DEVICES``), if any
    gpu: str | None = None

    @property
    def paths(self) -> RunPaths:
        root = Path(self.run_dir)
        return RunPaths(root.parent, root.name)

    @property
    def out_dir(self) -> Path:
        return self.paths.out_dir(self.operator, self.series_uid)

    @property
    def log_path(self) -> Path:
        return self.paths.log(self.operator, self.series_uid)

    @property
    def error_path(self) -> Path:
        return self.log_path.with_suffix(".error")

    @property
    def done_path(self) -> Path:
        """Written by the task process when it succeeded, holding its attempt: a server that
        died before recording the outcome finds it on restart instead of running it again."""
        return self.log_path.with_suffix(".done")

    def in_dir(self, name: str) -> Path:
        """The folder of input ``name`` for this task: per series where both are, and where
        a run-level input wrote this task's series a folder of its own (as Kaapana's
        run-level containers write each batch element's)."""
        if self.series_uid:
            own = self.paths.out_dir(name, self.series_uid)
            if self.inputs[name] == "series" or own.is_dir():
                return own
        return self.paths.out_dir(name, "")

    def models(self) -> dict[str, RunModel]:
        """The installed models the run uses, by the parameter that named them."""
        return {key: RunModel.of(value) for key, value in self.paths.models().items()}

    def environment(self) -> dict[str, str]:
        """The Kaapana operator environment, plus Kahu's absolute paths."""
        first = next(iter(self.inputs), "")
        env = {
            "WORKFLOW_DIR": self.run_dir,
            "BATCH_NAME": BATCH_NAME,
            "OPERATOR_IN_DIR": first,
            "OPERATOR_OUT_DIR": self.operator,
            "RUN_ID": self.run_id,
            "TASK_ID": str(self.task_id),
            "WORKFLOW_NAME": self.workflow,
            "WORKFLOW_VERSION": self.version,
            "KAHU_OUT_DIR": str(self.out_dir),
            "KAHU_ATTEMPT": str(self.attempt),
        }
        if first:
            env["KAHU_IN_DIR"] = str(self.in_dir(first))
        if self.series_uid:
            env["SERIES_INSTANCE_UID"] = self.series_uid
            env["BATCH_ELEMENT_DIR"] = str(self.paths.element(self.series_uid))
        for key, value in self.params.items():
            env[key.upper()] = value if isinstance(value, str) else json.dumps(value)
        for key, model in self.models().items():
            env[f"KAHU_MODEL_{key.upper()}"] = str(model.path)
        env.update(self.extra_env)
        if self.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = self.gpu
        return env


def write_conf(paths: RunPaths, conf: Mapping[str, Any]) -> None:
    """``conf/conf.json``: the run's parameters as Kaapana's processing scripts read them."""
    paths.conf.parent.mkdir(parents=True, exist_ok=True)
    tmp = paths.conf.with_suffix(".tmp")
    tmp.write_text(json.dumps(conf, indent=2, sort_keys=True))
    os.replace(tmp, paths.conf)


@dataclass
class TaskContext:
    """What a Python operator function receives: ``def my_operator(ctx: TaskContext)``."""

    job: Job
    log: logging.Logger

    @property
    def run_id(self) -> str:
        return self.job.run_id

    @property
    def params(self) -> Mapping[str, Any]:
        return self.job.params

    @property
    def options(self) -> Mapping[str, Any]:
        """How the workflow configured this operator (``python_operator(..., options=)``)."""
        return self.job.options

    @property
    def series_uid(self) -> str | None:
        """The series this task works on (None for a run-level operator)."""
        return self.job.series_uid or None

    @property
    def series(self) -> tuple[str, ...]:
        """Every series of the run (a per-series task reads them from ``conf.json``)."""
        if self.job.series or not self.job.series_uid:
            return self.job.series
        conf = json.loads(self.job.paths.conf.read_text())
        return tuple(conf["data_form"]["series_uids"])

    @property
    def workflow_dir(self) -> Path:
        return Path(self.job.run_dir)

    @property
    def out_dir(self) -> Path:
        return self.job.out_dir

    @property
    def in_dir(self) -> Path:
        """The folder of the first input (for a per-series task: this series' folder)."""
        if not self.job.inputs:
            raise ValueError(f"operator {self.job.operator} has no inputs")
        return self.job.in_dir(next(iter(self.job.inputs)))

    def input(self, name: str) -> Path:
        return self.job.in_dir(name)

    def model(self, parameter: str = "model") -> RunModel:
        """The installed model that parameter ``parameter`` named at launch."""
        models = self.job.models()
        if parameter not in models:
            raise KeyError(f"the run names no model in parameter {parameter!r}")
        return models[parameter]

    def series_dirs(self, name: str) -> dict[str, Path]:
        """For a run-level task: each series' folder of per-series input ``name`` that exists
        (series whose input failed have none)."""
        paths = self.job.paths
        found = {uid: paths.out_dir(name, uid) for uid in self.series}
        return {uid: path for uid, path in found.items() if path.is_dir()}
