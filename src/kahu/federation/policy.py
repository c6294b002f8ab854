"""What a site allows one coordinator, set by the site's own administrator: the workflows it
may ask for (pinned by name, version and content hash), the datasets they may read, whether
work runs at once or waits for approval, how many runs a day, how many bytes may leave per run,
the smallest count a statistic may release, and whether failure logs and de-identified data
may be shared. A coordinator with no policy may ask for nothing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import func, select

from kahu.catalog.database import Database
from kahu.catalog.tables import utcnow
from kahu.errors import InvalidInput
from kahu.federation.tables import FedJob, FedPolicy

Mode = Literal["auto", "approval"]


@dataclass(frozen=True, slots=True)
class Pin:
    """An allowed workflow: exactly this name, version and digest, on these datasets (empty:
    the policy's datasets), narrowed to the series ``query`` matches (empty: all of them)."""

    name: str
    version: str
    digest: str
    datasets: tuple[str, ...] = ()
    #: a search query (docs/search.md) every run of it is narrowed to, within its dataset
    query: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    workflows: tuple[Pin, ...] = ()
    datasets: tuple[str, ...] = ()
    mode: Mode = "approval"
    runs_per_day: int | None = None
    max_output_bytes: int | None = None
    #: counts below this are not released by statistics workflows (small-cell suppression)
    min_cell_count: int = 5
    share_logs: bool = False
    allow_deidentified_export: bool = False

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "approval"):
            raise InvalidInput("mode must be 'auto' or 'approval'")
        if self.runs_per_day is not None and self.runs_per_day < 0:
            raise InvalidInput("runs_per_day must be >= 0")
        if self.max_output_bytes is not None and self.max_output_bytes < 0:
            raise InvalidInput("max_output_bytes must be >= 0")
        if self.min_cell_count < 1:
            raise InvalidInput("min_cell_count must be >= 1")

    def rules(self) -> dict[str, Any]:
        data = asdict(self)
        data["workflows"] = [dict(asdict(p), datasets=list(p.datasets)) for p in self.workflows]
        data["datasets"] = list(self.datasets)
        return data

    @classmethod
    def from_rules(cls, rules: Mapping[str, Any]) -> Policy:
        pins = tuple(
            Pin(
                p["name"],
                p["version"],
                p["digest"],
                tuple(p.get("datasets") or ()),
                str(p.get("query") or ""),
            )
            for p in rules.get("workflows") or ()
        )
        values = {k: v for k, v in rules.items() if k not in ("workflows", "datasets")}
        return cls(workflows=pins, datasets=tuple(rules.get("datasets") or ()), **values)

    def pin(self, name: str, version: str) -> Pin | None:
        for p in self.workflows:
            if p.name == name and p.version == version:
                return p
        return None

    def with_pin(self, pin: Pin) -> Policy:
        others = tuple(p for p in self.workflows if (p.name, p.version) != (pin.name, pin.version))
        return _replace(self, workflows=(*others, pin))

    def without(self, name: str, version: str | None) -> Policy:
        kept = tuple(
            p for p in self.workflows if p.name != name or (version and p.version != version)
        )
        return _replace(self, workflows=kept)


def _replace(policy: Policy, **values: Any) -> Policy:
    return Policy(
        **{**asdict(policy), "workflows": policy.workflows, "datasets": policy.datasets, **values}
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """``refuse`` (with the reason the coordinator sees), ``approval`` or ``auto``."""

    outcome: Literal["refuse", "approval", "auto"]
    reason: str = ""
    pin: Pin | None = None
    notes: Sequence[str] = field(default_factory=tuple)


def decide(
    policy: Policy | None,
    *,
    workflow: str,
    version: str,
    installed_digest: str | None,
    dataset: str,
    runs_today: int,
) -> Decision:
    """What this site does with a request (the checks a coordinator cannot get around)."""
    if policy is None:
        return Decision("refuse", "this site allows its coordinator nothing yet (no policy)")
    pin = policy.pin(workflow, version)
    if pin is None:
        return Decision("refuse", f"workflow {workflow} {version} is not allowed at this site")
    if installed_digest is None:
        return Decision("refuse", f"workflow {workflow} {version} is not installed at this site")
    if installed_digest != pin.digest:
        return Decision(
            "refuse",
            f"the installed workflow {workflow} {version} is not the copy this site pinned "
            "(its content changed): the site's administrator must review and pin it again",
        )
    allowed = pin.datasets or policy.datasets
    if dataset not in allowed:
        return Decision("refuse", f"dataset {dataset!r} is not allowed for {workflow}")
    if policy.runs_per_day is not None and runs_today >= policy.runs_per_day:
        return Decision("refuse", f"the limit of {policy.runs_per_day} runs a day is reached")
    return Decision(policy.mode, pin=pin)


class Policies:
    """The policies of this site, one per coordinator (by site id)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, coordinator: str) -> Policy | None:
        with self.db.read() as s:
            row = s.get(FedPolicy, coordinator)
            return None if row is None else Policy.from_rules(row.rules)

    def put(self, coordinator: str, policy: Policy, *, by: str) -> None:
        with self.db.write() as s:
            row = s.get(FedPolicy, coordinator)
            if row is None:
                s.add(FedPolicy(coordinator=coordinator, rules=policy.rules(), updated_by=by))
            else:
                row.rules, row.updated_by, row.updated_at = policy.rules(), by, utcnow()

    def runs_today(self, coordinator: str) -> int:
        """Work of ``coordinator`` started or approved in the last 24 hours."""
        since = utcnow() - timedelta(days=1)
        with self.db.read() as s:
            return int(
                s.scalar(
                    select(func.count()).where(
                        FedJob.coordinator == coordinator,
                        FedJob.received_at >= since,
                        FedJob.state.in_(("approved", "running", "done", "failed")),
                    )
                )
                or 0
            )
