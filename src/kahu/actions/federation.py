"""Federation actions, all for this site's administrators: inviting partners and joining
coordinators, ending a peering from either side, the policy per coordinator (which pinned
workflows on which datasets, auto-run or approval, limits), approving or refusing waiting work,
and launching federated runs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from kahu.actions import Actor, Done, perform
from kahu.catalog.tables import utcnow
from kahu.core import Kahu
from kahu.errors import KahuError, NotFound
from kahu.federation import client
from kahu.federation.coordinator import SitePart
from kahu.federation.policy import Pin, Policy
from kahu.search.query import parse


def invite(kahu: Kahu, actor: Actor, name: str, hours: float | None = None) -> Done:
    """A one-time join token for partner ``name`` (shown now, never again)."""
    hours = hours or kahu.settings.federation.invite_hours
    token = perform(
        kahu,
        actor,
        "federation.invite",
        "admin",
        lambda: kahu.peers.invite(name, created_by=actor.user.name, hours=hours),
        detail={"partner": name, "hours": hours},
    )
    expires = utcnow() + timedelta(hours=hours)
    return Done(
        f"Invitation for {name} (valid {hours:g} h, shown once):\n"
        f"  kahu federation join {kahu.identity.url} {token} --name {kahu.identity.name}",
        {
            "name": name,
            "token": token,
            "expires_at": expires,
            "coordinator": kahu.identity.public(),
        },
    )


def join(kahu: Kahu, actor: Actor, url: str, token: str, name: str | None = None) -> Done:
    """Join the coordinator at ``url`` with the token it gave this site."""

    def change() -> dict[str, Any]:
        found = client.join(kahu.identity, url, token, kahu.settings.federation)
        peer = kahu.peers.add_coordinator(name or str(found["name"]), url, str(found["public_key"]))
        return peer.public()

    peer = perform(kahu, actor, "federation.join", "admin", change, detail={"url": url})
    return Done(
        f"Joined coordinator {peer['name']} ({peer['site_id']}) at {url}. It may ask for "
        f"nothing until you set a policy: kahu federation allow {peer['name']} WORKFLOW ...",
        peer,
    )


def revoke_partner(kahu: Kahu, actor: Actor, partner: str, reason: str) -> Done:
    peer = kahu.peers.find(partner, "partner")
    perform(
        kahu,
        actor,
        "federation.revoke",
        "admin",
        lambda: kahu.peers.revoke(peer.site_id, "partner", reason or "revoked"),
        detail={"partner": peer.name, "site_id": peer.site_id, "reason": reason},
    )
    return Done(f"Partner {peer.name} revoked: it can fetch no work and send nothing.")


def leave(kahu: Kahu, actor: Actor, coordinator: str, reason: str) -> Done:
    """End this site's peering with a coordinator (it is told when it can be reached)."""
    peer = kahu.peers.find(coordinator, "coordinator")

    def change() -> bool:
        kahu.peers.revoke(peer.site_id, "coordinator", reason or "left")
        with client.http_client(kahu.settings.federation, 10.0) as http:
            remote = client.Coordinator(
                kahu.identity, peer.site_id, peer.public_key, peer.url, http
            )
            try:
                remote.call("POST", "/leave", body=json.dumps({"reason": reason}).encode())
            except KahuError:
                return False
        return True

    told = perform(
        kahu,
        actor,
        "federation.leave",
        "admin",
        change,
        detail={"coordinator": peer.name, "site_id": peer.site_id, "reason": reason},
    )
    tail = "" if told else " (it could not be told now: it is refused from here on)"
    return Done(f"Left coordinator {peer.name}{tail}.", {"told": told})


def set_policy(kahu: Kahu, actor: Actor, coordinator: str, rules: dict[str, Any]) -> Done:
    peer = kahu.peers.find(coordinator, "coordinator")
    policy = Policy.from_rules(rules)
    perform(
        kahu,
        actor,
        "federation.policy",
        "admin",
        lambda: kahu.policies.put(peer.site_id, policy, by=actor.user.name),
        detail={"coordinator": peer.name, "rules": policy.rules()},
    )
    return Done(f"Policy for {peer.name} set.", policy.rules())


def allow(
    kahu: Kahu,
    actor: Actor,
    coordinator: str,
    workflow: str,
    *,
    version: str | None = None,
    datasets: Sequence[str] = (),
    query: str = "",
    changes: dict[str, Any] | None = None,
) -> Done:
    """Pin the installed copy of ``workflow`` for ``coordinator`` on ``datasets`` (and set
    other rules of the policy given in ``changes``)."""
    peer = kahu.peers.find(coordinator, "coordinator")
    installed = kahu.workflows.get(workflow, version)
    for name in datasets:
        kahu.curation.dataset(name)  # NotFound names it
    if query:
        parse(query)  # a bad query is refused now, not at the first run
    digest = kahu.workflows.digest(installed)
    pin = Pin(installed.name, installed.version, digest, tuple(datasets), query)
    old = kahu.policies.get(peer.site_id) or Policy()
    policy = Policy.from_rules({**old.with_pin(pin).rules(), **(changes or {})})
    perform(
        kahu,
        actor,
        "federation.allow",
        "admin",
        lambda: kahu.policies.put(peer.site_id, policy, by=actor.user.name),
        detail={
            "coordinator": peer.name,
            "workflow": pin.name,
            "version": pin.version,
            "digest": pin.digest,
            "datasets": list(datasets),
            "query": query,
            "changes": changes or {},
        },
    )
    return Done(
        f"{peer.name} may run {pin.name} {pin.version} (digest {pin.digest[:12]}) on "
        f"{', '.join(datasets) or 'the policy datasets'}"
        f"{f' (only {query})' if query else ''}; mode {policy.mode}.",
        policy.rules(),
    )


def disallow(
    kahu: Kahu, actor: Actor, coordinator: str, workflow: str, version: str | None = None
) -> Done:
    peer = kahu.peers.find(coordinator, "coordinator")
    old = kahu.policies.get(peer.site_id)
    if old is None:
        raise NotFound(f"no policy for {peer.name}")
    policy = old.without(workflow, version)
    perform(
        kahu,
        actor,
        "federation.disallow",
        "admin",
        lambda: kahu.policies.put(peer.site_id, policy, by=actor.user.name),
        detail={"coordinator": peer.name, "workflow": workflow, "version": version},
    )
    return Done(f"{peer.name} may no longer run {workflow}.", policy.rules())


def approve(kahu: Kahu, actor: Actor, job_id: str) -> Done:
    job = perform(
        kahu,
        actor,
        "federation.approve",
        "admin",
        lambda: kahu.agent.approve(job_id, actor.user.name),
        detail={"job": job_id},
    )
    return Done(f"{job_id} approved: it runs now.", job)


def refuse(kahu: Kahu, actor: Actor, job_id: str, reason: str) -> Done:
    job = perform(
        kahu,
        actor,
        "federation.refuse.manual",
        "admin",
        lambda: kahu.agent.refuse(job_id, actor.user.name, reason),
        detail={"job": job_id, "reason": reason},
    )
    return Done(f"{job_id} refused; the coordinator sees: {job['reason']}", job)


def launch(
    kahu: Kahu,
    actor: Actor,
    workflow: str,
    sites: Sequence[tuple[str, str]],
    params: dict[str, Any] | None,
    *,
    version: str | None = None,
    project: str = "default",
    timeout_s: float = 3600.0,
) -> Done:
    """Ask partner ``sites`` (name, dataset) to run ``workflow``; aggregate what they send."""

    def change() -> str:
        kahu.projects.pk(project)  # NotFound: no such project
        return kahu.fed_runs.launch(
            workflow,
            [SitePart(s, d) for s, d in sites],
            params,
            version=version,
            created_by=actor.user.name,
            project=project,
            timeout_s=timeout_s,
        )

    run_id = perform(
        kahu,
        actor,
        "federation.launch",
        "admin",
        change,
        project=project,
        detail={
            "workflow": workflow,
            "version": version,
            "sites": [list(s) for s in sites],
            "params": params or {},
        },
    )
    return Done(f"Federated run {run_id} asked of {len(sites)} sites.", {"id": run_id})


def cancel_run(kahu: Kahu, actor: Actor, run_id: str, reason: str) -> Done:
    """Stop a federated run this site coordinates; each site that took it is told."""
    why = reason.strip() or f"cancelled by {actor.user.name}"
    perform(
        kahu,
        actor,
        "federation.cancel",
        "admin",
        lambda: kahu.fed_runs.cancel(run_id, why),
        detail={"run": run_id, "reason": why},
    )
    return Done(f"Federated run {run_id} cancelled: the sites that took it stop it.")
