"""Series as NIfTI for viewers, and a SEG as a label map on its source's grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from kahu.flow.cohort import RunInput
from kahu.flow.launch import launch
from tests.api.conftest import Api
from tests.synthetic import ct_volume


def _read(data: bytes, tmp_path: Path) -> sitk.Image:
    path = tmp_path / "v.nii.gz"
    path.write_bytes(data)
    return sitk.ReadImage(str(path))


def test_volume_and_labels(api: Api, tmp_path: Path) -> None:
    kahu, client = api.kahu, api.client
    files, hu = ct_volume(slices=8, size=16)
    ct = kahu.ingestor.ingest_many(files)[0].series_instance_uid
    assert ct is not None
    [run] = launch(
        kahu.catalog, kahu.workflows, kahu.flow, "ct-threshold-segmentation", {},
        RunInput(series_uids=(ct,)), audit=kahu.audit, path="test",
    )  # fmt: skip
    assert kahu.flow.wait_idle(run, 120) == "succeeded"
    [seg] = [
        r["series_uid"]
        for r in kahu.lineage.of(ct)["results"]
        if kahu.catalog.get_series(r["series_uid"]).modality == "SEG"
    ]
    alice = api.headers(api.user_token)
    volume = client.get(f"/api/v1/series/{ct}/volume.nii.gz", headers=alice)
    assert volume.status_code == 200
    image = _read(volume.content, tmp_path)
    assert image.GetSize() == (16, 16, 8)
    assert np.array_equal(np.sort(sitk.GetArrayFromImage(image).ravel()), np.sort(hu.ravel()))
    labels = client.get(f"/api/v1/series/{seg}/labels.nii.gz", params={"on": ct}, headers=alice)
    assert labels.status_code == 200
    label_image = _read(labels.content, tmp_path)
    assert label_image.GetSize() == image.GetSize()
    assert np.allclose(label_image.GetOrigin(), image.GetOrigin())
    values = sitk.GetArrayFromImage(label_image)
    assert set(np.unique(values)) == {0, 1, 2}
    bone = sitk.GetArrayFromImage(image) >= 300
    assert np.array_equal(values == 1, bone)  # the threshold workflow's bone label
    # a series that is no SEG, and a SEG on a series it was not drawn on
    assert (
        client.get(
            f"/api/v1/series/{ct}/labels.nii.gz", params={"on": ct}, headers=alice
        ).status_code
        == 400
    )
    # another project's member learns nothing
    kahu.accounts.create_user("oscar", "correct horse battery staple")
    oscar = api.headers(kahu.accounts.create_token("oscar")[0])
    assert client.get(f"/api/v1/series/{ct}/volume.nii.gz", headers=oscar).status_code == 404
    assert [r.action for r in kahu.audit.query(actor="alice", action="retrieve")] == [
        "retrieve", "retrieve", "retrieve",
    ]  # fmt: skip
