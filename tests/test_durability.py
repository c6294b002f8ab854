"""Kill the server with SIGKILL during a C-STORE stream: everything acknowledged survives.

The sender is dcmtk's storescu; its verbose log says which file each success answers.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom

from kahu.core import Kahu
from kahu.settings import DicomSettings, Settings
from tests import synthetic
from tests.conftest import SYSTEM, dcmtk_tool, free_port, wait_for_port


def _start(home: Path, dicom_port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kahu",
            "serve",
            "--home",
            str(home),
            "--port",
            str(free_port()),
            "--dicom-port",
            str(dicom_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if wait_for_port(dicom_port):
        return proc
    proc.kill()
    proc.wait()
    raise AssertionError("server did not start")


def _storescu(port: int, folder: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            dcmtk_tool("storescu"),
            "-v",
            "-aet",
            "MODALITY",
            "-aec",
            "KAHU",
            "+sd",
            "127.0.0.1",
            str(port),
            str(folder),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_acknowledged_instances_survive_sigkill(tmp_path: Path, dcmtk: None) -> None:
    home, folder = tmp_path / "home", tmp_path / "send"
    folder.mkdir()
    pixels: dict[str, str] = {}
    for index, data in enumerate(synthetic.ct_series(250, size=128)):
        path = folder / f"{index:04d}.dcm"
        path.write_bytes(data)
        ds = pydicom.dcmread(path)
        pixels[str(path)] = hashlib.sha256(ds.PixelData).hexdigest()
    port = free_port()
    server = _start(home, port)
    sender = _storescu(port, folder)
    acknowledged: list[str] = []

    def follow() -> None:
        current = None
        assert sender.stdout is not None
        for line in sender.stdout:
            if "Sending file:" in line:
                current = line.split("Sending file:", 1)[1].strip()
            elif "Received Store Response (Success)" in line and current:
                acknowledged.append(current)

    reader = threading.Thread(target=follow)
    reader.start()
    deadline = time.monotonic() + 120
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(server.pid, signal.SIGKILL)
    server.wait(timeout=30)
    sender.wait(timeout=60)
    reader.join(timeout=60)
    assert sender.stdout is not None
    sender.stdout.close()
    assert 40 <= len(acknowledged) < 250, "the kill must land mid-stream"

    kahu = Kahu(Settings(home=home, dicom=DicomSettings(enabled=False)))
    try:
        stored = {r.sop_instance_uid: r for r in kahu.catalog.instances(SYSTEM)}
        for path in acknowledged:
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            row = stored[uid]
            stored_ds = pydicom.dcmread(kahu.store.local_path(row.blob_key))
            assert hashlib.sha256(stored_ds.PixelData).hexdigest() == pixels[path]
        [series] = kahu.catalog.list_series(SYSTEM)[0]
        assert series.instance_count == len(stored)
    finally:
        kahu.stop()

    # the restarted server takes the whole series again: the rest stored, the others duplicates
    server = _start(home, port)
    try:
        sender = _storescu(port, folder)
        out, _ = sender.communicate(timeout=300)
        assert sender.returncode == 0, out
        assert out.count("Received Store Response (Success)") == 250
    finally:
        server.terminate()
        server.wait(timeout=30)
    kahu = Kahu(Settings(home=home, dicom=DicomSettings(enabled=False)))
    try:
        assert kahu.catalog.counts(SYSTEM).instances == 250
    finally:
        kahu.stop()
