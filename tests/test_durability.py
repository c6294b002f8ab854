"""Kill the server with SIGKILL during a C-STORE stream: everything acknowledged survives."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pydicom
from pynetdicom import AE, build_context

from kahu.core import Kahu
from kahu.settings import DicomSettings, Settings
from tests import synthetic
from tests.conftest import free_port


def _start(home: Path, dicom_port: int, http_port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kahu",
            "serve",
            "--home",
            str(home),
            "--port",
            str(http_port),
            "--dicom-port",
            str(dicom_port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", dicom_port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("server did not start: " + proc.stdout.read().decode())  # type: ignore[union-attr]


def test_acknowledged_instances_survive_sigkill(tmp_path: Path) -> None:
    home = tmp_path / "home"
    dicom_port, http_port = free_port(), free_port()
    files = synthetic.ct_series(250, size=128)
    datasets = [pydicom.dcmread(io.BytesIO(f)) for f in files]
    pixels = {str(d.SOPInstanceUID): hashlib.sha256(d.PixelData).hexdigest() for d in datasets}
    proc = _start(home, dicom_port, http_port)
    acknowledged: list[str] = []

    def stream() -> None:
        ae = AE(ae_title="MODALITY")
        ae.network_timeout = 5
        assoc = ae.associate("127.0.0.1", dicom_port, contexts=[build_context(synthetic.CT_IMAGE)])
        if not assoc.is_established:
            return
        for ds in datasets:
            try:
                status = assoc.send_c_store(ds)
            except Exception:
                return
            if not status or int(getattr(status, "Status", -1)) != 0:
                return
            acknowledged.append(str(ds.SOPInstanceUID))
        assoc.release()

    sender = threading.Thread(target=stream)
    sender.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()  # type: ignore[union-attr]
    sender.join(timeout=60)
    assert 40 <= len(acknowledged) < len(files), "the kill must land mid-stream"

    kahu = Kahu(Settings(home=home, dicom=DicomSettings(enabled=False)))
    try:
        for uid in acknowledged:
            [row] = kahu.catalog.instances(sop_uid=uid)
            stored_ds = pydicom.dcmread(kahu.store.local_path(row.blob_key))
            assert str(stored_ds.SOPInstanceUID) == uid
            assert hashlib.sha256(stored_ds.PixelData).hexdigest() == pixels[uid]
        stored = {r.sop_instance_uid for r in kahu.catalog.instances()}
        assert set(acknowledged) <= stored
        [series] = kahu.catalog.list_series()[0]
        assert series.instance_count == len(stored)
    finally:
        kahu.stop()

    # and the restarted server takes the rest of the series without complaint
    proc = _start(home, dicom_port, http_port)
    try:
        ae = AE(ae_title="MODALITY")
        assoc = ae.associate("127.0.0.1", dicom_port, contexts=[build_context(synthetic.CT_IMAGE)])
        assert assoc.is_established
        statuses = {int(assoc.send_c_store(ds).Status) for ds in datasets}
        assoc.release()
        assert statuses == {0}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]
