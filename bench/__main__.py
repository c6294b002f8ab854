"""Run the benchmarks, print a table, write JSON and markdown under bench/results/."""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from bench import ingest

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description="Kahu benchmarks")
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = ingest.run(args.instances, args.rounds)
    RESULTS.mkdir(exist_ok=True)
    meta = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": platform.platform(),
        "python": platform.python_version(),
    }
    (RESULTS / "ingest.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    header = "| benchmark | system | instances/s | MB/s | ratio to bare | runs (s) |"
    lines = [header, "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['benchmark']} | {r['system']} | {r['instances_per_s']} | "
            f"{r['mb_per_s']} | {r.get('ratio_to_bare', '')} | {r['seconds']} |"
        )
    table = "\n".join(lines)
    (RESULTS / "ingest.md").write_text(f"Measured {meta['when']} on {meta['machine']}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
