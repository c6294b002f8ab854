"""Series as volumes for viewers: a series as NIfTI, a segmentation as a label map on the
grid of the series it was drawn on, and its segments' names and colours."""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from kahu.api.deps import CurrentUser, KahuDep, Scope
from kahu.auth.policy import read_scope, role_in, write_scope
from kahu.auth.users import UserPublic
from kahu.catalog.scope import SeriesScope
from kahu.core import Kahu
from kahu.dicom.uids import validate_uid
from kahu.errors import InvalidInput, NotFound, PayloadTooLarge, PermissionDenied
from kahu.storage.cache import digest

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
    rows = kahu.catalog.instances(scope, series_uid=uid)
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


def _key(kahu: Kahu, scope: SeriesScope, kind: str, *uids: str) -> str:
    """The cache key (and ETag) of a volume made of the series ``uids``: a digest of their
    instances' blobs, so new or replaced instances make another; NotFound if the caller may
    not read one of them."""
    parts = [kind]
    for uid in uids:
        rows = kahu.catalog.instances(scope, series_uid=uid)
        if not rows:
            raise NotFound(f"no series {uid}")
        parts += [uid, *sorted(row.blob_key for row in rows)]
    return digest(parts)


def _cached(request: Request, key: str, make: Callable[[], bytes]) -> Response:
    """The volume, or 304 when the browser has this very one (viewers open series again)."""
    etag = f'"{key}"'
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(make(), media_type=NIFTI, headers=headers)


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

    from kahu.operators.seg import SEG_SOP_CLASS, image_on, seg_to_arrays
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
    return _nifti(image_on(arrays["labels"], reference))


@router.get(
    "/series/{series_uid}/volume.nii.gz",
    summary="The series as a NIfTI volume (gzip), for viewers",
    response_class=Response,
    responses={200: {"content": {NIFTI: {}}}, 400: {"description": "not a volume"}},
)
def series_volume(series_uid: str, request: Request, kahu: KahuDep, scope: Scope) -> Response:
    uid = validate_uid(series_uid, "SeriesInstanceUID")
    key = _key(kahu, scope, "volume", uid)
    return _cached(
        request, key, lambda: kahu.volumes.get_or_make(key, lambda: _volume(kahu, scope, uid))
    )


@router.get(
    "/series/{series_uid}/labels.nii.gz",
    summary="A segmentation as a label map (value = segment number) on a series' grid",
    response_class=Response,
    responses={200: {"content": {NIFTI: {}}}, 400: {"description": "not drawn on it"}},
)
def segmentation_labels(
    series_uid: str,
    request: Request,
    kahu: KahuDep,
    scope: Scope,
    on: Annotated[str, Query(max_length=64, description="the series it was drawn on")],
) -> Response:
    seg_uid = validate_uid(series_uid, "SeriesInstanceUID")
    source = validate_uid(on, "SeriesInstanceUID")
    key = _key(kahu, scope, "labels", seg_uid, source)
    return _cached(
        request, key,
        lambda: kahu.volumes.get_or_make(key, lambda: _labels(kahu, scope, seg_uid, source)),
    )  # fmt: skip


#: the largest drawing a viewer may send (a gzipped label volume)
MAX_DRAWING = 256 * 1024**2


@router.post(
    "/series/{series_uid}/segmentations",
    status_code=201,
    summary="A label volume drawn on the series (NIfTI body) saved as a DICOM SEG",
    description="The body is a NIfTI label volume on the series' grid (what the viewer's "
    "drawing saves); each non-zero value becomes a segment (`label` names value 1). The SEG "
    "references the series, enters its project and records its lineage. Needs the scientist "
    "role in a project of the series.",
    responses={400: {"description": "not a label volume on the series' grid"}},
)
async def save_segmentation(
    series_uid: str,
    request: Request,
    kahu: KahuDep,
    user: CurrentUser,
    label: Annotated[str, Query(min_length=1, max_length=64)] = "drawing",
    description: Annotated[str, Query(max_length=64)] = "Drawn segmentation",
) -> dict[str, Any]:
    uid = validate_uid(series_uid, "SeriesInstanceUID")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_DRAWING:
            raise PayloadTooLarge(f"a drawing is at most {MAX_DRAWING} bytes")
    return await run_in_threadpool(
        _save_segmentation, kahu, user, uid, bytes(body), label, description
    )


def _save_segmentation(
    kahu: Kahu, user: UserPublic, uid: str, body: bytes, label: str, description: str
) -> dict[str, Any]:
    from kahu.operators.seg import labels_to_seg, read_labels

    writable = write_scope(kahu.projects, user)
    projects = [p for p in kahu.projects.series_projects(uid) if writable.everything
                or role_in(kahu.projects, user, p) in ("scientist", "manager")]  # fmt: skip
    if not projects:
        with series_files(kahu, read_scope(kahu.projects, user), uid):
            pass  # NotFound for a series the caller cannot see
        raise PermissionDenied("scientists of the series' project only")
    if not body.startswith(b"\x1f\x8b") and body[344:348] not in (b"n+1\x00", b"ni1\x00"):
        raise InvalidInput("the body must be a NIfTI label volume (.nii or .nii.gz)")
    with tempfile.TemporaryDirectory(prefix="kahu-drawing-") as tmp:
        path = Path(tmp) / ("drawing.nii.gz" if body.startswith(b"\x1f\x8b") else "drawing.nii")
        path.write_bytes(body)
        try:
            values, _ = read_labels(path)
        except (RuntimeError, ValueError) as exc:
            raise InvalidInput(f"the drawing cannot be read: {exc}") from exc
        present = sorted(int(v) for v in set(values.ravel().tolist()) - {0})
        if not present:
            raise InvalidInput("the drawing is empty: draw something first")
        segments = {v: (label if v == 1 else f"{label} {v}") for v in present}
        with series_files(kahu, writable, uid) as files:
            try:
                seg = labels_to_seg(
                    path, files, segments, algorithm=("kahu viewer", "1"),
                    series_description=description,
                )  # fmt: skip
            except ValueError as exc:
                raise InvalidInput(str(exc)) from exc
    out = io.BytesIO()
    seg.save_as(out, enforce_file_format=True)
    seg_uid = str(seg.SeriesInstanceUID)
    with kahu.audit.action(
        user.name, "segmentation.create", path="POST /api/v1/series/{series_uid}/segmentations",
        project=projects[0], series=[uid, seg_uid], detail={"label": label},
    ):  # fmt: skip
        [result] = kahu.ingestor.ingest_many([out.getvalue()], project=projects[0], source="viewer")
        if result.status == "rejected":
            raise InvalidInput(f"the SEG was refused: {result.reason}")
        kahu.lineage.record(seg_uid, f"viewer-{user.name}", "viewer-drawing", "1", [uid])
    return {"series_uid": seg_uid, "project": projects[0], "segments": segments}
