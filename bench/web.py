"""DICOMweb figures: STOW-RS with parallel clients, WADO-RS metadata of a large series."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.ingest import free_port, make_ct_series, wait_port

BOUNDARY = "kahu-bench-boundary"


def _multipart(files: list[bytes]) -> bytes:
    parts = [
        b"--" + BOUNDARY.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + f + b"\r\n"
        for f in files
    ]
    return b"".join(parts) + b"--" + BOUNDARY.encode() + b"--\r\n"


def _server(home: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    run = [sys.executable, "-m", "kahu"]
    subprocess.run(
        [*run, "users", "add", "bench", "--password-stdin", "--home", str(home)],
        input=b"bench password 1234\n",
        check=True,
        capture_output=True,
    )
    member = ["projects", "add-member", "default", "bench", "--role", "scientist"]
    subprocess.run(  # storing needs the scientist role in the project the data enters
        [*run, *member, "--home", str(home)],
        check=True,
        capture_output=True,
    )
    token = subprocess.run(
        [*run, "tokens", "create", "--user", "bench", "--home", str(home)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = free_port()
    proc = subprocess.Popen(
        [*run, "serve", "--home", str(home), "--port", str(port), "--dicom-port", str(free_port())],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}/dicomweb", token


def _stow(url: str, token: str, bodies: list[bytes], clients: int) -> float:
    """Seconds to post every body, ``clients`` requests at a time."""
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
    }
    session = requests.Session()

    def post(body: bytes) -> int:
        return session.post(f"{url}/studies", data=body, headers=headers, timeout=600).status_code

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        statuses = list(pool.map(post, bodies))
    seconds = time.perf_counter() - start
    assert set(statuses) == {200}, statuses
    return seconds


def _metadata(url: str, token: str, count: int, runs: int) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {token}"}
    session = requests.Session()
    first = session.get(f"{url}/series", headers=auth, timeout=60).json()[0]
    study, series = first["0020000D"]["Value"][0], first["0020000E"]["Value"][0]
    metadata_url = f"{url}/studies/{study}/series/{series}/metadata"
    deadline = time.monotonic() + 300  # let the background indexer finish
    timings = []
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = session.get(metadata_url, headers=auth, timeout=600)
        timings.append((time.perf_counter() - started) * 1000)
        assert len(response.json()) == count, (len(response.json()), count)
        if len(timings) >= runs + 3:
            break
    warm = sorted(timings[3:])
    return {
        "benchmark": f"WADO-RS series metadata, {count} instances",
        "system": "kahu",
        "runs": len(warm),
        "p50_ms": round(statistics.median(warm), 1),
        "p95_ms": round(warm[int(len(warm) * 0.95) - 1], 1),
        "first_ms": round(timings[0], 1),
        "bytes": len(response.content),
    }


def run(
    count: int = 1000,
    clients: int = 4,
    batch: int = 25,
    metadata_runs: int = 20,
    rounds: int = 3,
) -> list[dict[str, Any]]:
    """STOW-RS into a fresh server in each round (best and median); then WADO-RS metadata of
    the last round's series."""
    work = Path(tempfile.mkdtemp(prefix="kahu-bench-web-"))
    try:
        make_ct_series(work / "ct", count)
        files = [p.read_bytes() for p in sorted((work / "ct").iterdir())]
        bodies = [_multipart(files[i : i + batch]) for i in range(0, len(files), batch)]
        seconds: list[float] = []
        for round_ in range(rounds):
            os.sync()  # each round starts with nothing left to flush
            proc, url, token = _server(work / f"home-{round_}")
            try:
                seconds.append(_stow(url, token, bodies, clients))
                if round_ == rounds - 1:
                    metadata = _metadata(url, token, count, metadata_runs)
            finally:
                proc.terminate()
                proc.wait(timeout=60)
        best, median = min(seconds), statistics.median(seconds)
        stow = {
            "benchmark": f"STOW-RS, {clients} parallel clients, {batch} instances/request",
            "system": "kahu",
            "instances": count,
            "seconds": [round(s, 3) for s in seconds],
            "instances_per_s": round(count / best, 1),
            "median_instances_per_s": round(count / median, 1),
            "mb_per_s": round(sum(map(len, files)) / best / 1e6, 1),
        }
        return [stow, metadata]
    finally:
        shutil.rmtree(work, ignore_errors=True)
