"""The federation page in Chromium: the site's identity, inviting a partner (the token shown
once), work waiting for approval with what would leave, refusing it with a reason, and the
egress ledger with its chain check."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

from kahu.federation.egress import Release
from kahu.federation.identity import load_identity
from kahu.federation.policy import Pin, Policy
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
