"""A partner's agent: it fetches work from each coordinator this site joined (connecting out,
a long poll), decides under the site's own policy, runs the site's own pinned copy of the
workflow, lets the declared outputs through the egress gate and reports back.

What the agent does survives a restart: each piece of work is a row (:class:`FedJob`) whose
state moves by :data:`kahu.federation.jobs.JOB_TRANSITIONS`; a state the coordinator has not
acknowledged is sent again, and an output released but not acknowledged is sent again under its
ledger entry."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update

from kahu.audit import AuditLog
from kahu.catalog.database import Database
from kahu.catalog.repository import Catalog
from kahu.catalog.tables import Instance, Series, Study, utcnow
from kahu.errors import Conflict, EgressRefused, KahuError, NotFound
from kahu.federation import egress
from kahu.federation.client import Coordinator, Refused, Unreachable, http_client
from kahu.federation.identity import SiteIdentity
from kahu.federation.jobs import (
    FAILURE_OUTPUT,
    GIVE_UP_AFTER,
    JOB_TRANSITIONS,
    PRIVATE_FAILURE,
    REPORTED_AS,
    final_refusal,
    job_public,
    policy_note,
    report_mark,
)
from kahu.federation.peers import Peer, Peers
from kahu.federation.policy import Policies, Policy, decide
from kahu.federation.tables import FedJob
from kahu.flow.cohort import RunInput
from kahu.flow.engine import Engine
from kahu.flow.job import RunPaths
from kahu.flow.launch import launch
from kahu.flow.registry import WorkflowRegistry
from kahu.search.datasets import Curation
from kahu.settings import FederationSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AgentParts:
    db: Database
    identity: SiteIdentity
    peers: Peers
    policies: Policies
    ledger: egress.Ledger
    registry: WorkflowRegistry
    engine: Engine
    catalog: Catalog
    audit: AuditLog
    settings: FederationSettings


class Agent:
    """The work this site does for its coordinators."""

    def __init__(self, parts: AgentParts) -> None:
        self.p = parts
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._main: threading.Thread | None = None
        self._clients: dict[str, Coordinator] = {}
        self._retry_at: dict[str, tuple[float, int]] = {}  # job: (not before, tries)

    # -- deciding ---------------------------------------------------------------------------

    def _installed_digest(self, name: str, version: str) -> str | None:
        try:
            return self.p.registry.digest(self.p.registry.get(name, version))
        except NotFound:
            return None

    def _decide(self, coordinator: str, workflow: str, version: str, dataset: str) -> Any:
        return decide(
            self.p.policies.get(coordinator),
            workflow=workflow,
            version=version,
            installed_digest=self._installed_digest(workflow, version),
            dataset=dataset,
            runs_today=self.p.policies.runs_today(coordinator),
        )

    def _refusal(self, job: FedJob | dict[str, Any], reason: str, actor: str) -> None:
        get = job.get if isinstance(job, dict) else lambda k: getattr(job, k)
        self.p.audit.record(
            actor,
            "federation.refuse",
            kind="system" if actor.startswith("federation:") else "user",
            path="federation",
            detail={
                "job": get("id"),
                "coordinator": get("coordinator"),
                "workflow": get("workflow"),
                "dataset": get("dataset"),
                "reason": reason,
            },
            status=403,
        )

    def receive(self, peer: Peer, work: dict[str, Any]) -> None:
        """Take one piece of work from ``peer`` (again: nothing new happens)."""
        job_id = str(work["id"])
        if not job_id.startswith(str(work.get("fed_run", "")) + "."):
            raise KahuError(f"work {job_id!r} does not belong to its run")
        with self.p.db.read() as s:
            if s.get(FedJob, job_id) is not None:
                self._wake.set()
                return
        workflow, version = str(work["workflow"]), str(work["version"])
        dataset = str(work["dataset"])
        decision = self._decide(peer.site_id, workflow, version, dataset)
        state = {"refuse": "refused", "approval": "waiting_approval", "auto": "approved"}
        job = FedJob(
            id=job_id,
            coordinator=peer.site_id,
            fed_run=str(work["fed_run"]),
            workflow=workflow,
            version=version,
            digest=str(work.get("digest", "")),
            params=dict(work.get("params") or {}),
            dataset=dataset,
            requested_by=str(work.get("requested_by", ""))[:128],
            state=state[decision.outcome],
            reason=decision.reason,
            reported="",
            approved_by="auto" if decision.outcome == "auto" else "",
            local_run="",
        )
        with self.p.db.write() as s:
            if s.get(FedJob, job_id) is not None:
                return
            s.add(job)
        if decision.outcome == "refuse":
            self._refusal(job_public(job), decision.reason, f"federation:{peer.name}")
        self._wake.set()

    def jobs(self, state: str | None = None) -> list[dict[str, Any]]:
        stmt = select(FedJob).order_by(FedJob.received_at.desc())
        if state:
            stmt = stmt.where(FedJob.state == state)
        with self.p.db.read() as s:
            return [job_public(j) for j in s.scalars(stmt)]

    def job(self, job_id: str) -> dict[str, Any]:
        with self.p.db.read() as s:
            job = s.get(FedJob, job_id)
            if job is None:
                raise NotFound(f"no federated work {job_id}")
            return job_public(job)

    def waiting(self) -> list[dict[str, Any]]:
        """Work waiting for approval, with what an approver needs: the coordinator's name and
        the outputs that would leave (as this site's copy of the workflow declares them)."""
        found = []
        for job in self.jobs("waiting_approval"):
            try:
                workflow = self.p.registry.get(job["workflow"], job["version"])
                outputs = [o.public() for o in workflow.outputs]
            except NotFound:
                outputs = []
            name = self.p.peers.get(job["coordinator"], "coordinator").name
            found.append({**job, "coordinator_name": name, "outputs": outputs})
        return found

    def _waiting_job(self, job_id: str) -> dict[str, Any]:
        job = self.job(job_id)
        if job["state"] != "waiting_approval":
            raise Conflict(f"work {job_id} is {job['state']}, not waiting for approval")
        return job

    def approve(self, job_id: str, by: str) -> dict[str, Any]:
        """Let waiting work run (checked again against the policy as it is now)."""
        job = self._waiting_job(job_id)
        decision = self._decide(job["coordinator"], job["workflow"], job["version"], job["dataset"])
        if decision.outcome == "refuse":
            self._move(job_id, "refused", reason=decision.reason)
            self._refusal(job, decision.reason, by)
            raise EgressRefused(f"the policy refuses it now: {decision.reason}")
        self._move(job_id, "approved", approved_by=by)
        self._wake.set()
        return self.job(job_id)

    def refuse(self, job_id: str, by: str, reason: str) -> dict[str, Any]:
        job = self._waiting_job(job_id)
        why = f"refused by this site's administrator: {reason or 'no reason given'}"
        self._move(job_id, "refused", reason=why, approved_by=by)
        self._refusal(job, why, by)
        self._wake.set()
        return self.job(job_id)

    def _move(self, job_id: str, state: str, **values: Any) -> bool:
        sources = [s for s, targets in JOB_TRANSITIONS.items() if state in targets]
        with self.p.db.write() as s:
            done = s.execute(
                update(FedJob)
                .where(FedJob.id == job_id, FedJob.state.in_(sources))
                .values(state=state, updated_at=utcnow(), **values)
            )
            return bool(getattr(done, "rowcount", 0))

    # -- running and releasing --------------------------------------------------------------

    def _start(self, job: FedJob, policy: Policy) -> None:
        workflow = self.p.registry.get(job.workflow, job.version)
        params = dict(job.params)
        if "min_cell_count" in (workflow.parameters.get("properties") or {}):
            asked = params.get("min_cell_count")
            floor = policy.min_cell_count
            params["min_cell_count"] = max(floor, asked) if isinstance(asked, int) else floor
        peer = self.p.peers.get(job.coordinator, "coordinator")
        pin = policy.pin(job.workflow, job.version)
        try:
            project = Curation(self.p.catalog).dataset(job.dataset).project
            (run_id,) = launch(
                self.p.catalog,
                self.p.registry,
                self.p.engine,
                job.workflow,
                params,
                RunInput(dataset=job.dataset, query=pin.query if pin else None),
                version=job.version,
                trigger="federation",
                created_by=f"federation:{peer.name}",
                project=project,
                audit=self.p.audit,
                path=f"federation {job.fed_run}",
            )
        except KahuError as exc:
            self._move(job.id, "failed", reason=f"the run could not start here: {exc}")
            return
        if not self._move(job.id, "running", local_run=run_id):  # cancelled meanwhile
            self._stop_local(run_id)

    def _stop_local(self, run_id: str) -> None:
        """Cancel the local run of a piece of work, unless it has finished already."""
        if run_id:
            with contextlib.suppress(Conflict):
                self.p.engine.cancel(run_id)

    def _known_uid(self, uid: str) -> bool:
        with self.p.db.read() as s:
            return any(
                s.scalar(select(table.id).where(column == uid).limit(1)) is not None
                for table, column in (
                    (Series, Series.series_instance_uid),
                    (Study, Study.study_instance_uid),
                    (Instance, Instance.sop_instance_uid),
                )
            )

    def _release(self, job: FedJob, policy: Policy, client: Coordinator) -> None:
        """Send each declared output of the finished local run through the gate."""
        workflow = self.p.registry.get(job.workflow, job.version)
        paths = RunPaths(self.p.engine.runs_root, job.local_run)
        for output in workflow.outputs:
            entry = self.p.ledger.find(job.fed_run, output.name)
            if entry is not None and entry["delivered"]:
                continue
            file = paths.out_dir(output.operator, "") / output.path
            if not file.is_file():
                self._fail(job, f"declared output {output.name} was not produced", policy)
                return
            data = file.read_bytes()
            if entry is None:
                budget = output.max_bytes
                if policy.max_output_bytes is not None:
                    sent = self.p.ledger.bytes_of_run(job.fed_run)
                    budget = min(budget, policy.max_output_bytes - sent)
                try:
                    egress.inspect(
                        data,
                        kind=output.kind,
                        max_bytes=max(budget, 0),
                        allow_deidentified=policy.allow_deidentified_export,
                        known_uid=self._known_uid,
                    )
                except EgressRefused as exc:
                    why = f"the egress gate refused output {output.name}: {exc}"
                    self._refusal(job, why, "egress-gate")
                    self._move(job.id, "failed", reason=why)  # the rule, never the data
                    return
                entry = self._record(job, policy, output.operator, output.name, output.kind, data)
            elif entry["sha256"] != hashlib.sha256(data).hexdigest():
                self._fail(job, f"output {output.name} changed after it was released", policy)
                return
            client.call(
                "PUT",
                f"/jobs/{job.id}/outputs/{output.name}",
                body=data,
                content_type="application/octet-stream",
            )
            self.p.ledger.delivered(entry["seq"])
        self._move(job.id, "done")

    def _record(
        self, job: FedJob, policy: Policy, task: str, output: str, kind: str, data: bytes
    ) -> dict[str, Any]:
        """The ledger entry for ``data`` about to leave for the job's coordinator."""
        peer = self.p.peers.get(job.coordinator, "coordinator")
        release = egress.Release(
            partner=peer.name,
            partner_id=peer.site_id,
            run=job.fed_run,
            local_run=job.local_run,
            task=task,
            output=output,
            kind=kind,
            data=data,
            policy=policy_note(policy, job),
            approved_by=job.approved_by,
        )
        return self.p.ledger.append(release)

    def _fail(self, job: FedJob, why: str, policy: Policy) -> None:
        """Fail the work; the coordinator hears the details only where the policy shares
        logs, and then they leave like any output: gated and in the ledger."""
        shared = PRIVATE_FAILURE
        if policy.share_logs:
            data = why.encode()[:4000]
            try:
                egress.inspect(data, kind="text", max_bytes=4000, known_uid=self._known_uid)
            except EgressRefused:
                pass
            else:
                self._record(job, policy, "", FAILURE_OUTPUT, "text", data)
                shared = data.decode(errors="replace")
        self._move(job.id, "failed", reason=shared)

    def step(self, now: float | None = None) -> None:
        """One pass: start approved work, follow running work, report what changed."""
        with self.p.db.read() as s:
            jobs = list(
                s.scalars(
                    select(FedJob).where(
                        or_(
                            FedJob.state.in_(("approved", "running")),
                            FedJob.reported.not_like(FedJob.state + ":%"),
                        )
                    )
                )
            )
        now = time.monotonic() if now is None else now
        for job in jobs:
            if self._retry_at.get(job.id, (0.0, 0))[0] > now:
                continue
            try:
                self._step(job)
                self._retry_at.pop(job.id, None)
            except Exception as exc:
                # try again later, later each time (a coordinator that keeps refusing is
                # not asked five times a second), and give up on what it keeps refusing
                tries = self._retry_at.get(job.id, (0.0, 0))[1] + 1
                self._retry_at[job.id] = (now + min(2.0**tries, self.p.settings.retry_max_s), tries)
                if isinstance(exc, Refused) and final_refusal(exc.status):
                    log.warning("federated work %s: %s (%d times)", job.id, exc, tries)
                    if tries >= GIVE_UP_AFTER:
                        self._give_up(job.id, exc)
                        self._retry_at.pop(job.id, None)
                elif isinstance(exc, Unreachable | Refused):
                    log.info("federated work %s: %s", job.id, exc)
                else:
                    log.exception("federated work %s", job.id)

    def cancelled(self, peer: Peer, job_id: str, reason: str) -> None:
        """The coordinator cancelled work it asked of this site: stop it here; the next pass
        tells the coordinator (work this site never took is answered at once)."""
        with self.p.db.read() as s:
            job = s.get(FedJob, job_id)
        if job is None or job.coordinator != peer.site_id:
            body = {"state": "refused", "reason": "this site has no such work", "progress": {}}
            self._client(peer).call(
                "POST", f"/jobs/{job_id}/status", body=json.dumps(body).encode()
            )
            return
        why = f"cancelled by the coordinator: {reason}"[:2000]
        if self._move(job.id, "cancelled", reason=why):
            self._stop_local(job.local_run)
            self.p.audit.record(
                f"federation:{peer.name}",
                "federation.cancelled",
                kind="system",
                path="federation",
                detail={"job": job.id, "was": job.state, "reason": reason},
            )
        elif job.reported.startswith(f"{job.state}:"):
            # finished here already, and said so: the coordinator did not hear it; say again
            with self.p.db.write() as s:
                s.execute(update(FedJob).where(FedJob.id == job.id).values(reported=""))
        self._wake.set()

    def _give_up(self, job_id: str, refused: Refused) -> None:
        """The coordinator refused this work's outputs or reports ``GIVE_UP_AFTER`` times: fail
        it here (stopping its local run) and report no more; the refusal is audited."""
        with self.p.db.read() as s:
            job = s.get(FedJob, job_id)
            assert job is not None
        reason = f"the coordinator refuses it: {refused.reason}"[:2000]
        if job.state in ("approved", "running"):  # the next pass reports the failure
            self._stop_local(job.local_run)
            self._move(job.id, "failed", reason=reason)
        else:  # a report it will not take is not sent again
            with self.p.db.write() as s:
                s.execute(
                    update(FedJob)
                    .where(FedJob.id == job_id)
                    .values(reported=report_mark(job.state))
                )
        peer = self.p.peers.get(job.coordinator, "coordinator")
        self.p.audit.record(
            f"federation:{peer.name}",
            "federation.given_up",
            kind="system",
            path="federation",
            detail={"job": job.id, "state": job.state, "reason": reason},
            status=refused.status,
        )

    def _step(self, job: FedJob) -> None:
        peer = self.p.peers.get(job.coordinator, "coordinator")
        if not peer.active:
            if job.state in ("waiting_approval", "approved"):
                self._move(job.id, "refused", reason="this site left the coordinator")
            return
        policy = self.p.policies.get(job.coordinator) or Policy()
        if job.state == "approved":
            self._start(job, policy)
        elif job.state == "running" and job.local_run:
            run = self.p.engine.runs.run(job.local_run, with_series=False)
            if run.state == "succeeded":
                self._release(job, policy, self._client(peer))
            elif run.state in ("failed", "cancelled"):
                self._fail(job, f"the run {run.state} at this site: {run.error}"[:1000], policy)
        self._report(job.id, peer)

    def _report(self, job_id: str, peer: Peer) -> None:
        with self.p.db.read() as s:
            job = s.get(FedJob, job_id)
            assert job is not None
        progress: dict[str, Any] = {}
        if job.state == "running" and job.local_run:
            progress = self.p.engine.runs.run(job.local_run, with_series=False).public()["progress"]
        mark = report_mark(job.state, progress)
        if job.reported == mark:
            return
        body = {
            "state": REPORTED_AS.get(job.state, job.state),
            "reason": job.reason,
            "progress": progress,
        }
        self._client(peer).call("POST", f"/jobs/{job.id}/status", body=json.dumps(body).encode())
        if job.state == "failed":
            shared = self.p.ledger.find(job.fed_run, FAILURE_OUTPUT)
            if shared is not None and not shared["delivered"]:
                self.p.ledger.delivered(shared["seq"])
        with self.p.db.write() as s:
            s.execute(update(FedJob).where(FedJob.id == job_id).values(reported=mark))

    # -- the threads ------------------------------------------------------------------------

    def _client(self, peer: Peer) -> Coordinator:
        client = self._clients.get(peer.site_id)
        if client is None or client.url != peer.url:
            timeout = self.p.settings.poll_wait_s + 30
            client = Coordinator(
                self.p.identity,
                peer.site_id,
                peer.public_key,
                peer.url,
                http_client(self.p.settings, timeout),
            )
            self._clients[peer.site_id] = client
        return client

    def start(self) -> None:
        self._stop.clear()
        self._main = threading.Thread(target=self._loop, name="kahu-fed-agent", daemon=True)
        self._main.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in [self._main, *self._threads.values()]:
            if thread is not None:
                thread.join(timeout=5)
        self._threads.clear()
        for client in self._clients.values():
            client.http.close()
        self._clients.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for peer in self.p.peers.all("coordinator"):
                alive = self._threads.get(peer.site_id)
                if peer.active and (alive is None or not alive.is_alive()):
                    thread = threading.Thread(
                        target=self._poll,
                        args=(peer.site_id,),
                        daemon=True,
                        name=f"kahu-fed-poll-{peer.name}",
                    )
                    self._threads[peer.site_id] = thread
                    thread.start()
            try:
                self.step()
            except Exception:
                log.exception("the federation agent's pass failed")
            self._wake.wait(0.2)
            self._wake.clear()

    def _poll(self, site_id: str) -> None:
        """Fetch work from one coordinator until it or this site ends the peering."""
        pause = 0.0
        while not self._stop.wait(pause):
            peer = self.p.peers.get(site_id, "coordinator")
            if not peer.active:
                return
            wait = self.p.settings.poll_wait_s
            try:
                answer = self._client(peer).call("GET", f"/work?wait={wait:g}", timeout=wait + 30)
                pause = 0.0
            except Unreachable as exc:
                log.info("coordinator %s: %s", peer.name, exc)
                pause = min(max(pause * 2, 1.0), 15.0)
                continue
            except Refused as exc:
                if exc.status == 403 and "revoked" in exc.reason:
                    self.p.peers.revoke(site_id, "coordinator", f"by the coordinator: {exc.reason}")
                    self.p.audit.record(
                        f"federation:{peer.name}",
                        "federation.revoked",
                        kind="system",
                        path="federation",
                        detail={"reason": exc.reason},
                        status=403,
                    )
                    return
                log.warning("coordinator %s refused the poll: %s", peer.name, exc)
                pause = 10.0
                continue
            except KahuError as exc:  # an answer not signed by the coordinator's key
                self._refusal({"coordinator": site_id}, str(exc), f"federation:{peer.name}")
                log.warning("coordinator %s: %s", peer.name, exc)
                pause = 10.0
                continue
            for work in answer.get("jobs") or []:
                try:
                    self.receive(peer, work)
                except (KahuError, KeyError, TypeError, ValueError) as exc:
                    log.warning("coordinator %s sent work that is not taken: %s", peer.name, exc)
            for cancelled in answer.get("cancelled") or []:
                try:
                    self.cancelled(peer, str(cancelled["id"]), str(cancelled.get("reason", "")))
                except (KahuError, KeyError, TypeError) as exc:
                    log.warning("coordinator %s: cancellation not taken: %s", peer.name, exc)
