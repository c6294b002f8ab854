"""AI models through Kahu against the bare tools, side by side on the same input:

- deepbet brain extraction: Kahu's ``brain-extraction`` workflow from the MR series in the
  catalog to SEG and SR in the catalog, against ``deepbet-cli`` on the same volume as NIfTI;
- nnU-Net v2 inference: Kahu's ``nnunet-inference`` from CT series in the catalog to SEGs in
  the catalog, against ``nnUNetv2_predict_from_modelfolder`` on the same volumes, with the
  same model (trained here first, a tiny configuration on synthetic data);
- a MONAI bundle: Kahu's ``monai-bundle`` from the MR series (nilearn's MNI152 T1 at 1 mm) to
  a SEG in the catalog, against ``monai.bundle.run`` on the same volume, with the same bundle
  (the suite's: MONAI's inference layout, resampling to 2 mm, sliding windows, inversion).

Peak memory is the largest sum of the resident sets of the processes each side started
(Kahu's task processes; the tool's process tree), sampled every 20 ms.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kahu.core import Kahu
from kahu.flow.cohort import RunInput
from kahu.flow.launch import launch
from kahu.settings import DicomSettings, FlowSettings, Settings

BIN = Path(sys.executable).parent


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid]
        found += children
        frontier += children
    return found


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@contextmanager
def peak_memory() -> Iterator[dict[str, float]]:
    """The peak summed RSS (MB) of this process's descendants while the block runs."""
    result = {"peak_mb": 0.0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            total = sum(_rss_mb(p) for p in _descendants(os.getpid()))
            result["peak_mb"] = max(result["peak_mb"], total)
            stop.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()


def _timed(work: Callable[[], None]) -> tuple[float, float]:
    with peak_memory() as memory:
        start = time.perf_counter()
        work()
        seconds = time.perf_counter() - start
    return seconds, memory["peak_mb"]


def _kahu(home: Path) -> Kahu:
    settings = Settings(
        home=home,
        fsync=False,
        dicom=DicomSettings(enabled=False),
        flow=FlowSettings(poll_seconds=0.2, min_free_disk_mb=0, thumbnails_on_arrival=False),
    )
    kahu = Kahu(settings)
    kahu.start()
    return kahu


def _run(kahu: Kahu, workflow: str, series: list[str], params: dict[str, Any]) -> None:
    [run_id] = launch(
        kahu.catalog, kahu.workflows, kahu.flow, workflow, params, RunInput(series_uids=series),
        audit=kahu.audit, path="bench",
    )  # fmt: skip
    state = kahu.flow.wait_idle(run_id, 3600)
    if state != "succeeded":
        errors = [(t.operator, t.error) for t in kahu.runs.tasks(run_id) if t.error]
        raise RuntimeError(f"{workflow}: {state} {errors}")


def _row(
    name: str, system: str, seconds: list[float], peak: float, base: float | None
) -> dict[str, Any]:
    median = float(np.median(seconds))
    row: dict[str, Any] = {"benchmark": name, "system": system, "median_s": round(median, 2),
                           "runs": len(seconds), "peak_mb": round(peak)}  # fmt: skip
    if base:
        row["ratio_to_bare"] = round(median / base, 2)
    return row


def deepbet(rounds: int) -> list[dict[str, Any]]:
    import SimpleITK as sitk
    from nilearn.datasets import load_mni152_template
    from tests.synthetic import series_from_volume

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        load_mni152_template(resolution=1).to_filename(root / "t1.nii.gz")
        image = sitk.ReadImage(str(root / "t1.nii.gz"))
        files = series_from_volume(image, patient_id="MNI152")
        # the bare tool reads the very volume Kahu converts from the series
        kahu = _kahu(root / "home")
        try:
            [mr] = {r.series_instance_uid for r in kahu.ingestor.ingest_many(files)}
            assert mr is not None
            bare, kahu_s, peaks = [], [], {"bare": 0.0, "kahu": 0.0}
            for index in range(rounds):
                out = root / f"bare{index}"
                out.mkdir()
                command = [str(BIN / "deepbet-cli"), "-i", str(root / "t1.nii.gz"),
                           "-o", str(out / "brain.nii.gz"), "-m", str(out / "mask.nii.gz"),
                           "-g"]  # fmt: skip
                seconds, peak = _timed(lambda c=command: _quiet(c))
                bare.append(seconds)
                peaks["bare"] = max(peaks["bare"], peak)
                seconds, peak = _timed(lambda: _run(kahu, "brain-extraction", [mr], {}))
                kahu_s.append(seconds)
                peaks["kahu"] = max(peaks["kahu"], peak)
        finally:
            kahu.stop()
    base = float(np.median(bare))
    rows.append(_row("deepbet, MNI152 1 mm", "deepbet-cli (NIfTI)", bare, peaks["bare"], None))
    rows.append(
        _row("deepbet, MNI152 1 mm", "kahu (DICOM -> SEG + SR)", kahu_s, peaks["kahu"], base)
    )
    return rows


def _quiet(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=3600)


def nnunet(cases: tuple[int, ...], rounds: int) -> list[dict[str, Any]]:
    import SimpleITK as sitk
    from tests.flow.test_nnunet import _case, _seg, _store

    rng = np.random.default_rng(11)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        kahu = _kahu(root / "home")
        try:
            segs = []
            for index in range(7):
                image, labels = _case(rng)
                _, ct = _store(kahu, image, f"TRAIN{index}")
                segs.append(_seg(kahu, ct, labels, {1: "ball", 2: "box"}))
            params = {"model_name": "spheres", "version": "1", "epochs": 16,
                      "iterations_per_epoch": 20, "max_features": 64}  # fmt: skip
            _run(kahu, "nnunet-training", segs, params)
            model = kahu.models.get("spheres", "1")
            for count in cases:
                inputs, series = root / f"inputs{count}", []
                inputs.mkdir()
                for index in range(count):
                    image, _ = _case(rng)
                    uid, _ = _store(kahu, image, f"TEST{count}-{index}")
                    series.append(uid)
                    sitk.WriteImage(image, str(inputs / f"case_{index:03d}_0000.nii.gz"))
                rows += _nnunet_pair(kahu, model.path, inputs, series, rounds, root)
        finally:
            kahu.stop()
    return rows


def _nnunet_pair(
    kahu: Kahu, model: Path, inputs: Path, series: list[str], rounds: int, root: Path
) -> list[dict[str, Any]]:
    bare, kahu_s, peaks = [], [], {"bare": 0.0, "kahu": 0.0}
    params = {"model": "spheres"}
    for index in range(rounds):
        out = root / f"{inputs.name}-bare{index}"
        command = [str(BIN / "nnUNetv2_predict_from_modelfolder"), "-i", str(inputs),
                   "-o", str(out), "-m", str(model), "-f", "0", "-device", "cpu",
                   "-npp", "1", "-nps", "1", "--disable_progress_bar"]  # fmt: skip
        seconds, peak = _timed(lambda c=command: _quiet(c))  # type: ignore[misc]
        bare.append(seconds)
        peaks["bare"] = max(peaks["bare"], peak)
        seconds, peak = _timed(lambda: _run(kahu, "nnunet-inference", series, params))
        kahu_s.append(seconds)
        peaks["kahu"] = max(peaks["kahu"], peak)
    base = float(np.median(bare))
    name = f"nnU-Net inference, {len(series)} CT 32^3"
    return [
        _row(name, "nnUNetv2_predict_from_modelfolder", bare, peaks["bare"], None),
        _row(name, "kahu (DICOM -> SEG)", kahu_s, peaks["kahu"], base),
    ]


def bundle(rounds: int, resolution: int = 1) -> list[dict[str, Any]]:
    import json

    import SimpleITK as sitk
    from nilearn.datasets import load_mni152_template
    from tests.flow.test_monai_bundle import DIRECT, _bundle
    from tests.synthetic import series_from_volume

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        load_mni152_template(resolution=resolution).to_filename(root / "t1.nii.gz")
        files = series_from_volume(sitk.ReadImage(str(root / "t1.nii.gz")), patient_id="MNI152")
        kahu = _kahu(root / "home")
        try:
            model = kahu.models.install(_bundle(root / "bundles"))
            [mr] = {r.series_instance_uid for r in kahu.ingestor.ingest_many(files)}
            assert mr is not None
            # the bare run reads the very volume Kahu converts from the series
            from kahu.catalog.scope import SeriesScope
            from kahu.operators.volumes import convert_series

            scope = SeriesScope.system("bench")
            paths = [Path(str(kahu.store.local_path(i.blob_key)))
                     for i in kahu.catalog.instances(scope, series_uid=mr)]  # fmt: skip
            volume = convert_series(paths, root / "data", "t1")
            bare, kahu_s, peaks = [], [], {"bare": 0.0, "kahu": 0.0}
            for index in range(rounds):
                args = {"config_file": str(model.path / "configs" / "inference.json"),
                        "meta_file": str(model.path / "configs" / "metadata.json"),
                        "bundle_root": str(model.path), "dataset_dir": str(volume.parent),
                        "output_dir": str(root / f"bare{index}")}  # fmt: skip
                command = [sys.executable, "-c", DIRECT, json.dumps(args)]
                seconds, peak = _timed(lambda c=command: _quiet(c))  # type: ignore[misc]
                bare.append(seconds)
                peaks["bare"] = max(peaks["bare"], peak)
                seconds, peak = _timed(
                    lambda: _run(kahu, "monai-bundle", [mr], {"model": model.ref})
                )
                kahu_s.append(seconds)
                peaks["kahu"] = max(peaks["kahu"], peak)
        finally:
            kahu.stop()
    base = float(np.median(bare))
    name = f"MONAI bundle, MNI152 {resolution} mm"
    return [
        _row(name, "monai.bundle.run (NIfTI)", bare, peaks["bare"], None),
        _row(name, "kahu (DICOM -> SEG)", kahu_s, peaks["kahu"], base),
    ]


def run(rounds: int = 3, cases: tuple[int, ...] = (1, 4)) -> list[dict[str, Any]]:
    return deepbet(rounds) + nnunet(cases, rounds) + bundle(rounds)
