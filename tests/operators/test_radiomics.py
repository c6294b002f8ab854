"""Radiomics with MIRP on a CT and its SEG: features per label whose known values come out
(mean HU of a uniform region, its voxel volume), an SR in the catalog, and the dataset's table
(CSV, Parquet) in the object store."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from kahu.core import Kahu
from kahu.flow.job import RunPaths
from kahu.operators.seg import volume_to_seg
from kahu.operators.sr import sr_to_measurements
from tests.conftest import SYSTEM
from tests.flow.conftest import flow_settings, run_workflow, start_kahu
from tests.synthetic import ct_volume


@pytest.fixture
def kahu(make_settings: Any) -> Iterator[Kahu]:
    instance = start_kahu(flow_settings(make_settings))
    yield instance
    instance.stop()


def test_features_per_label_an_sr_and_the_table(kahu: Kahu) -> None:
    files, hu = ct_volume(12, 32, patient_id="RAD1", shuffle=False)
    kahu.ingestor.ingest_many(files)
    ct = [pydicom.dcmread(io.BytesIO(f)) for f in files]
    labels = np.where(hu == 700, 1, np.where(hu == 40, 2, 0)).astype(np.uint8)
    seg = volume_to_seg(labels, ct, {1: "bone", 2: "soft tissue"}, series_description="GT")
    out = io.BytesIO()
    seg.save_as(out, enforce_file_format=True)
    seg_uid = str(kahu.ingestor.ingest(out.getvalue()).series_instance_uid)

    run_id = run_workflow(kahu, "radiomics", [seg_uid], {"bins": 16})
    state = kahu.flow.wait_idle(run_id, 300)
    assert state == "succeeded", [(t.operator, t.error) for t in kahu.runs.tasks(run_id)]
    paths = RunPaths(kahu.settings.runs_root, run_id)
    report = json.loads(
        (paths.out_dir("features", seg_uid) / "features" / "features.json").read_text()
    )
    assert report["implementation"] == "MIRP (IBSI)"
    bone, soft = report["labels"]["bone"], report["labels"]["soft tissue"]
    assert bone["stat_mean"] == pytest.approx(700)
    assert soft["stat_mean"] == pytest.approx(40)
    assert bone["stat_var"] == pytest.approx(0, abs=1e-6)  # a uniform region
    voxel_mm3 = 0.8 * 0.8 * 2.5
    assert bone["morph_vol_approx"] == pytest.approx((labels == 1).sum() * voxel_mm3)
    assert len(bone) > 50  # shape, intensity, histogram and texture features

    [sr_uid] = [r["series_uid"] for r in kahu.lineage.of(seg_uid)["results"]]
    [instance] = kahu.catalog.instances(SYSTEM, series_uid=sr_uid)
    measured = sr_to_measurements(
        pydicom.dcmread(Path(str(kahu.store.local_path(instance.blob_key))))
    )
    sr = pydicom.dcmread(Path(str(kahu.store.local_path(instance.blob_key))))
    assert sr.StudyInstanceUID == ct[0].StudyInstanceUID  # about the image, in its study
    groups = {g["name"]: {m["name"]: m for m in g["measurements"]} for g in measured["groups"]}
    assert groups["bone"]["stat_mean"]["value"] == pytest.approx(700)
    assert groups["bone"]["stat_mean"]["unit"] == "[hnsf'U]"

    store = kahu.objects.of_project("default")
    keys = {o.key for o in store.objects("radiomics", run_id)}
    assert f"{run_id}/table/radiomics.csv" in keys
    assert f"{run_id}/table/radiomics.parquet" in keys
    import pandas as pd

    table = pd.read_parquet(paths.out_dir("table", "") / "radiomics.parquet")
    assert sorted(table["label"]) == ["bone", "soft tissue"]
    assert set(table["seg_series"]) == {seg_uid}
