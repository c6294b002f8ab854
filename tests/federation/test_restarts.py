"""Runs that do not go as planned: kill -9 of a partner mid-run and of the coordinator
mid-aggregation (the run still ends, each output is released once and arrives, nothing
acknowledged is lost); a run the coordinator cancels (the partner stops, nothing leaves); an
output the coordinator keeps refusing (the partner gives up and says why)."""

from __future__ import annotations

import json
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from kahu.actions import federation as actions
from kahu.core import Kahu
from kahu.errors import Conflict
from kahu.federation.tables import FedSiteRun
from tests.conftest import free_port
from tests.federation.proxy import RecordingProxy
from tests.federation.sites import CLI, Site, join, seed, wait_for

SLOW = textwrap.dedent(
    """
    import json
    import time

    from kahu.flow import Output, Resources, Workflow, python_operator


    def count(ctx):
        time.sleep(3)
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        (ctx.out_dir / "n.json").write_text(json.dumps({"series": len(ctx.series)}))


    def total(ctx):
        time.sleep(3)
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        (ctx.out_dir / "total.json").write_text(json.dumps({"run": ctx.params["federated_run"]}))


    WORKFLOWS = [
        Workflow(
            "slow-count", "1.0",
            (python_operator("count", count, per="run", resources=Resources(0.5, 128)),),
            parameters={"type": "object", "properties": {}},
            outputs=(Output("n", "count", "n.json", "json", 1000),),
            aggregate="slow-total",
        ),
        Workflow(
            "slow-total", "1.0",
            (python_operator("total", total, per="run", resources=Resources(0.5, 128)),),
            parameters={"type": "object", "properties": {"federated_run": {"type": "string"}}},
        ),
    ]
    """
)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Site, Site, RecordingProxy]]:
    a, b = (Site(n, tmp_path / n, free_port()) for n in "ab")
    for site in (a, b):
        (site.home / "workflows").mkdir(parents=True)
        (site.home / "workflows" / "slow.py").write_text(SLOW)
        seed(site, 1)
        site.start()
    proxy = RecordingProxy(a.port)
    try:
        yield a, b, proxy
    finally:
        proxy.close()
        for site in (a, b):
            site.stop()


def _kill(site: Site) -> None:
    assert site.process is not None
    site.process.send_signal(signal.SIGKILL)
    site.process.wait(timeout=30)


def test_sigkill_of_a_partner_and_of_the_coordinator(
    pair: tuple[Site, Site, RecordingProxy],
) -> None:
    a, b, proxy = pair
    join(a, b, proxy)
    with b.open() as kahu:
        actions.allow(
            kahu, CLI, "hub", "slow-count", datasets=["b-cohort"], changes={"mode": "auto"}
        )
    with a.open() as kahu:
        run_id = actions.launch(kahu, CLI, "slow-count", [("b", "b-cohort")], {}).result["id"]

        def state() -> tuple[str, str]:
            status = kahu.fed_runs.status(run_id)
            return status["state"], status["sites"][0]["state"]

        wait_for("b to run", lambda: state()[1] == "running")
        _kill(b)  # mid-run: its task dies with it
        time.sleep(0.5)
        b.start()
        wait_for("the aggregation to start", lambda: state()[0] == "aggregating", timeout=120)
        _kill(a)  # mid-aggregation
        a.start()
        wait_for("the run to end", lambda: state()[0] in ("done", "failed"), timeout=120)
        final = kahu.fed_runs.status(run_id)
    assert final["state"] == "done", final
    [output] = final["sites"][0]["outputs"]
    with b.open() as kahu:
        [entry] = kahu.ledger.entries()  # released once, though b died before reporting
        assert kahu.ledger.verify() == (1, "")
    assert entry["delivered"] is True
    assert (entry["bytes"], entry["sha256"]) == (output["bytes"], output["sha256"])
    with a.open() as kahu:
        assert kahu.runs.run(final["aggregate_run"]).state == "succeeded"
        stored = kahu.objects.of_project("default").open("federation", output["key"]).read()
    assert json.loads(stored) == {"series": 1}


def test_a_cancelled_run_stops_at_the_partner(pair: tuple[Site, Site, RecordingProxy]) -> None:
    a, b, proxy = pair
    join(a, b, proxy)
    with b.open() as kahu:
        actions.allow(
            kahu, CLI, "hub", "slow-count", datasets=["b-cohort"], changes={"mode": "auto"}
        )
    with a.open() as kahu:
        run_id = actions.launch(kahu, CLI, "slow-count", [("b", "b-cohort")], {}).result["id"]
        wait_for("b to run", lambda: kahu.fed_runs.status(run_id)["sites"][0]["state"] == "running")
        actions.cancel_run(kahu, CLI, run_id, "wrong cohort")
        status = kahu.fed_runs.status(run_id)
        assert (status["state"], status["error"]) == ("cancelled", "wrong cohort")
        assert status["sites"][0]["state"] == "cancelled"
        with pytest.raises(Conflict, match="nothing to cancel"):
            actions.cancel_run(kahu, CLI, run_id, "again")
        assert kahu.audit.query(action="federation.cancel")
    with b.open() as kahu:
        job = wait_for("b to stop", lambda: kahu.agent.jobs("cancelled"))[0]
        assert job["reason"] == "cancelled by the coordinator: wrong cohort"
        wait_for("b's run to stop", lambda: kahu.runs.run(job["local_run"]).state == "cancelled")
        assert kahu.audit.query(action="federation.cancelled")
        time.sleep(4)  # past the moment the cancelled task would have finished
        assert kahu.ledger.entries() == []  # nothing left b
        assert kahu.agent.job(job["id"])["state"] == "cancelled"
    with a.open() as kahu:  # b answered: it is not told again
        wait_for("b's answer", lambda: _acknowledged(kahu, run_id))
        assert kahu.fed_runs.status(run_id)["sites"][0]["outputs"] == []
    assert b'"series"' not in bytes(proxy.sent)  # b's output never crossed


def _acknowledged(kahu: Kahu, run_id: str) -> bool:
    with kahu.db.read() as s:
        return all(
            p.acknowledged
            for p in s.scalars(select(FedSiteRun).where(FedSiteRun.fed_run == run_id))
        )


def test_an_output_the_coordinator_keeps_refusing(pair: tuple[Site, Site, RecordingProxy]) -> None:
    """a's copy of the workflow takes 5 bytes of n, b's sends more: b tries a few times, then
    fails the work with the coordinator's reason; the ledger has what b sent."""
    a, b, proxy = pair
    a.stop()
    slow = a.home / "workflows" / "slow.py"
    slow.write_text(slow.read_text().replace('"json", 1000)', '"json", 5)'))
    a.start()
    join(a, b, proxy)
    with b.open() as kahu:
        actions.allow(
            kahu, CLI, "hub", "slow-count", datasets=["b-cohort"], changes={"mode": "auto"}
        )
    with a.open() as kahu:
        run_id = actions.launch(kahu, CLI, "slow-count", [("b", "b-cohort")], {}).result["id"]
        wait_for("the run to fail", lambda: kahu.fed_runs.status(run_id)["state"] == "failed", 60)
        part = kahu.fed_runs.status(run_id)["sites"][0]
    assert part["state"] == "failed"
    assert "the coordinator refuses it" in part["reason"]
    assert "5 bytes" in part["reason"]
    with b.open() as kahu:
        [job] = kahu.agent.jobs()
        assert job["state"] == "failed"
        assert "5 bytes" in job["reason"]
        [given_up] = kahu.audit.query(action="federation.given_up")
        assert given_up.status == 400
        [entry] = kahu.ledger.entries()  # what was sent (and refused) is on record
        assert entry["delivered"] is False
    assert bytes(proxy.sent).count(b"PUT /") == 5  # tried five times, then no more
