"""C-STORE ingest rate: Kahu (indexed, fsync'ed) vs the bare pynetdicom SCP, fed by storescu."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


def make_ct_series(folder: Path, count: int, size: int = 512) -> int:
    """``count`` 512x512 16-bit CT slices (~525 kB each) with a real scanner's header.

    The header is pydicom's CT_small (GE, ~100 attributes), so parsing and indexing cost what
    they cost with real data; UIDs, positions and pixels are new. Returns the total bytes.
    """
    folder.mkdir(parents=True, exist_ok=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    study, series = generate_uid(), generate_uid()
    rng = np.random.default_rng(1)
    total = 0
    for index in range(count):
        ds = template.copy()
        ds.file_meta = FileMetaDataset(template.file_meta)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName = "BENCH", "Bench^Patient"
        ds.InstanceNumber = index + 1
        ds.ImagePositionPatient = [0, 0, float(index)]
        ds.SliceLocation = float(index)
        ds.Rows = ds.Columns = size
        ds.PixelData = rng.integers(0, 4000, (size, size), dtype=np.uint16).tobytes()
        path = folder / f"{index:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        total += path.stat().st_size
    return total


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


def _storescu(port: int, aet: str, folders: list[Path]) -> float:
    """Send every folder over its own association, all at once; seconds until all are done."""
    start = time.perf_counter()
    senders = [
        subprocess.Popen(
            ["storescu", "-aec", aet, "+sd", "127.0.0.1", str(port), str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for folder in folders
    ]
    codes = [sender.wait(timeout=1800) for sender in senders]
    if any(codes):
        raise RuntimeError(f"storescu failed: exit codes {codes}")
    return time.perf_counter() - start


def _run_server(argv: list[str], port: int, folders: list[Path], aet: str) -> float:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        return _storescu(port, aet, folders)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        # The bare SCP leaves ~0.5 GB of dirty pages; flushed later, they would slow whichever
        # run comes next (and the fsyncs of Kahu most of all). Every run starts clean.
        os.sync()


def _split(folder: Path, parts: int) -> list[Path]:
    """The folder's files spread over ``parts`` sibling folders (hard links, no copies)."""
    if parts == 1:
        return [folder]
    folders = [folder.with_name(f"{folder.name}-{parts}-{i}") for i in range(parts)]
    for target in folders:
        target.mkdir(exist_ok=True)
    for index, path in enumerate(sorted(folder.iterdir())):
        os.link(path, folders[index % parts] / path.name)
    return folders


BARE, BARE_FSYNC, KAHU = "bare pynetdicom SCP", "bare SCP + fsync", "kahu"


def _command(system: str, port: int, home: Path) -> tuple[list[str], str]:
    if system == KAHU:
        http = str(free_port())
        argv = ["-m", "kahu", "serve", "--home", str(home), "--dicom-port", str(port)]
        return [sys.executable, *argv, "--port", http], "KAHU"
    argv = [sys.executable, "-m", "bench.bare_scp", str(port), str(home)]
    return [*argv, "--fsync"] if system == BARE_FSYNC else argv, "BARE"


def run(
    count: int = 1000, rounds: int = 3, associations: tuple[int, ...] = (1, 4)
) -> list[dict[str, Any]]:
    """Each round runs every system on every association count, interleaved."""
    work = Path(tempfile.mkdtemp(prefix="kahu-bench-"))
    try:
        folder = work / "ct"
        total = make_ct_series(folder, count)
        splits = {n: _split(folder, n) for n in associations}
        os.sync()  # flush the generated files now, not during the first measured round
        results: dict[tuple[int, str], list[float]] = {}
        for round_ in range(rounds):
            for n in associations:
                for system in (BARE, BARE_FSYNC, KAHU):
                    port = free_port()
                    argv, aet = _command(system, port, work / f"out-{round_}-{n}-{len(results)}")
                    seconds = _run_server(argv, port, splits[n], aet)
                    results.setdefault((n, system), []).append(seconds)
        rows = []
        for (n, system), seconds in results.items():
            best, median = min(seconds), statistics.median(seconds)
            rows.append(
                {
                    "benchmark": f"C-STORE ingest (storescu, {n} association{'s' * (n > 1)})",
                    "system": system,
                    "instances": count,
                    "seconds": [round(s, 3) for s in seconds],
                    "instances_per_s": round(count / best, 1),
                    "median_instances_per_s": round(count / median, 1),
                    "mb_per_s": round(total / best / 1e6, 1),
                }
            )
        bare = {r["benchmark"]: r for r in rows if r["system"] == BARE}
        for row in rows:
            if row["system"] != BARE:
                ref = bare[row["benchmark"]]
                row["ratio_to_bare"] = round(row["instances_per_s"] / ref["instances_per_s"], 2)
                row["median_ratio_to_bare"] = round(
                    row["median_instances_per_s"] / ref["median_instances_per_s"], 2
                )
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
