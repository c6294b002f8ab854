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


def _storescu(port: int, aet: str, folder: Path) -> float:
    start = time.perf_counter()
    subprocess.run(
        ["storescu", "-aec", aet, "+sd", "127.0.0.1", str(port), str(folder)],
        check=True,
        capture_output=True,
        timeout=1800,
    )
    return time.perf_counter() - start


def _run_server(argv: list[str], port: int, folder: Path, aet: str) -> float:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        return _storescu(port, aet, folder)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def run(count: int = 1000, rounds: int = 2) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="kahu-bench-"))
    try:
        folder = work / "ct"
        total = make_ct_series(folder, count)
        os.sync()  # flush the generated files now, not during the first measured round
        results: dict[str, list[float]] = {"bare pynetdicom SCP": [], "kahu": []}
        for round_ in range(rounds):
            port = free_port()
            results["bare pynetdicom SCP"].append(
                _run_server(
                    [
                        sys.executable,
                        "-m",
                        "bench.bare_scp",
                        str(port),
                        str(work / f"bare{round_}"),
                    ],
                    port,
                    folder,
                    "BARE",
                )
            )
            port, http = free_port(), free_port()
            results["kahu"].append(
                _run_server(
                    [
                        sys.executable,
                        "-m",
                        "kahu",
                        "serve",
                        "--home",
                        str(work / f"home{round_}"),
                        "--dicom-port",
                        str(port),
                        "--port",
                        str(http),
                    ],
                    port,
                    folder,
                    "KAHU",
                )
            )
        rows = []
        for name, seconds in results.items():
            best, median = min(seconds), statistics.median(seconds)
            rows.append(
                {
                    "benchmark": "C-STORE ingest (storescu, 1 association)",
                    "system": name,
                    "instances": count,
                    "seconds": [round(s, 3) for s in seconds],
                    "instances_per_s": round(count / best, 1),
                    "median_instances_per_s": round(count / median, 1),
                    "mb_per_s": round(total / best / 1e6, 1),
                }
            )
        kahu, bare = rows[1], rows[0]
        kahu["ratio_to_bare"] = round(kahu["instances_per_s"] / bare["instances_per_s"], 2)
        kahu["median_ratio_to_bare"] = round(
            kahu["median_instances_per_s"] / bare["median_instances_per_s"], 2
        )
        return rows
    finally:
        shutil.rmtree(work, ignore_errors=True)
