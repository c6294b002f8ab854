"""Workflows and operators: the definitions a workflow author writes.

A workflow is a named, versioned DAG of operators with a JSON Schema for its parameters. An
operator runs once per series of the run's cohort (``per="series"``) or once per run
(``per="run"``), after the operators named in its ``inputs``. Definitions are checked when
they are built: unknown inputs, cycles, duplicate names and bad schemas raise
:class:`~kahu.errors.InvalidWorkflow` naming the problem.
"""

from __future__ import annotations

import dataclasses
import graphlib
import importlib
import importlib.util
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema

from kahu.errors import InvalidParameters, InvalidWorkflow

Kind = Literal["python", "command", "container", "application", "internal"]
Per = Literal["series", "run"]
Isolation = Literal["auto", "required", "off"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_PARAM = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class Resources:
    """What a task needs while it runs; the scheduler admits it only when this fits."""

    cpu: float = 1.0
    memory_mb: int = 512
    gpu_memory_mb: int = 0

    def __post_init__(self) -> None:
        if self.cpu <= 0 or self.memory_mb <= 0 or self.gpu_memory_mb < 0:
            raise InvalidWorkflow(f"resources must be positive: {self}")


def callable_path(function: Callable[..., Any] | str) -> str:
    """``module:qualname`` of a function, so another process can import it."""
    if isinstance(function, str):
        if ":" not in function:
            raise InvalidWorkflow(f"a function path is 'module:name', not {function!r}")
        return function
    module = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    if not module or "<" in qualname:
        raise InvalidWorkflow(
            f"{function!r} is not importable by name: operators must be module-level functions"
        )
    return f"{module}:{qualname}"


def load_callable(path: str) -> Callable[..., Any]:
    module, _, qualname = path.partition(":")
    target: Any = importlib.import_module(module)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise InvalidWorkflow(f"{path} is not callable")
    return target  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class Operator:
    """One node of a workflow. Build it with :func:`python_operator`, :func:`command_operator`,
    :func:`container_operator` or :func:`application_operator`."""

    name: str
    kind: Kind
    per: Per = "series"
    inputs: tuple[str, ...] = ()
    #: ``module:qualname`` of the function (python, internal)
    function: str | None = None
    #: program and arguments (command, container); ``{param}`` placeholders are not expanded:
    #: parameters reach programs as environment variables
    command: tuple[str, ...] = ()
    image: str | None = None
    resources: Resources = field(default_factory=Resources)
    retries: int = 0
    retry_delay_s: float = 5.0
    timeout_s: float = 3600.0
    isolation: Isolation = "auto"
    #: extra environment variables for command and container operators
    env: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    #: settings of this use of the operator (JSON values), ``ctx.options`` in its function
    options: Mapping[str, Any] = field(default_factory=dict)
    #: the model parameters whose models it runs: their manifests' memory and GPU needs
    #: raise its resources (:meth:`fitted`)
    models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise InvalidWorkflow(
                f"operator name {self.name!r}: use lower-case letters, digits, '-' and '_'"
            )
        if self.per not in ("series", "run"):
            raise InvalidWorkflow(f"operator {self.name}: per must be 'series' or 'run'")
        if self.kind in ("python", "internal") and not self.function:
            raise InvalidWorkflow(f"operator {self.name}: a {self.kind} operator needs a function")
        if self.kind == "command" and not self.command:
            raise InvalidWorkflow(f"operator {self.name}: a command operator needs a command")
        if self.kind == "container" and not self.image:
            raise InvalidWorkflow(f"operator {self.name}: a container operator needs an image")
        if self.retries < 0 or self.retry_delay_s < 0 or self.timeout_s <= 0:
            raise InvalidWorkflow(f"operator {self.name}: retries, delay and timeout must be >= 0")
        object.__setattr__(self, "models", tuple(self.models))

    def fitted(self, models: Mapping[str, Mapping[str, Any]]) -> Operator:
        """This operator with the resources the run's ``models`` (parameter -> the model's
        run record) need: at least each one's memory, and GPU memory where it requires a
        GPU (``gpu: required``; 1 MB when it does not say how much)."""
        memory, gpu = self.resources.memory_mb, self.resources.gpu_memory_mb
        for key in self.models:
            needs = ((models.get(key) or {}).get("manifest") or {}).get("resources") or {}
            memory = max(memory, int(needs.get("memory_mb") or 0))
            if needs.get("gpu") == "required":
                gpu = max(gpu, int(needs.get("gpu_memory_mb") or 0) or 1)
        if (memory, gpu) == (self.resources.memory_mb, self.resources.gpu_memory_mb):
            return self
        return dataclasses.replace(self, resources=Resources(self.resources.cpu, memory, gpu))


def python_operator(
    name: str,
    function: Callable[..., Any] | str,
    *,
    inputs: Sequence[str] = (),
    per: Per = "series",
    resources: Resources | None = None,
    retries: int = 0,
    retry_delay_s: float = 5.0,
    timeout_s: float = 3600.0,
    description: str = "",
    options: Mapping[str, Any] | None = None,
    models: Sequence[str] = (),
) -> Operator:
    """A Python function ``function(ctx: TaskContext) -> None`` run in its own process;
    ``options`` (JSON values) configure this use of it (``ctx.options``); ``models``: the
    model parameters whose models it runs (their resource needs become its own)."""
    return Operator(
        name,
        "python",
        per,
        tuple(inputs),
        function=callable_path(function),
        resources=resources or Resources(),
        retries=retries,
        retry_delay_s=retry_delay_s,
        timeout_s=timeout_s,
        description=description,
        options=dict(options or {}),
        models=tuple(models),
    )


def command_operator(
    name: str,
    command: Sequence[str],
    *,
    inputs: Sequence[str] = (),
    per: Per = "series",
    resources: Resources | None = None,
    retries: int = 0,
    retry_delay_s: float = 5.0,
    timeout_s: float = 3600.0,
    isolation: Isolation = "auto",
    env: Mapping[str, str] | None = None,
    description: str = "",
    models: Sequence[str] = (),
) -> Operator:
    """Any program, run with the Kaapana environment (``OPERATOR_IN_DIR``, ...); a model
    parameter's folder is in ``KAHU_MODEL_<PARAM>`` (``models``: those it runs, whose
    resource needs become its own)."""
    return Operator(
        name,
        "command",
        per,
        tuple(inputs),
        command=tuple(command),
        resources=resources or Resources(),
        retries=retries,
        retry_delay_s=retry_delay_s,
        timeout_s=timeout_s,
        isolation=isolation,
        env=dict(env or {}),
        description=description,
        models=tuple(models),
    )


def container_operator(
    name: str,
    image: str,
    command: Sequence[str] = (),
    *,
    inputs: Sequence[str] = (),
    per: Per = "run",
    resources: Resources | None = None,
    retries: int = 0,
    retry_delay_s: float = 5.0,
    timeout_s: float = 3600.0,
    env: Mapping[str, str] | None = None,
    description: str = "",
) -> Operator:
    """A container image run by the configured runtime, with the same environment and
    mounts as a command operator (Kaapana's processing containers run unchanged)."""
    return Operator(
        name,
        "container",
        per,
        tuple(inputs),
        command=tuple(command),
        image=image,
        resources=resources or Resources(),
        retries=retries,
        retry_delay_s=retry_delay_s,
        timeout_s=timeout_s,
        env=dict(env or {}),
        description=description,
    )


def internal_operator(
    name: str,
    function: str,
    *,
    inputs: Sequence[str] = (),
    per: Per = "series",
    resources: Resources | None = None,
    retries: int = 0,
    retry_delay_s: float = 5.0,
    description: str = "",
    options: Mapping[str, Any] | None = None,
) -> Operator:
    """``function(ctx, kahu)`` (``module:name``) run in a thread of the server: Kahu's own
    operators that use its catalog and stores (fetching, storing, sending)."""
    return Operator(
        name,
        "internal",
        per,
        tuple(inputs),
        function=function,
        resources=resources or Resources(),
        retries=retries,
        retry_delay_s=retry_delay_s,
        description=description,
        options=dict(options or {}),
    )


def application_operator(
    name: str, *, inputs: Sequence[str] = (), per: Per = "run", description: str = ""
) -> Operator:
    """A human step: the run waits until a user completes the pending task."""
    return Operator(name, "application", per, tuple(inputs), description=description)


#: the JSON Schema ``format`` of a parameter that names an installed model (``name`` or
#: ``name@version``); a launch resolves it for the run's project and pins the version
MODEL_FORMAT = "kahu-model"


def model_parameter(
    description: str = "An installed model (name or name@version)",
    formats: Sequence[str] = (),
    default: str | None = None,
) -> dict[str, Any]:
    """The schema of a parameter naming an installed model of one of ``formats``."""
    spec: dict[str, Any] = {
        "type": "string",
        "format": MODEL_FORMAT,
        "minLength": 1,
        "description": description,
        "x-kahu-model-formats": list(formats),
    }
    if default is not None:
        spec["default"] = default
    return spec


OutputKind = Literal["json", "table", "weights", "text"]


@dataclass(frozen=True, slots=True)
class Output:
    """A result a federated workflow may share with the coordinator: the file ``path`` in the
    run-level folder of ``operator``, of ``kind``, at most ``max_bytes``. Nothing a workflow
    does not declare can leave a site, and what it declares still passes the egress gate."""

    name: str
    operator: str
    path: str
    kind: OutputKind = "json"
    max_bytes: int = 1024 * 1024

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise InvalidWorkflow(f"output name {self.name!r}: lower-case letters, digits, -, _")
        if self.kind not in ("json", "table", "weights", "text"):
            raise InvalidWorkflow(f"output {self.name}: kind must be json, table, weights or text")
        parts = self.path.split("/")
        if not self.path or any(p in ("", ".", "..") for p in parts) or "\\" in self.path:
            raise InvalidWorkflow(f"output {self.name}: path {self.path!r} must stay in its folder")
        if self.max_bytes <= 0:
            raise InvalidWorkflow(f"output {self.name}: max_bytes must be positive")

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "operator": self.operator,
            "path": self.path,
            "kind": self.kind,
            "max_bytes": self.max_bytes,
        }


@dataclass(frozen=True, slots=True)
class Workflow:
    """A named, versioned DAG of operators with a JSON Schema for its parameters."""

    name: str
    version: str
    operators: tuple[Operator, ...]
    title: str = ""
    description: str = ""
    #: JSON Schema (an object) of the parameters; defaults fill what a launch leaves out
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    #: what the workflow expects, e.g. ``{"Modality": ["CT"], "BodyPartExamined": ["ABDOMEN"]}``
    expected_input: Mapping[str, Sequence[str]] = field(default_factory=dict)
    publication: str = ""
    #: whether results may leave the site (federation)
    results_may_leave: bool = False
    #: what a site may share when it runs this workflow for a coordinator (federation)
    outputs: tuple[Output, ...] = ()
    #: the workflow the coordinator runs on the sites' outputs (federation); empty: none
    aggregate: str = ""
    #: the coordinator aggregates what the sites that finished sent, when some did not
    partial_aggregation: bool = False
    #: a failing series fails the whole run at once (the others are cancelled)
    fail_fast: bool = False
    #: Python modules its operators need that Kahu's base install lacks (``torch``); while one
    #: is missing the workflow is listed as unavailable and not launched, ``install`` says how
    requires: tuple[str, ...] = ()
    #: formats of installed models it cannot run without (``totalsegmentator``)
    requires_models: tuple[str, ...] = ()
    install: str = ""
    #: where the definition came from (set by the registry)
    source: str = ""
    _order: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise InvalidWorkflow(
                f"workflow name {self.name!r}: use lower-case letters, digits, '-' and '_'"
            )
        if not self.version:
            raise InvalidWorkflow(f"workflow {self.name}: a version is required")
        object.__setattr__(self, "operators", tuple(self.operators))
        if not self.operators:
            raise InvalidWorkflow(f"workflow {self.name}: no operators")
        names = [op.name for op in self.operators]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise InvalidWorkflow(f"workflow {self.name}: duplicate operators {duplicates}")
        graph: dict[str, tuple[str, ...]] = {}
        for op in self.operators:
            unknown = [i for i in op.inputs if i not in names]
            if unknown:
                raise InvalidWorkflow(
                    f"workflow {self.name}: operator {op.name} has unknown inputs {unknown}"
                )
            graph[op.name] = op.inputs
        try:
            order = tuple(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as exc:
            cycle = " -> ".join(exc.args[1])
            raise InvalidWorkflow(f"workflow {self.name}: cycle {cycle}") from None
        object.__setattr__(self, "_order", order)
        object.__setattr__(self, "outputs", tuple(self.outputs))
        object.__setattr__(self, "requires", tuple(self.requires))
        object.__setattr__(self, "requires_models", tuple(self.requires_models))
        for output in self.outputs:
            if output.operator not in names or self.operator(output.operator).per != "run":
                raise InvalidWorkflow(
                    f"workflow {self.name}: output {output.name} must name a run-level operator"
                )
        if len({o.name for o in self.outputs}) != len(self.outputs):
            raise InvalidWorkflow(f"workflow {self.name}: duplicate output names")
        self._check_schema()

    def missing(self) -> list[str]:
        """The required modules this Python cannot import (empty: the workflow can run)."""
        return [m for m in self.requires if importlib.util.find_spec(m) is None]

    def unavailable(self, formats: Collection[str] | None = None) -> str:
        """Why the workflow cannot run here, or "" when it can; ``formats``: those of the
        installed models (None: not checked)."""
        missing = self.missing()
        if formats is not None:
            missing += [f"a {f} model" for f in self.requires_models if f not in formats]
        if not missing:
            return ""
        how = f": {self.install}" if self.install else ""
        return f"workflow {self.name} needs {', '.join(missing)}, not installed here{how}"

    def model_parameters(self) -> dict[str, tuple[str, ...]]:
        """Parameter name -> model formats it accepts (empty: any), for each parameter that
        names an installed model."""
        return {
            key: tuple(spec.get("x-kahu-model-formats") or ())
            for key, spec in self.parameters.get("properties", {}).items()
            if spec.get("format") == MODEL_FORMAT
        }

    def _check_schema(self) -> None:
        schema = dict(self.parameters)
        if schema.get("type", "object") != "object":
            raise InvalidWorkflow(f"workflow {self.name}: parameters must be an object schema")
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            raise InvalidWorkflow(
                f"workflow {self.name}: bad parameter schema: {exc.message}"
            ) from None
        for key, spec in schema.get("properties", {}).items():
            if not _PARAM.match(key):
                raise InvalidWorkflow(
                    f"workflow {self.name}: parameter {key!r} must be an identifier "
                    "(it becomes an environment variable)"
                )
            if "default" in spec:
                try:
                    jsonschema.Draft202012Validator(spec).validate(spec["default"])
                except jsonschema.ValidationError as exc:
                    raise InvalidWorkflow(
                        f"workflow {self.name}: default of {key} is invalid: {exc.message}"
                    ) from None

    @property
    def order(self) -> tuple[str, ...]:
        """Operator names in an order that respects every dependency."""
        return self._order

    def operator(self, name: str) -> Operator:
        for op in self.operators:
            if op.name == name:
                return op
        raise KeyError(name)

    def validate_parameters(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults filled in, then checked against the schema; errors name the field."""
        values = dict(given or {})
        for key, spec in self.parameters.get("properties", {}).items():
            if key not in values and "default" in spec:
                values[key] = spec["default"]
        validator = jsonschema.Draft202012Validator(dict(self.parameters))
        errors = sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path))
        if errors:
            raise InvalidParameters([_describe(e) for e in errors])
        return values

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "title": self.title or self.name,
            "description": self.description,
            "parameters": dict(self.parameters),
            "expected_input": {k: list(v) for k, v in self.expected_input.items()},
            "publication": self.publication,
            "results_may_leave": self.results_may_leave,
            "fail_fast": self.fail_fast,
            "requires": list(self.requires),
            "requires_models": list(self.requires_models),
            "install": self.install,
            "outputs": [o.public() for o in self.outputs],
            "aggregate": self.aggregate,
            "partial_aggregation": self.partial_aggregation,
            "source": self.source,
            "operators": [
                {
                    "name": op.name,
                    "kind": op.kind,
                    "per": op.per,
                    "inputs": list(op.inputs),
                    "resources": {
                        "cpu": op.resources.cpu,
                        "memory_mb": op.resources.memory_mb,
                        "gpu_memory_mb": op.resources.gpu_memory_mb,
                    },
                    "retries": op.retries,
                    "timeout_s": op.timeout_s,
                    "description": op.description,
                    "options": dict(op.options),
                    "models": list(op.models),
                }
                for op in self.operators
            ],
        }


def _describe(error: jsonschema.ValidationError) -> dict[str, str]:
    path = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        path = ".".join(filter(None, [path, *missing]))
    if error.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)'", error.message)
        path = ".".join(filter(None, [path, *extra]))
    return {"field": path or "(parameters)", "message": error.message}
