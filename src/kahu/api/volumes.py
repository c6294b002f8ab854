"""Series as volumes for viewers: a series as NIfTI, a segmentation as a label map on the
grid of the series it was drawn on, and its segments' names and colours."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import Response

from kahu.api.deps import KahuDep, Scope
from kahu.auth.policy import SeriesScope
from kahu.core import Kahu
from kahu.dicom.uids import validate_uid
from kahu.errors import InvalidInput, NotFound

router = APIRouter(prefix="/api/v1")
NIFTI = "application/gzip"
#: colours of segments without a recommended display colour (one per label value)
PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190),
]  # fmt: skip


@contextlib.contextmanager
def series_files(kahu: Kahu, scope: SeriesScope, uid: str) -> Iterator[list[Path]]:
    """The series' files as local paths (copies where the store has none), if the caller
    may read it."""
    rows = kahu.catalog.instances(series_uid=uid, where=scope.condition())
    if not rows:
        raise NotFound(f"no series {uid}")
    with tempfile.TemporaryDirectory(prefix="kahu-volume-") as tmp:
        paths = []
        for index, row in enumerate(rows):
            path = kahu.store.local_path(row.blob_key)
            if path is None:
                path = Path(tmp) / f"{index}.dcm"
                path.write_bytes(kahu.store.get(row.blob_key))
            paths.append(path)
        yield paths


def _nifti(image: Any) -> bytes:
    import SimpleITK as sitk

    with tempfile.TemporaryDirectory(prefix="kahu-nifti-") as tmp:
        target = Path(tmp) / "volume.nii.gz"
        sitk.WriteImage(image, str(target), useCompression=True)
        return target.read_bytes()


def segments(seg: Any) -> list[dict[str, Any]]:
    """Label value, name and colour of each segment (its recommended display colour, else
    one of a fixed palette)."""
    out = []
    for item in seg.SegmentSequence:
        number = int(item.SegmentNumber)
        colour = PALETTE[(number - 1) % len(PALETTE)]
        lab = item.get("RecommendedDisplayCIELabValue")
        if lab is not None and len(lab) == 3:
            colour = lab_to_rgb([int(v) for v in lab])
        out.append({"value": number, "label": str(item.get("SegmentLabel", "")), "rgb": colour})
    return out


def lab_to_rgb(scaled: list[int]) -> tuple[int, int, int]:
    """A DICOM CIELab value (PS3.3 C.10.7.1.1: L*, a*, b* scaled to 0-65535, D65) in sRGB."""
    lightness = scaled[0] * 100 / 65535
    a_star = scaled[1] * 255 / 65535 - 128
    b_star = scaled[2] * 255 / 65535 - 128
    fy = (lightness + 16) / 116
    fx, fz = fy + a_star / 500, fy - b_star / 200

    def inverse(t: float) -> float:
        return t**3 if t > 6 / 29 else 3 * (6 / 29) ** 2 * (t - 4 / 29)

    x, y, z = 0.95047 * inverse(fx), 1.0 * inverse(fy), 1.08883 * inverse(fz)
    linear = (
        3.2406 * x - 1.5372 * y - 0.4986 * z,
        -0.9689 * x + 1.8758 * y + 0.0415 * z,
        0.0557 * x - 0.2040 * y + 1.0570 * z,
    )

    def gamma(c: float) -> int:
        c = min(max(c, 0.0), 1.0)
        c = 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055
        return round(c * 255)

    r, g, b = (gamma(c) for c in linear)
    return r, g, b


def _volume(kahu: Kahu, scope: SeriesScope, uid: str) -> bytes:
    from kahu.operators.volumes import read_volume

    with series_files(kahu, scope, uid) as files:
        try:
            image, _ = read_volume(files)
        except (ValueError, RuntimeError) as exc:
            raise InvalidInput(f"series {uid} is not a volume: {exc}") from exc
    return _nifti(image)


def _labels(kahu: Kahu, scope: SeriesScope, seg_uid: str, on: str) -> bytes:
    import pydicom

    from kahu.operators.seg import SEG_SOP_CLASS, _image_on, seg_to_arrays
    from kahu.operators.volumes import read_volume

    with series_files(kahu, scope, seg_uid) as seg_files:
        seg = pydicom.dcmread(seg_files[0])
    if str(seg.SOPClassUID) != SEG_SOP_CLASS:
        raise InvalidInput(f"series {seg_uid} is not a segmentation")
    with series_files(kahu, scope, on) as files:
        reference, slices = read_volume(files)
    try:
        arrays, _ = seg_to_arrays(seg, [s.sop_instance_uid for s in slices])
    except (ValueError, KeyError, AttributeError) as exc:
        raise InvalidInput(f"segmentation {seg_uid} was not drawn on {on}: {exc}") from exc
    return _nifti(_image_on(arrays["labels"], reference))


@router.get(
    "/series/{series_uid}/volume.nii.gz",
    summary="The series as a NIfTI volume (gzip), for viewers",
    response_class=Response,
    responses={200: {"content": {NIFTI: {}}}, 400: {"description": "not a volume"}},
)
def series_volume(series_uid: str, kahu: KahuDep, scope: Scope) -> Response:
    uid = validate_uid(series_uid, "SeriesInstanceUID")
    return Response(_volume(kahu, scope, uid), media_type=NIFTI)


@router.get(
    "/series/{series_uid}/labels.nii.gz",
    summary="A segmentation as a label map (value = segment number) on a series' grid",
    response_class=Response,
    responses={200: {"content": {NIFTI: {}}}, 400: {"description": "not drawn on it"}},
)
def segmentation_labels(
    series_uid: str,
    kahu: KahuDep,
    scope: Scope,
    on: Annotated[str, Query(max_length=64, description="the series it was drawn on")],
) -> Response:
    seg_uid = validate_uid(series_uid, "SeriesInstanceUID")
    source = validate_uid(on, "SeriesInstanceUID")
    return Response(_labels(kahu, scope, seg_uid, source), media_type=NIFTI)
