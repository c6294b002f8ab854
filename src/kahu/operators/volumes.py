"""DICOM series to volumes (NIfTI, NRRD) with SimpleITK.

A series becomes a volume only when it is one: every slice the same size and orientation,
positions along the slice normal evenly spaced. A missing slice, a duplicate position or a
tilted slice is refused with a message naming the instances, instead of a silently distorted
volume.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from kahu.flow.job import TaskContext
from kahu.flow.model import Operator, Resources, python_operator

if TYPE_CHECKING:
    import SimpleITK

#: relative tolerance on slice gaps before a series counts as unevenly spaced
SPACING_TOLERANCE = 0.1

FORMATS = {"nifti": ".nii.gz", "nrrd": ".nrrd"}


class NotAVolume(ValueError):
    """The series cannot be stacked into a regular volume; the message says why."""


@dataclass(frozen=True, slots=True)
class Slice:
    path: Path
    sop_instance_uid: str
    position: float  # along the slice normal, mm


def dicom_files(folder: Path) -> list[Path]:
    """The DICOM files under ``folder`` (other files are ignored)."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        except (InvalidDicomError, OSError):
            continue
        found.append(path)
    return found


def _vector(ds: Any, keyword: str, size: int, path: Path) -> np.ndarray:
    value = ds.get(keyword)
    if value is None or len(value) != size:
        raise NotAVolume(f"{path.name} has no {keyword}: not a slice of a volume")
    return np.array([float(v) for v in value])


def ordered_slices(files: Sequence[Path]) -> list[Slice]:
    """The slices of one series sorted along their normal, checked to form a regular grid."""
    if not files:
        raise NotAVolume("no DICOM files")
    headers = [(p, pydicom.dcmread(p, stop_before_pixels=True)) for p in files]
    first_path, first = headers[0]
    if int(first.get("NumberOfFrames", 1) or 1) > 1:
        if len(headers) > 1:
            raise NotAVolume("several multi-frame instances: convert them one at a time")
        return [Slice(first_path, str(first.SOPInstanceUID), 0.0)]
    orientation = _vector(first, "ImageOrientationPatient", 6, first_path)
    normal = np.cross(orientation[:3], orientation[3:])
    size = (first.get("Rows"), first.get("Columns"))
    slices = []
    for path, ds in headers:
        if str(ds.get("SeriesInstanceUID", "")) != str(first.get("SeriesInstanceUID", "")):
            raise NotAVolume(f"{path.name} belongs to another series")
        if (ds.get("Rows"), ds.get("Columns")) != size:
            raise NotAVolume(
                f"{path.name} is {ds.get('Rows')}x{ds.get('Columns')}, "
                f"the series' first slice {size[0]}x{size[1]}"
            )
        if not np.allclose(_vector(ds, "ImageOrientationPatient", 6, path), orientation, atol=1e-3):
            raise NotAVolume(f"{path.name} is oriented differently from the other slices")
        position = _vector(ds, "ImagePositionPatient", 3, path)
        slices.append(Slice(path, str(ds.SOPInstanceUID), float(position @ normal)))
    slices.sort(key=lambda s: s.position)
    check_spacing(slices)
    return slices


def check_spacing(slices: Sequence[Slice]) -> float:
    """The slice gap in mm; a duplicate position or a gap unlike the others is refused."""
    if len(slices) < 2:
        return 0.0
    gaps = np.diff([s.position for s in slices])
    for gap, (a, b) in zip(gaps, itertools.pairwise(slices), strict=True):
        if gap < 1e-4:
            raise NotAVolume(
                f"instances {a.sop_instance_uid} and {b.sop_instance_uid} share a position"
            )
    expected = float(np.median(gaps))
    for gap, (a, b) in zip(gaps, itertools.pairwise(slices), strict=True):
        if abs(gap - expected) > SPACING_TOLERANCE * expected:
            missing = round(gap / expected) - 1
            hint = f" ({missing} missing slice{'s' if missing != 1 else ''}?)" if missing else ""
            raise NotAVolume(
                f"inconsistent slice spacing: {gap:.3g} mm between instances "
                f"{a.sop_instance_uid} and {b.sop_instance_uid}, {expected:.3g} mm elsewhere" + hint
            )
    return expected


def read_volume(files: Sequence[Path]) -> tuple[SimpleITK.Image, list[Slice]]:
    """The series as a SimpleITK image (modality LUT applied, LPS geometry) and its slices
    in the image's z order."""
    import SimpleITK as sitk

    slices = ordered_slices(files)
    if len(slices) == 1:
        image = sitk.ReadImage(str(slices[0].path))
        if image.GetDimension() == 2:  # one slice: a volume one voxel deep
            header = pydicom.dcmread(slices[0].path, stop_before_pixels=True)
            depth = float(header.get("SliceThickness") or 1.0)
            position = [float(v) for v in header.get("ImagePositionPatient", [0, 0, 0])]
            image = sitk.JoinSeries(image, position[2], depth)
            image.SetOrigin(position)
    else:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(s.path) for s in slices])
        image = reader.Execute()
    return image, slices


def write_volume(image: SimpleITK.Image, target: Path) -> Path:
    import SimpleITK as sitk

    target.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(target), useCompression=True)
    return target


def convert_series(files: Sequence[Path], out_dir: Path, name: str, fmt: str = "nifti") -> Path:
    """Write the series in ``files`` as ``<out_dir>/<name><ext>`` (``fmt``: nifti, nrrd)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown volume format {fmt!r}: one of {', '.join(FORMATS)}")
    image, _ = read_volume(files)
    return write_volume(image, out_dir / f"{name}{FORMATS[fmt]}")


def dicom_to_volume_task(ctx: TaskContext) -> None:
    """Per series: the input's DICOM files as one volume named after the series."""
    uid = ctx.series_uid
    if uid is None:
        raise ValueError("dicom-to-volume runs per series")
    fmt = str(ctx.params.get("format") or ctx.options.get("format", "nifti"))
    files = dicom_files(ctx.in_dir)
    written = convert_series(files, ctx.out_dir, uid, fmt)
    ctx.log.info("wrote %s from %d files", written.name, len(files))


def dicom_to_volume(
    name: str = "dicom-to-volume",
    *,
    inputs: Sequence[str] = ("get-input",),
    fmt: str = "nifti",
    memory_mb: int = 2048,
) -> Operator:
    """Per series: DICOM to NIfTI (``fmt="nifti"``, ``.nii.gz``) or NRRD (``fmt="nrrd"``).
    A run parameter ``format`` overrides ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown volume format {fmt!r}: one of {', '.join(FORMATS)}")
    return python_operator(
        name,
        dicom_to_volume_task,
        inputs=inputs,
        resources=Resources(cpu=1, memory_mb=memory_mb),
        description="Convert each series to a NIfTI or NRRD volume (SimpleITK)",
        options={"format": fmt},
    )
