"""The work a coordinator asks of this site, as the agent keeps it: the states a piece of
work moves through, what a coordinator hears of each, when its refusals are final, and what
is shown of a job and kept with a release."""

from __future__ import annotations

from typing import Any

from kahu.federation.policy import Policy
from kahu.federation.tables import FedJob

#: what a piece of work may become from each state
JOB_TRANSITIONS: dict[str, frozenset[str]] = {
    "waiting_approval": frozenset({"approved", "refused", "cancelled"}),
    "approved": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"done", "failed", "cancelled"}),
    "refused": frozenset(),
    "done": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}
PRIVATE_FAILURE = "the work failed at this site (its policy shares no details)"
#: the ledger's name for the failure details a site shares
FAILURE_OUTPUT = "failure-log"
#: the state a coordinator hears for each of the agent's (approved is running to it; a
#: cancellation it made itself is answered as the end of the work)
REPORTED_AS = {"approved": "running", "cancelled": "failed"}
#: a coordinator's refusal of an output or a report is final after this many tries ...
GIVE_UP_AFTER = 5
#: ... unless it may pass: a signature refused for the clock, a busy coordinator
RETRIED_STATUSES = frozenset({401, 408, 425, 429})


def final_refusal(status: int) -> bool:
    """Whether a coordinator's answer refuses for good (a 5xx or a 429 may pass)."""
    return 400 <= status < 500 and status not in RETRIED_STATUSES


def job_public(job: FedJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "coordinator": job.coordinator,
        "fed_run": job.fed_run,
        "workflow": job.workflow,
        "version": job.version,
        "digest": job.digest,
        "params": job.params,
        "dataset": job.dataset,
        "requested_by": job.requested_by,
        "state": job.state,
        "reason": job.reason,
        "approved_by": job.approved_by,
        "local_run": job.local_run,
        "received_at": job.received_at,
        "updated_at": job.updated_at,
    }


def report_mark(state: str, progress: dict[str, Any] | None = None) -> str:
    """What was last reported of a job: its state and progress."""
    progress = progress or {}
    return f"{state}:{progress.get('done', '')}/{progress.get('total', '')}"


def policy_note(policy: Policy, job: FedJob) -> dict[str, Any]:
    """What of the policy let the output out (kept with its ledger entry)."""
    pin = policy.pin(job.workflow, job.version)
    return {
        "coordinator": job.coordinator,
        "workflow": job.workflow,
        "version": job.version,
        "digest": pin.digest if pin else "",
        "dataset": job.dataset,
        "mode": policy.mode,
        "max_output_bytes": policy.max_output_bytes,
        "min_cell_count": policy.min_cell_count,
        "allow_deidentified_export": policy.allow_deidentified_export,
    }
