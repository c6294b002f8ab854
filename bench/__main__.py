"""Run the benchmarks, print tables, write JSON and markdown under bench/results/."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from bench import authz, federation, flow, ingest, models, search, ui, web

RESULTS = Path(__file__).parent / "results"


def _table(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Kahu benchmarks (make bench)")
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", choices=["ingest", "web", "search", "flow", "authz", "ui", "federation", "models"]
    )
    parser.add_argument(
        "--series", type=int, default=0, help="search: load only this many series (0: all)"
    )
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="search: catalog backends to measure"
    )
    parser.add_argument(
        "--flow-series", type=int, default=1000, help="flow: series of the no-op workflow"
    )
    parser.add_argument(
        "--federated-runs", type=int, default=100, help="federation: sequential runs"
    )
    args = parser.parse_args()
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.platform(),
        "python": platform.python_version(),
    }
    RESULTS.mkdir(exist_ok=True)
    suites = {
        "ingest": lambda: ingest.run(args.instances, args.rounds),
        "web": lambda: web.run(min(args.instances, 500), rounds=args.rounds),
        "search": lambda: search.run(
            limit=args.series or None, backends=tuple(args.backends.split(","))
        ),
        "flow": lambda: flow.run(args.flow_series),
        "ui": lambda: ui.run(args.series or 100_000),
        "authz": lambda: authz.run(
            limit=args.series or None, backends=tuple(args.backends.split(","))
        ),
        "federation": lambda: federation.run(runs=20, sequential=args.federated_runs),
        "models": lambda: models.run(rounds=args.rounds),
    }
    for name, suite in suites.items():
        if args.only and args.only != name:
            continue
        rows = suite()
        table = _table(rows)
        (RESULTS / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
        (RESULTS / f"{name}.md").write_text(
            f"Measured {meta['when']} on {meta['machine']}\n\n{table}\n"
        )
        print(f"\n## {name}\n\n{table}")


if __name__ == "__main__":
    main()
