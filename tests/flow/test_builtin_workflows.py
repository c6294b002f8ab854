"""Kahu's own workflows, found through the entry point group and run by the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from kahu.core import Kahu
from kahu.operators.seg import seg_to_volumes
from kahu.operators.sr import sr_to_measurements
from tests.flow.conftest import run_workflow
from tests.synthetic import ct_volume


def _files_of(kahu: Kahu, series_uid: str) -> list[Path]:
    paths = []
    for instance in kahu.catalog.instances(series_uid=series_uid):
        local = kahu.store.local_path(instance.blob_key)
        assert local is not None
        paths.append(Path(local))
    return paths


def test_builtin_workflows_are_registered_by_entry_point(local_kahu: Kahu) -> None:
    workflow = local_kahu.workflows.get("ct-threshold-segmentation")
    assert workflow.source.startswith("entry point ct-threshold-segmentation")
    assert workflow.parameters["properties"]["bone_min"]["default"] == 300


def test_threshold_segmentation_stores_seg_and_sr_with_lineage(local_kahu: Kahu) -> None:
    files, hu = ct_volume(slices=12, size=32)
    [ct] = {r.series_instance_uid for r in local_kahu.ingestor.ingest_many(files)}
    assert ct is not None
    run_id = run_workflow(local_kahu, "ct-threshold-segmentation", [ct], {"bone_min": 500})
    assert local_kahu.flow.wait_idle(run_id, 120) == "succeeded", local_kahu.flow.runs.tasks(run_id)

    results = {r["series_uid"] for r in local_kahu.lineage.of(ct)["results"]}
    assert len(results) == 2
    by_modality = {local_kahu.catalog.get_series(uid).document["Modality"]: uid for uid in results}
    assert set(by_modality) == {"SEG", "SR"}
    derived = local_kahu.lineage.of(by_modality["SEG"])["derived_from"]
    assert derived == [
        {
            "run_id": run_id,
            "workflow": "ct-threshold-segmentation",
            "version": "1.0",
            "source_series_uid": ct,
        }
    ]

    # the stored SEG, read back on the CT's grid, is exactly the thresholded volume
    [seg_file] = _files_of(local_kahu, by_modality["SEG"])
    seg = pydicom.dcmread(seg_file)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct
    import SimpleITK as sitk

    [labels] = seg_to_volumes(
        seg_file, local_kahu.settings.home / "check", source_files=_files_of(local_kahu, ct)
    )
    expected = np.zeros(hu.shape, dtype=np.uint8)
    expected[(hu >= -100) & (hu < 300)] = 2
    expected[hu >= 500] = 1
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(labels))), expected)

    # the SR holds the volumes the SEG implies
    [sr_file] = _files_of(local_kahu, by_modality["SR"])
    report = sr_to_measurements(pydicom.dcmread(sr_file))
    voxel_ml = 0.8 * 0.8 * 2.5 / 1000
    volumes = {g["name"]: g["measurements"][0] for g in report["groups"]}
    assert volumes["bone"]["value"] == round(int((expected == 1).sum()) * voxel_ml, 3)
    assert volumes["soft tissue"]["unit"] == "ml"
    assert report["algorithm"] == {"name": "kahu-threshold", "version": "1.0"}


def test_threshold_segmentation_refuses_a_series_with_a_missing_slice(local_kahu: Kahu) -> None:
    files, _ = ct_volume(slices=8, size=16, shuffle=False)
    [ct] = {r.series_instance_uid for r in local_kahu.ingestor.ingest_many(files[:3] + files[4:])}
    assert ct is not None
    run_id = run_workflow(local_kahu, "ct-threshold-segmentation", [ct])
    assert local_kahu.flow.wait_idle(run_id, 120) == "failed"
    failed = [t for t in local_kahu.flow.runs.tasks(run_id) if t.state == "failed"]
    assert [t.operator for t in failed] == ["dicom-to-volume"]
    assert "inconsistent slice spacing" in failed[0].error
    assert "1 missing slice" in failed[0].error
