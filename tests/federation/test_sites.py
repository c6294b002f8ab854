"""Three real Kahu processes on 127.0.0.1, each with its own home, port and data; site a is the
coordinator and (joined to itself) a partner too, b and c are partners. All traffic between
the sites passes a recording proxy. One federated cohort-statistics run: auto-run at a,
approval at b, refusal at c; aggregation of what a and b released; the ledgers; what crossed."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from kahu.actions import federation as actions
from kahu.errors import AuthenticationFailed
from kahu.federation.client import signed_headers
from tests.conftest import free_port
from tests.federation.proxy import RecordingProxy
from tests.federation.sites import CLI, Site, join, seed, wait_for


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[tuple[Site, Site, Site, RecordingProxy]]:
    a, b, c = (Site(n, tmp_path / n, free_port()) for n in "abc")
    for site, count in ((a, 2), (b, 3), (c, 2)):
        seed(site, count)
        site.start()
    proxy = RecordingProxy(a.port)
    try:
        yield a, b, c, proxy
    finally:
        proxy.close()
        for site in (a, b, c):
            site.stop()


def test_a_federated_run_across_three_sites(
    sites: tuple[Site, Site, Site, RecordingProxy],
) -> None:
    a, b, c, proxy = sites
    for partner in (a, b, c):
        join(a, partner, proxy)
    with a.open() as kahu:  # a wrong token and an expired one are refused, nothing is added
        with pytest.raises(AuthenticationFailed, match="not known"):
            actions.join(kahu, CLI, proxy.url, "kahu-join-not-a-token-at-all", "other")
        expired = actions.invite(kahu, CLI, "late", 0.0001).result["token"]
        time.sleep(1.0)
        with pytest.raises(AuthenticationFailed, match="expired"):
            actions.join(kahu, CLI, proxy.url, expired, "other")
        assert sorted(p.name for p in kahu.peers.all("partner")) == ["a", "b", "c"]

    # each site's administrator decides: a runs at once, b asks, c allows another dataset
    for site, mode, dataset in (
        (a, "auto", "a-cohort"),
        (b, "approval", "b-cohort"),
        (c, "auto", "c-other"),
    ):
        with site.open() as kahu:
            actions.allow(
                kahu,
                CLI,
                "hub",
                "cohort-statistics",
                datasets=[dataset],
                query="PatientID:A0" if site is a else "",  # a lets one patient of two be read
                changes={"mode": mode, "min_cell_count": 2 if site is b else 1},
            )

    with a.open() as kahu:
        launched = time.monotonic()
        run_id = actions.launch(
            kahu,
            CLI,
            "cohort-statistics",
            [("a", "a-cohort"), ("b", "b-cohort"), ("c", "c-cohort")],
            {"min_cell_count": 1},
        ).result["id"]

        def part(name: str) -> dict[str, Any]:
            status = kahu.fed_runs.status(run_id)
            return next(s for s in status["sites"] if s["site"] == name)

        wait_for("b to ask for approval", lambda: part("b")["state"] == "waiting_approval")
        assert time.monotonic() - launched < 10
        refused = wait_for("c to refuse", lambda: part("c")["state"] == "refused" and part("c"))
        assert "not allowed" in refused["reason"]

    # b's administrator sees who asks what, and what would leave, and approves
    shown = subprocess.run(
        [sys.executable, "-m", "kahu", "federation", "approvals", "--home", str(b.home)],
        capture_output=True,
        text=True,
        check=True,
        env=b.env(),
    ).stdout
    [waiting] = json.loads(shown)
    assert waiting["workflow"] == "cohort-statistics"
    assert waiting["dataset"] == "b-cohort"
    assert waiting["coordinator_name"] == "hub"
    assert [o["name"] for o in waiting["outputs"]] == ["statistics"]
    with b.open() as kahu:
        actions.approve(kahu, CLI, waiting["id"])

    with a.open() as kahu:
        final = wait_for(
            "the aggregation",
            lambda: (s := kahu.fed_runs.status(run_id))["state"] in ("done", "failed") and s,
            timeout=90,
        )
        assert final["state"] == "done", final
        states = {s["site"]: s["state"] for s in final["sites"]}
        assert states == {"a": "done", "b": "done", "c": "refused"}
        with kahu.objects.of_project("default").open("federation", f"{run_id}/aggregate.json") as f:
            aggregate = json.load(f)
    assert aggregate["sites"] == ["a", "b"]
    assert aggregate["series"] == 4  # a's 1 (its query) and b's 3
    assert aggregate["by"]["Modality"] == {"CT": 4}
    assert aggregate["by"]["BodyPartExamined"] == {"CHEST": 4}
    assert aggregate["per_site"]["b"]["min_cell_count"] == 2  # b's own k, above the 1 asked

    # every byte that left a site is in its ledger, and matches what the proxy saw
    traffic = proxy.traffic()
    bodies = _put_bodies(bytes(proxy.sent))
    for site, approved_by in ((a, "auto"), (b, "cli:")):
        with site.open() as kahu:
            [entry] = kahu.ledger.entries()
            assert kahu.ledger.verify() == (1, "")
        assert entry["run"] == run_id
        assert entry["output"] == "statistics"
        assert entry["kind"] == "json"
        assert entry["delivered"] is True
        assert entry["approved_by"].startswith(approved_by)
        sent = bodies[f"{run_id}.{_site_id(site)[:12]}"]
        assert (len(sent), hashlib.sha256(sent).hexdigest()) == (entry["bytes"], entry["sha256"])
    with c.open() as kahu:
        assert kahu.ledger.entries() == []
        refusals = kahu.audit.query(action="federation.refuse")
        assert refusals
        assert "not allowed" in json.dumps(refusals[0].detail)
    assert len(bodies) == 2  # nothing but the two declared outputs was uploaded

    # nothing that looks like DICOM crossed, nor any of the sites' UIDs
    assert b"DICM" not in traffic
    for site in (a, b, c):
        for uid in site.series + site.studies:
            assert uid.encode() not in traffic, f"{uid} of {site.name} crossed"

    # the ledger as the command line gives it: one JSON object per line
    out = subprocess.run(
        [sys.executable, "-m", "kahu", "egress", "list", "--json", "--home", str(b.home)],
        capture_output=True,
        text=True,
        check=True,
        env=b.env(),
    ).stdout
    [line] = out.splitlines()
    assert {"at", "partner", "run", "output", "kind", "bytes", "sha256", "approved_by"} <= set(
        json.loads(line)
    )


def _site_id(site: Site) -> str:
    with site.open() as kahu:
        return kahu.identity.site_id


def _put_bodies(stream: bytes) -> dict[str, bytes]:
    """The bodies of the output uploads in a recorded HTTP stream, by job id."""
    found: dict[str, bytes] = {}
    for match in re.finditer(
        rb"PUT /api/v1/federation/jobs/([^/ ]+)/outputs/[^ ]+ HTTP/1.1\r\n", stream
    ):
        head_end = stream.index(b"\r\n\r\n", match.end()) + 4
        head = stream[match.end() : head_end].decode("latin-1").lower()
        length = int(re.search(r"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
        found[match.group(1).decode()] = stream[head_end : head_end + length]
    return found


def test_refusals_between_sites(sites: tuple[Site, Site, Site, RecordingProxy]) -> None:
    """An undeclared output, a revoked partner and a coordinator pretending to be another are
    refused, with the refusal in the audit log."""
    a, b, c, proxy = sites
    join(a, b, proxy)
    with b.open() as kahu:
        actions.allow(
            kahu,
            CLI,
            "hub",
            "cohort-statistics",
            datasets=["b-cohort"],
            changes={"mode": "approval"},
        )
        identity = kahu.identity
    with a.open() as kahu:
        run_id = actions.launch(kahu, CLI, "cohort-statistics", [("b", "b-cohort")], {}).result[
            "id"
        ]
        coordinator_id = kahu.identity.site_id
    part = f"{run_id}.{identity.site_id[:12]}"

    path = f"/api/v1/federation/jobs/{part}/outputs/pixels"
    headers = signed_headers(identity, "PUT", path, b"{}", coordinator_id)
    answer = httpx.put(proxy.url + path, content=b"{}", headers=headers)
    assert answer.status_code == 403
    assert "declares no output" in answer.json()["detail"]
    replay = httpx.put(proxy.url + path, content=b"{}", headers=headers)
    assert replay.status_code == 401
    assert "replay" in replay.json()["detail"]
    status = f"/api/v1/federation/jobs/{part}/status"
    for body, expected in ((b"not json", "not JSON"), (b'{"state": "won"}', "unknown state")):
        signed = signed_headers(identity, "POST", status, body, coordinator_id)
        answer = httpx.post(proxy.url + status, content=body, headers=signed)
        assert answer.status_code == 400
        assert expected in answer.json()["detail"]
    forged = signed_headers(identity, "POST", status, b"{}", coordinator_id)
    answer = httpx.post(proxy.url + status, content=b'{"state": "done"}', headers=forged)
    assert answer.status_code == 401  # signed for another body

    # c answers at the coordinator's address: b trusts none of its answers
    proxy.switch(c.port)
    with b.open() as kahu:
        wait_for(
            "b to refuse the impostor",
            lambda: any(
                "not signed by the coordinator" in json.dumps(e.detail)
                for e in kahu.audit.query(action="federation.refuse")
            ),
            timeout=30,
        )
    proxy.switch(a.port)

    with a.open() as kahu:
        actions.revoke_partner(kahu, CLI, "b", "study over")
    with b.open() as kahu:
        peer = wait_for(
            "b to hear of the revocation",
            lambda: not (p := kahu.peers.get(coordinator_id, "coordinator")).active and p,
            timeout=30,
        )
        assert "study over" in peer.revoked_reason
    with a.open() as kahu:
        assert kahu.audit.query(action="federation.peer.refused")
