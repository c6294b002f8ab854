"""Federation overhead: three `kahu serve` sites on loopback (the coordinator a partner of
itself too), every byte between them through a recording proxy. A no-op federated workflow:
launch to every site running (p50/p95) and launch to the aggregated result, beside the same
no-op workflow run locally at the coordinator; then sequential federated runs, counting any
whose status was lost."""

from __future__ import annotations

import statistics
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

from tests.conftest import free_port
from tests.federation.proxy import RecordingProxy
from tests.federation.sites import CLI, Site, join, seed

from kahu.actions import federation as actions
from kahu.flow.cohort import RunInput
from kahu.flow.launch import launch

NOOP = textwrap.dedent(
    """
    from kahu.flow import Output, Resources, Workflow, python_operator


    def noop(ctx):
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        (ctx.out_dir / "out.json").write_text("{}")


    WORKFLOWS = [
        Workflow(
            "bench-fed-noop", "1.0",
            (python_operator("noop", noop, per="run", resources=Resources(0.1, 64)),),
            parameters={"type": "object", "properties": {}},
            outputs=(Output("out", "noop", "out.json", "json", 100),),
            aggregate="bench-fed-total",
        ),
        Workflow(
            "bench-fed-total", "1.0",
            (python_operator("noop", noop, per="run", resources=Resources(0.1, 64)),),
            parameters={"type": "object", "properties": {"federated_run": {"type": "string"}}},
        ),
    ]
    """
)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _row(name: str, values: list[float]) -> dict[str, Any]:
    return {
        "measure": name,
        "runs": len(values),
        "p50_s": round(_pct(values, 0.5), 3),
        "p95_s": round(_pct(values, 0.95), 3),
        "mean_s": round(statistics.fmean(values), 3),
    }


def run(runs: int = 20, sequential: int = 100) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        sites = [Site(n, Path(tmp) / n, free_port()) for n in "abc"]
        for site in sites:
            (site.home / "workflows").mkdir(parents=True)
            (site.home / "workflows" / "bench_fed.py").write_text(NOOP)
            seed(site, 1)
            site.start()
        a = sites[0]
        proxy = RecordingProxy(a.port)
        try:
            for site in sites:
                join(a, site, proxy)
                with site.open() as kahu:
                    actions.allow(
                        kahu,
                        CLI,
                        "hub",
                        "bench-fed-noop",
                        datasets=[f"{site.name}-cohort"],
                        changes={"mode": "auto", "runs_per_day": 10 * (runs + sequential)},
                    )
            return _measure(a, sites, runs, sequential)
        finally:
            proxy.close()
            for site in sites:
                site.stop()


def _measure(a: Site, sites: list[Site], runs: int, sequential: int) -> list[dict[str, Any]]:
    parts = [(s.name, f"{s.name}-cohort") for s in sites]
    running, done, local = [], [], []
    with a.open() as kahu:

        def federated() -> tuple[float, float, str]:
            start = time.monotonic()
            run_id = actions.launch(kahu, CLI, "bench-fed-noop", parts, {}).result["id"]
            all_running = 0.0
            while time.monotonic() - start < 120:
                status = kahu.fed_runs.status(run_id)
                if not all_running and all(
                    s["state"] in ("running", "done") for s in status["sites"]
                ):
                    all_running = time.monotonic() - start
                if status["state"] in ("done", "failed"):
                    return all_running, time.monotonic() - start, status["state"]
                time.sleep(0.01)
            return all_running, time.monotonic() - start, "timeout"

        for _ in range(runs):
            up, end, state = federated()
            if state == "done":
                running.append(up)
                done.append(end)
        for _ in range(runs):
            start = time.monotonic()
            (run_id,) = launch(
                kahu.catalog,
                kahu.workflows,
                kahu.flow,
                "bench-fed-noop",
                {},
                RunInput(dataset="a-cohort"),
                trigger="cli",
                created_by="cli",
                audit=kahu.audit,
            )
            while kahu.runs.run(run_id, with_series=False).state not in (
                "succeeded",
                "failed",
                "cancelled",
            ):
                time.sleep(0.01)
            local.append(time.monotonic() - start)
        start = time.monotonic()
        outcomes = [federated()[2] for _ in range(sequential)]
        elapsed = time.monotonic() - start
    rows = [
        _row("federated: launch to all 3 sites running", running),
        _row("federated: launch to aggregated result", done),
        _row("local: the same no-op workflow, launch to done", local),
    ]
    rows.append(
        {
            "measure": f"{sequential} sequential federated runs",
            "runs": sequential,
            "done": outcomes.count("done"),
            "lost_or_failed": sequential - outcomes.count("done"),
            "runs_per_s": round(sequential / elapsed, 2),
        }
    )
    return rows
