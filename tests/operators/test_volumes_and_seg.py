"""DICOM -> NIfTI/NRRD with geometry checks, and NIfTI -> SEG -> NIfTI with voxel equality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from kahu.operators.seg import labels_to_seg, seg_to_volumes, volume_to_seg
from kahu.operators.volumes import NotAVolume, convert_series, dicom_files, read_volume
from tests.synthetic import ct_volume


def _write(folder: Path, files: list[bytes]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, data in enumerate(files):
        path = folder / f"{index:03d}.dcm"
        path.write_bytes(data)
        paths.append(path)
    return paths


@pytest.fixture
def ct(tmp_path: Path) -> tuple[list[Path], np.ndarray]:
    files, hu = ct_volume(slices=12, size=32)
    return _write(tmp_path / "ct", files), hu


@pytest.mark.parametrize("fmt", ["nifti", "nrrd"])
def test_series_to_volume_keeps_values_and_geometry(
    tmp_path: Path, ct: tuple[list[Path], np.ndarray], fmt: str
) -> None:
    files, hu = ct
    written = convert_series(files, tmp_path / "out", "ct", fmt)
    assert written.name == ("ct.nii.gz" if fmt == "nifti" else "ct.nrrd")
    image = sitk.ReadImage(str(written))
    # files were written in shuffled order: the volume is sorted along the slice normal
    assert np.array_equal(sitk.GetArrayFromImage(image), hu)
    assert image.GetSpacing() == pytest.approx((0.8, 0.8, 2.5), abs=1e-5)
    assert image.GetOrigin() == pytest.approx((-12.8, -12.8, -100.0), abs=1e-4)


def test_missing_slice_is_refused(tmp_path: Path) -> None:
    files, _ = ct_volume(slices=10, size=16, shuffle=False)
    paths = _write(tmp_path / "ct", files[:4] + files[5:])
    with pytest.raises(NotAVolume, match=r"inconsistent slice spacing: 5 mm .*1 missing slice"):
        convert_series(paths, tmp_path / "out", "ct")
    assert not (tmp_path / "out").exists()


def test_duplicate_position_and_other_series_are_refused(tmp_path: Path) -> None:
    files, _ = ct_volume(slices=4, size=16, shuffle=False)
    twin = pydicom.dcmread(_write(tmp_path / "a", files[:1])[0])
    twin.SOPInstanceUID = pydicom.uid.generate_uid()
    twin.save_as(tmp_path / "a" / "twin.dcm")
    with pytest.raises(NotAVolume, match="share a position"):
        read_volume(dicom_files(tmp_path / "a"))
    other, _ = ct_volume(slices=2, size=16)
    paths = _write(tmp_path / "b", files[:2]) + _write(tmp_path / "c", other[:1])
    with pytest.raises(NotAVolume, match="belongs to another series"):
        read_volume(paths)


def test_labels_seg_labels_round_trip_is_voxel_equal(
    tmp_path: Path, ct: tuple[list[Path], np.ndarray]
) -> None:
    files, hu = ct
    volume = sitk.ReadImage(str(convert_series(files, tmp_path, "ct")))
    labels = np.zeros(hu.shape, dtype=np.uint8)
    labels[hu > 300] = 1
    labels[(hu > 0) & (hu < 300)] = 2
    mask = sitk.GetImageFromArray(labels)
    mask.CopyInformation(volume)
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))

    seg = labels_to_seg(
        tmp_path / "mask.nii.gz",
        files,
        {1: "bone", 2: "soft tissue"},
        algorithm=("threshold", "2.1"),
    )
    seg.save_as(tmp_path / "seg.dcm", enforce_file_format=True)
    source = pydicom.dcmread(files[0])
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.PatientID == source.PatientID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["bone", "soft tissue"]
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("threshold", "2.1")

    [back] = seg_to_volumes(tmp_path / "seg.dcm", tmp_path / "back", source_files=files)
    image = sitk.ReadImage(str(back))
    assert np.array_equal(sitk.GetArrayFromImage(image), labels)
    assert image.GetOrigin() == pytest.approx(volume.GetOrigin())
    assert image.GetDirection() == pytest.approx(volume.GetDirection())

    # split per segment with a label filter; without the source, on the SEG's own geometry
    [bone] = seg_to_volumes(tmp_path / "seg.dcm", tmp_path / "split", labels=["BONE"], split=True)
    assert bone.name == "1-bone.nii.gz"
    on_grid = sitk.Resample(
        sitk.ReadImage(str(bone)), volume, sitk.Transform(), sitk.sitkNearestNeighbor
    )
    assert np.array_equal(sitk.GetArrayFromImage(on_grid), (labels == 1).astype(np.uint8))
    with pytest.raises(ValueError, match="no segment labelled liver; the SEG has 1: bone"):
        seg_to_volumes(tmp_path / "seg.dcm", tmp_path / "none", labels=["liver"])


def test_label_volume_off_the_source_grid_is_refused(
    tmp_path: Path, ct: tuple[list[Path], np.ndarray]
) -> None:
    files, hu = ct
    mask = sitk.GetImageFromArray((hu > 300).astype(np.uint8)[:, :, :30])
    sitk.WriteImage(mask, str(tmp_path / "mask.nii.gz"))
    with pytest.raises(ValueError, match="not on the source series' grid: size"):
        labels_to_seg(tmp_path / "mask.nii.gz", files, {1: "bone"})


def test_seg_needs_named_non_empty_labels(ct: tuple[list[Path], np.ndarray]) -> None:
    files, hu = ct
    source = [pydicom.dcmread(p) for p in read_volume_order(files)]
    with pytest.raises(ValueError, match="empty"):
        volume_to_seg(np.zeros(hu.shape, dtype=np.uint8), source, {1: "bone"})
    with pytest.raises(ValueError, match=r"label values \[2\] have no segment name"):
        volume_to_seg((hu > 0).astype(np.uint8) * 2, source, {1: "bone"})
    with pytest.raises(ValueError, match="11 slices, the source series 12"):
        volume_to_seg((hu[:11] > 300).astype(np.uint8), source, {1: "bone"})


def read_volume_order(files: list[Path]) -> list[Path]:
    _, slices = read_volume(files)
    return [s.path for s in slices]
