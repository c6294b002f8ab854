"""Brain extraction with deepbet on a real T1: nilearn's MNI152 template (shipped in its
wheel; the brain of an average head) made into an MR series, through the workflow to a SEG
and an SR in the catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from kahu.core import Kahu
from kahu.operators.seg import seg_to_volumes
from kahu.operators.sr import sr_to_measurements
from tests.conftest import SYSTEM
from tests.flow.conftest import run_workflow
from tests.synthetic import series_from_volume


def _files_of(kahu: Kahu, series_uid: str) -> list[Path]:
    return [
        Path(str(kahu.store.local_path(i.blob_key)))
        for i in kahu.catalog.instances(SYSTEM, series_uid=series_uid)
    ]


@pytest.fixture(scope="module")
def mni_t1(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[bytes], np.ndarray]:
    """The MNI152 T1 template at 2 mm as an MR series, and its intensities (z, y, x)."""
    import SimpleITK as sitk
    from nilearn.datasets import load_mni152_template

    path = tmp_path_factory.mktemp("mni") / "t1.nii.gz"
    load_mni152_template(resolution=2).to_filename(path)
    image = sitk.ReadImage(str(path))
    return series_from_volume(image, patient_id="MNI152"), sitk.GetArrayFromImage(image)


def test_deepbet_masks_the_brain_of_a_real_t1(
    local_kahu: Kahu, mni_t1: tuple[list[bytes], np.ndarray]
) -> None:
    files, t1 = mni_t1
    [mr] = {r.series_instance_uid for r in local_kahu.ingestor.ingest_many(files)}
    assert mr is not None
    run_id = run_workflow(local_kahu, "brain-extraction", [mr], {})
    assert local_kahu.flow.wait_idle(run_id, 300) == "succeeded", local_kahu.flow.runs.tasks(run_id)
    results = {r["series_uid"] for r in local_kahu.lineage.of(mr)["results"]}
    by_modality = {
        local_kahu.catalog.get_series(SYSTEM, uid).document["Modality"]: uid for uid in results
    }
    assert set(by_modality) == {"SEG", "SR"}

    [sr_file] = _files_of(local_kahu, by_modality["SR"])
    report = sr_to_measurements(pydicom.dcmread(sr_file))
    [group] = report["groups"]
    [volume] = [m for m in group["measurements"] if m["name"] == "Volume"]
    # an adult brain with its CSF, in ml (MNI152 is an average of heads scaled up to
    # Talairach space: larger than most)
    assert 1200 < volume["value"] < 2300, volume

    [seg_file] = _files_of(local_kahu, by_modality["SEG"])
    seg = pydicom.dcmread(seg_file)
    assert seg.SegmentSequence[0].SegmentLabel == "brain"
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "12738006"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == mr
    [labels] = seg_to_volumes(
        seg_file, local_kahu.settings.home / "check", source_files=_files_of(local_kahu, mr)
    )
    import SimpleITK as sitk

    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(labels))) > 0
    assert mask.shape == t1.shape
    # nilearn's template is the brain alone (zero around it): deepbet must find that brain
    brain = sitk.BinaryFillhole(sitk.GetImageFromArray((t1 > 0.05 * t1.max()).astype(np.uint8)))
    reference = sitk.GetArrayFromImage(brain) > 0
    dice = 2 * (mask & reference).sum() / (mask.sum() + reference.sum())
    assert dice > 0.9, dice
    near = sitk.GetArrayFromImage(sitk.BinaryDilate(brain, [2, 2, 2])) > 0
    assert mask[near].sum() / mask.sum() > 0.99  # nothing far outside the head's brain
    # the SR's volume is the SEG's
    voxel_ml = 8 / 1000
    assert abs(mask.sum() * voxel_ml - volume["value"]) < 0.02 * volume["value"]
