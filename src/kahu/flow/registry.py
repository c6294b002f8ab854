"""Where workflows come from: Kahu's own and installed packages' entry points
(group ``kahu.workflows``) and the drop-in folder ``<home>/workflows/*.py``.

An entry point or a drop-in module offers a :class:`~kahu.flow.model.Workflow`, a list of
them, or (for modules) a module-level ``WORKFLOWS`` list or ``WORKFLOW``. Built-in workflows
are registered through the same entry point group as everyone else's. A definition that fails
to load is reported (``kahu workflows list`` shows it) and does not stop the others.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from kahu.errors import InvalidWorkflow, NotFound
from kahu.flow.model import Workflow

log = logging.getLogger(__name__)

GROUP = "kahu.workflows"
DROP_IN_PREFIX = "kahu_dropin_"


@dataclass(frozen=True, slots=True)
class LoadError:
    source: str
    message: str


def _workflows_of(value: Any, source: str) -> list[Workflow]:
    if isinstance(value, ModuleType):
        value = getattr(value, "WORKFLOWS", None) or getattr(value, "WORKFLOW", None)
    if callable(value) and not isinstance(value, Workflow):
        value = value()
    if isinstance(value, Workflow):
        value = [value]
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        raise InvalidWorkflow(f"{source} offers no workflows")
    found = list(value)
    if not found or not all(isinstance(w, Workflow) for w in found):
        raise InvalidWorkflow(f"{source} offers no workflows")
    return [replace(w, source=source) for w in found]


class WorkflowRegistry:
    """Every known workflow by name (the highest version wins unless one is asked for)."""

    def __init__(self, folder: Path | None = None, *, entry_point_group: str = GROUP) -> None:
        self.folder = folder
        self.group = entry_point_group
        self._workflows: dict[str, dict[str, Workflow]] = {}
        self.errors: list[LoadError] = []
        #: module name -> file, for drop-in modules that task processes must load by path
        self.module_files: dict[str, str] = {}
        self.reload()

    def reload(self) -> None:
        self._workflows = {}
        self.errors = []
        for ep in sorted(entry_points(group=self.group), key=lambda e: e.name):
            source = f"entry point {ep.name} ({ep.value})"
            try:
                self._add(_workflows_of(ep.load(), source))
            except Exception as exc:
                self._failed(source, exc)
        if self.folder is not None and self.folder.is_dir():
            for path in sorted(self.folder.glob("*.py")):
                source = f"file {path}"
                try:
                    self._add(_workflows_of(self._load_file(path), source))
                except Exception as exc:
                    self._failed(source, exc)

    def _failed(self, source: str, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        log.error("workflows from %s not loaded: %s", source, message)
        self.errors.append(LoadError(source, message))

    def _load_file(self, path: Path) -> ModuleType:
        name = DROP_IN_PREFIX + "".join(c if c.isalnum() else "_" for c in path.stem)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise InvalidWorkflow(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        self.module_files[name] = str(path.resolve())
        return module

    def _add(self, workflows: list[Workflow]) -> None:
        for workflow in workflows:
            versions = self._workflows.setdefault(workflow.name, {})
            if workflow.version in versions:
                raise InvalidWorkflow(
                    f"workflow {workflow.name} {workflow.version} is defined twice "
                    f"({versions[workflow.version].source} and {workflow.source})"
                )
            versions[workflow.version] = workflow

    def add(self, workflow: Workflow) -> None:
        """Register a workflow object directly (tests, embedding applications)."""
        self._add([workflow])

    def get(self, name: str, version: str | None = None) -> Workflow:
        versions = self._workflows.get(name)
        if not versions:
            raise NotFound(f"no workflow {name!r}")
        if version is not None:
            if version not in versions:
                raise NotFound(f"workflow {name!r} has no version {version!r}")
            return versions[version]
        return versions[max(versions, key=_version_key)]

    def all(self) -> list[Workflow]:
        return [self.get(name) for name in sorted(self._workflows)]

    def python_modules(self) -> list[str]:
        """Modules of the python operators that import by name (drop-in files do not)."""
        names = {
            op.function.partition(":")[0]
            for workflow in self.all()
            for op in workflow.operators
            if op.kind == "python" and op.function
        }
        return sorted(names - set(self.module_files))

    def digest(self, workflow: Workflow) -> str:
        """The content hash a site pins a workflow by: SHA-256 over its definition and the
        source of every module its operators' functions live in (a changed operator, a
        changed parameter schema or a changed declared output is another digest)."""
        public = workflow.public()
        public.pop("source", None)
        h = hashlib.sha256(json.dumps(public, sort_keys=True, default=str).encode())
        modules = sorted(
            {op.function.partition(":")[0] for op in workflow.operators if op.function}
        )
        for module in modules:
            path = self.module_files.get(module)
            if path is None:
                spec = importlib.util.find_spec(module)
                path = spec.origin if spec is not None else None
            h.update(module.encode() + b"\0")
            if path and Path(path).is_file():
                h.update(Path(path).read_bytes())
        return h.hexdigest()

    def module_file(self, function: str | None) -> str | None:
        if not function:
            return None
        return self.module_files.get(function.partition(":")[0])


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    parts = version.replace("-", ".").split(".")
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in parts)
