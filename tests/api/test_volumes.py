"""Series as NIfTI for viewers, and a SEG as a label map on its source's grid."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from kahu.flow.cohort import RunInput
from kahu.flow.launch import launch
from tests.api.conftest import Api
from tests.conftest import SYSTEM
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
        if kahu.catalog.get_series(SYSTEM, r["series_uid"]).modality == "SEG"
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


def test_drawings_become_segs_and_bad_drawings_are_refused(api: Api, tmp_path: Path) -> None:
    kahu, client = api.kahu, api.client
    files, _ = ct_volume(slices=6, size=16)
    files.sort(key=lambda f: float(pydicom.dcmread(io.BytesIO(f)).ImagePositionPatient[2]))
    ct = kahu.ingestor.ingest_many(files)[0].series_instance_uid
    assert ct is not None
    alice = api.headers(api.user_token)
    image = _read(client.get(f"/api/v1/series/{ct}/volume.nii.gz", headers=alice).content, tmp_path)
    drawn = np.zeros(sitk.GetArrayFromImage(image).shape, np.uint8)
    drawn[2, 5:9, 5:9] = 1
    labels = sitk.GetImageFromArray(drawn)
    labels.CopyInformation(image)
    path = tmp_path / "drawing.nii.gz"
    sitk.WriteImage(labels, str(path), useCompression=True)
    url = f"/api/v1/series/{ct}/segmentations"
    bin_headers = {**alice, "Content-Type": "application/octet-stream"}
    saved = client.post(
        url, params={"label": "spot"}, content=path.read_bytes(), headers=bin_headers
    )
    assert saved.status_code == 201, saved.text
    seg = saved.json()["series_uid"]
    back = client.get(f"/api/v1/series/{seg}/labels.nii.gz", params={"on": ct}, headers=alice)
    assert np.array_equal(sitk.GetArrayFromImage(_read(back.content, tmp_path)), drawn)
    assert seg in [r["series_uid"] for r in kahu.lineage.of(ct)["results"]]
    [record] = kahu.audit.query(action="segmentation.create")
    assert record.series == [ct, seg]
    # refusals, each with its reason
    not_nifti = client.post(url, content=b"hello", headers=bin_headers)
    assert not_nifti.status_code == 400
    assert "NIfTI" in not_nifti.json()["detail"]
    empty = tmp_path / "empty.nii.gz"
    blank = sitk.GetImageFromArray(np.zeros_like(drawn))
    blank.CopyInformation(image)
    sitk.WriteImage(blank, str(empty), useCompression=True)
    refused = client.post(url, content=empty.read_bytes(), headers=bin_headers)
    assert refused.status_code == 400
    assert "empty" in refused.json()["detail"]
    small = tmp_path / "small.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(drawn[:, :8, :8]), str(small), useCompression=True)
    off_grid = client.post(url, content=small.read_bytes(), headers=bin_headers)
    assert off_grid.status_code == 400
    assert "grid" in off_grid.json()["detail"]
    kahu.projects.set_member("default", "alice", "viewer")
    assert client.post(url, content=path.read_bytes(), headers=bin_headers).status_code == 403
    kahu.projects.remove_member("default", "alice")
    assert client.post(url, content=path.read_bytes(), headers=bin_headers).status_code == 404


def test_volumes_are_made_once_and_revalidated(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kahu.api.volumes as volumes

    kahu, client = api.kahu, api.client
    files, _ = ct_volume(slices=6, size=16)
    files.sort(key=lambda f: float(pydicom.dcmread(io.BytesIO(f)).ImagePositionPatient[2]))
    ct = kahu.ingestor.ingest_many(files[:5])[0].series_instance_uid
    made: list[str] = []
    real = volumes._volume
    monkeypatch.setattr(
        volumes, "_volume", lambda k, scope, uid: made.append(uid) or real(k, scope, uid)
    )
    alice = api.headers(api.user_token)
    url = f"/api/v1/series/{ct}/volume.nii.gz"
    first = client.get(url, headers=alice)
    second = client.get(url, headers=alice)
    assert first.status_code == second.status_code == 200, first.text
    assert first.content == second.content
    assert made == [ct]  # the second came from the cache
    assert first.headers["cache-control"] == "private, no-cache"
    etag = first.headers["etag"]
    # the browser has it: 304, no body
    again = client.get(url, headers={**alice, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    # another project's member gets nothing, not even with the ETag
    kahu.accounts.create_user("oscar", "correct horse battery staple")
    oscar = api.headers(kahu.accounts.create_token("oscar")[0])
    assert client.get(url, headers={**oscar, "If-None-Match": etag}).status_code == 404
    # a slice more: another volume (another ETag), made anew
    kahu.ingestor.ingest_many(files[5:])
    grown = client.get(url, headers={**alice, "If-None-Match": etag})
    assert grown.status_code == 200
    assert grown.headers["etag"] != etag
    assert _read(grown.content, tmp_path).GetSize() == (16, 16, 6)
    assert made == [ct, ct]


def test_the_file_cache_keeps_the_most_recently_used(tmp_path: Path) -> None:
    import os

    from kahu.storage.cache import FileCache, digest

    cache = FileCache(tmp_path / "c", limit_bytes=250)
    keys = [digest([str(i)]) for i in range(4)]
    for index, key in enumerate(keys[:2]):
        assert cache.get_or_make(key, lambda: b"x" * 100) == b"x" * 100
        os.utime(tmp_path / "c" / key, (1000 + index, 1000 + index))
    assert cache.get_or_make(keys[0], lambda: b"never") == b"x" * 100  # a hit: used now
    cache.get_or_make(keys[2], lambda: b"y" * 100)  # over 250 bytes: the oldest goes
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == sorted([keys[0], keys[2]])
    # too large to keep: given, not kept
    assert cache.get_or_make(keys[3], lambda: b"z" * 300) == b"z" * 300
    assert not (tmp_path / "c" / keys[3]).exists()
    with pytest.raises(ValueError, match="SHA-256"):
        cache.get_or_make("../../etc/passwd", lambda: b"")
