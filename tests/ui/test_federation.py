"""The federation page in Chromium: the site's identity, inviting a partner (the token shown
once), work waiting for approval with what would leave, refusing it with a reason, the egress
ledger with its chain check, and a federated run started from the launch form and watched
until its aggregate is made."""

from __future__ import annotations

import re
import time
from pathlib import Path

from playwright.sync_api import Page, expect

from kahu.actions import Actor
from kahu.actions import federation as actions
from kahu.federation.egress import Release
from kahu.federation.identity import load_identity
from kahu.federation.policy import Pin, Policy
from tests.synthetic import ct_series
from tests.ui.conftest import PASSWORD, Site


def test_the_federation_page(page: Page, site: Site, tmp_path: Path) -> None:
    kahu = site.kahu
    kahu.accounts.create_user("root2", PASSWORD, is_admin=True)
    hub = load_identity(tmp_path / "hub", "hub", "http://127.0.0.1:9")
    peer = kahu.peers.add_coordinator("hub", hub.url, hub.public_key)
    workflow = kahu.workflows.get("cohort-statistics")
    pin = Pin(workflow.name, workflow.version, kahu.workflows.digest(workflow), ("cohort",))
    kahu.policies.put(peer.site_id, Policy(workflows=(pin,)), by="test")
    kahu.agent.receive(
        peer,
        {
            "id": "fed-x-1.abc",
            "fed_run": "fed-x-1",
            "workflow": workflow.name,
            "version": workflow.version,
            "dataset": "cohort",
            "requested_by": "dr-hub",
            "params": {},
        },
    )
    kahu.ledger.append(
        Release(
            "hub",
            peer.site_id,
            "fed-old-1",
            "r1",
            "statistics",
            "statistics",
            "json",
            b"{}",
            {},
            "auto",
        )
    )

    page.goto(site.url + "/federation")
    page.get_by_label("User name").fill("root2")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator('[data-site="id"]')).to_have_text(kahu.identity.site_id)

    page.get_by_label("Invite a partner named").fill("partner-b")
    page.get_by_role("button", name=re.compile("^Invite")).click()
    expect(page.locator(".message")).to_contain_text("kahu federation join")
    expect(page.locator(".message")).to_contain_text("kahu-join-")

    job = page.locator('[data-job="fed-x-1.abc"]')
    expect(job).to_contain_text("dr-hub")
    expect(job).to_contain_text("statistics (json, at most 262144 bytes)")
    job.get_by_label(re.compile("^Reason")).fill("not this quarter")
    job.get_by_role("button", name="Refuse").click()
    expect(page.locator(".message")).to_contain_text("not this quarter")
    assert kahu.agent.job("fed-x-1.abc")["state"] == "refused"
    assert kahu.audit.query(action="federation.refuse")

    expect(page.locator('[data-egress="1"]')).to_contain_text("fed-old-1")
    expect(page.locator('[data-ledger="chain"]')).to_contain_text("intact")
    site.shot(page, "federation")


def test_a_federated_run_from_the_launch_form(page: Page, site: Site) -> None:
    """The site coordinates and, joined to itself, works as its own partner: the form asks it,
    its admin approves, the runs table refreshes itself through running to done (the work and
    the ledger with it), and the aggregate is a run here."""
    kahu, cli = site.kahu, Actor.cli()
    series = [
        kahu.ingestor.ingest_many(ct_series(1, 8, patient_id=f"FED{i}"))[0].series_instance_uid
        for i in range(3)
    ]
    kahu.curation.create_dataset("cohort", series=series)
    token = actions.invite(kahu, cli, "self").result["token"]
    actions.join(kahu, cli, site.url, token, "hub")
    actions.allow(kahu, cli, "hub", "cohort-statistics", datasets=["cohort"])
    kahu.accounts.create_user("root3", PASSWORD, is_admin=True)

    page.goto(site.url + "/federation")
    page.get_by_label("User name").fill("root3")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.locator("#runs").get_by_role("link", name=re.compile("cohort", re.I)).first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Federated run")
    page.get_by_label("Dataset at self").fill("")
    page.get_by_role("button", name="Ask the sites").click()
    expect(page.get_by_role("alert")).to_contain_text("at least one partner")  # nothing asked
    assert kahu.fed_runs.runs() == []

    page.get_by_label("Dataset at self").fill("cohort")
    page.get_by_label(re.compile("^Give up")).fill("200")  # over a week
    page.get_by_role("button", name="Ask the sites").click()
    expect(page.get_by_role("alert")).to_contain_text("at most 604800")
    expect(page.get_by_label("Dataset at self")).to_have_value("cohort")  # the form keeps it
    page.get_by_label(re.compile("^Give up")).fill("0.5")
    page.get_by_role("button", name="Ask the sites").click()
    expect(page.locator(".message")).to_contain_text("asked of 1 sites")
    (run,) = kahu.fed_runs.runs()
    row = page.locator(f'[data-fedrun="{run["id"]}"]')
    # no reload: the table refreshes itself while the run is running
    # the run waits for this site's own approval (the policy's default); the table shows it
    expect(row.locator('[data-site-state="self"]')).to_contain_text("waiting_approval")
    page.reload()
    page.locator("[data-job]").get_by_role("button", name="Approve").click()
    expect(page.locator(".message")).to_contain_text("pproved")
    expect(row.locator("[data-state]")).to_have_text("done", timeout=60_000)
    expect(row.locator('[data-site-state="self"]')).to_contain_text("done")
    expect(row.locator('[data-site-state="self"]')).to_contain_text("sent statistics")
    # the work and the ledger below refresh with it: what this site released is there
    expect(page.locator("#fedjobs")).to_contain_text("done")
    expect(page.locator('[data-egress="1"]')).to_contain_text(run["id"])
    expect(page.locator('[data-ledger="chain"]')).to_contain_text("1 entries")
    aggregate = kahu.fed_runs.status(run["id"])["aggregate_run"]
    expect(row.get_by_role("link", name=aggregate)).to_be_visible()
    assert kahu.audit.query(action="federation.launch", actor="root3")

    # a second run waits for approval here; the coordinator cancels it from its row
    second = actions.launch(kahu, cli, "cohort-statistics", [("self", "cohort")], {})
    second_id = second.result["id"]
    job_id = f"{second_id}.{kahu.identity.site_id[:12]}"
    page.reload()
    expect(page.locator(f'[data-fedrun="{second_id}"]')).to_contain_text("waiting_approval")
    page.reload()
    expect(page.locator(f'[data-job="{job_id}"]')).to_be_visible()
    row = page.locator(f'[data-fedrun="{second_id}"]')
    row.get_by_role("button", name="Cancel").click()
    expect(page.locator(".message")).to_contain_text("cancelled")
    expect(page.locator(f'[data-fedrun="{second_id}"] [data-state]')).to_contain_text("cancelled")
    # this site, as the partner, hears it on its poll: the work waits no more
    deadline = time.monotonic() + 30
    while kahu.agent.job(job_id)["state"] != "cancelled" and time.monotonic() < deadline:
        time.sleep(0.1)
    page.reload()
    expect(page.locator(f'[data-job="{job_id}"]')).to_have_count(0)
    expect(page.locator("#fedjobs")).to_contain_text("cancelled by the coordinator")
    site.shot(page, "federation-run")
