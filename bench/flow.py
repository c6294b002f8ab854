"""Workflow engine overhead: a no-op per-series Python operator over N series, end to end
from the API call to the last task done, with the local executor and on a local Ray cluster;
and the built-in thumbnail workflow over the same N CT series (series per second).

Each task still runs in its own process (forked from the preloaded fork server, or on a Ray
worker), so the figure is what the engine adds to real work: claiming, admission, process
start, outcome recording, one durable transaction per scheduling pass.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from bench.flow_ops import NOOP
from kahu.app import create_app
from kahu.core import Kahu
from kahu.settings import DicomSettings, FlowSettings, Settings

ROOT = Path(__file__).resolve().parents[1]


def _series_files(count: int) -> list[bytes]:
    """``count`` one-instance CT series: pydicom's CT_small header and pixels tiled to a
    clinical 512x512 slice, new UIDs."""
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    template.PixelData = np.tile(template.pixel_array, (4, 4)).tobytes()
    template.Rows = template.Columns = 512
    out = []
    for index in range(count):
        ds = template.copy()
        ds.file_meta = FileMetaDataset(template.file_meta)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.PatientID = f"BENCH{index:05d}"
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out.append(buffer.getvalue())
    return out


def _measure(
    executor: str, files: list[bytes], cpus: int, workflow: str = "bench-noop"
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            home=Path(tmp) / "home",
            dicom=DicomSettings(enabled=False, series_quiet_seconds=0.1),
            flow=FlowSettings(
                executor=executor,  # type: ignore[arg-type]
                cpus=cpus,
                min_free_disk_mb=0,
                thumbnails_on_arrival=False,
            ),
        )
        kahu = Kahu(settings)
        kahu.workflows.add(NOOP)
        for start in range(0, len(files), 200):
            kahu.ingestor.ingest_many(files[start : start + 200])
        kahu.accounts.ensure_admin(settings.admin_password_file)
        token, _ = kahu.accounts.create_token("admin")
        headers = {"Authorization": f"Bearer {token}"}
        with TestClient(create_app(settings, kahu)) as client:
            # the ingest's own follow-up work (series completion, metadata cache) is done
            # before the clock starts
            while kahu.completion.pending():
                time.sleep(0.05)
            kahu.metadata.idle(timeout=120)
            engine_thread = kahu.flow.thread_id()
            cpu_before = _thread_cpu_s(engine_thread)
            server_before = time.process_time()
            begin = time.perf_counter()
            response = client.post(
                "/api/v1/runs",
                json={"workflow": workflow, "query": "Modality:CT"},
                headers=headers,
            )
            response.raise_for_status()
            run_id = response.json()["runs"][0]["id"]
            while True:
                run = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
                if run["state"] in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(0.25)  # a browser polls every second or so
            wall = time.perf_counter() - begin
            engine_cpu = _thread_cpu_s(engine_thread) - cpu_before
            server_cpu = time.process_time() - server_before
            if run["state"] != "succeeded":
                failed = [t for t in kahu.flow.runs.tasks(run_id) if t.state != "succeeded"]
                print(f"{len(failed)} tasks did not succeed, e.g. {failed[:3]}", file=sys.stderr)
        kahu.stop()
    tasks = run["progress"]["total"]
    return {
        "workflow": workflow,
        "executor": executor,
        "series": len(files),
        "state": run["state"],
        "end to end s": round(wall, 2),
        "tasks/s": round(tasks / wall, 1),
        # the operator does nothing: the wall time per task is what running a task costs
        "wall ms/task": round(wall / tasks * 1000, 2),
        # the scheduler's own work (the engine thread's CPU time) per task
        "scheduler ms/task": round(engine_cpu / tasks * 1000, 2),
        # every thread of the server process (engine, executor, API, the polling client)
        "server CPU ms/task": round(server_cpu / tasks * 1000, 2),
        "target": (
            "< 20 s, < 20 ms/task"
            if executor == "local" and workflow == "bench-noop"
            else "(reported)"
        ),
    }


def _thread_cpu_s(native_id: int) -> float:
    """CPU time (user + system) of one thread of this process."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(series: int = 1000) -> list[dict[str, Any]]:
    cpus = os.cpu_count() or 1
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    files = _series_files(series)
    rows = [_measure("local", files, cpus)]
    print(rows[-1], file=sys.stderr)
    # the built-in thumbnail workflow: an internal operator rendering each series' middle
    # image (tasks/s is series/s)
    rows.append(_measure("local", files, cpus, "series-thumbnails"))
    print(rows[-1], file=sys.stderr)
    import ray

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    try:
        rows.append(_measure("ray", files, cpus))
    finally:
        ray.shutdown()
    return rows
