"""WADO-RS (PS3.18 10.4): instances, metadata, frames, bulk data, rendered images, thumbnails."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from typing import Annotated

import numpy as np
import pydicom
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from kahu.api.deps import KahuDep, Scope
from kahu.catalog.records import InstanceRow
from kahu.catalog.scope import SeriesScope
from kahu.catalog.thumbnails import SIZE, make_thumbnail, thumbnail_key
from kahu.core import Kahu
from kahu.dicom.json_model import BASE_MARKER
from kahu.dicom.render import CannotRender, render
from kahu.dicomweb.common import DICOM_JSON, base_url, uids
from kahu.dicomweb.multipart import MediaType, new_boundary, parse_accept, related_stream
from kahu.errors import InvalidInput, NotFound

router = APIRouter()

EXPLICIT_LE = "1.2.840.10008.1.2.1"
UNCOMPRESSED = {"1.2.840.10008.1.2", EXPLICIT_LE, "1.2.840.10008.1.2.2"}
#: PS3.18 Table 8.7.3-2: media types of compressed frames
FRAME_MEDIA = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


class NotAcceptable(InvalidInput):
    """No representation the client accepts (HTTP 406)."""

    http_status = 406


def _instances(
    kahu: Kahu,
    scope: SeriesScope,
    study: str,
    series: str | None = None,
    instance: str | None = None,
) -> list[InstanceRow]:
    """The instances asked for that the caller may read (none: NotFound, as if absent)."""
    uids(study, series, instance)
    rows = kahu.catalog.instances(scope, study_uid=study, series_uid=series, sop_uid=instance)
    if not rows:
        what = instance or series or study
        raise NotFound(f"no {'instance' if instance else 'series' if series else 'study'} {what}")
    return rows


def _accepts_dicom(accept: list[MediaType], syntaxes: set[str]) -> bool:
    if not accept:
        return True
    for media in accept:
        if media.type in ("*/*", "multipart/*"):
            return True
        if media.type == "multipart/related":
            if media.params.get("type", "application/dicom").lower() != "application/dicom":
                continue
            wanted = media.params.get("transfer-syntax")
            # no parameter: serve as stored, as most archives do; Kahu never transcodes
            if wanted in (None, "*") or syntaxes == {wanted}:
                return True
    return False


def _read(kahu: Kahu, row: InstanceRow) -> bytes:
    path = kahu.store.local_path(row.blob_key)
    return path.read_bytes() if path is not None else kahu.store.get(row.blob_key)


def _dataset(kahu: Kahu, row: InstanceRow) -> Dataset:
    return pydicom.dcmread(io.BytesIO(_read(kahu, row)))


def _retrieve(kahu: Kahu, request: Request, rows: list[InstanceRow]) -> StreamingResponse:
    syntaxes = {r.transfer_syntax_uid for r in rows}
    if not _accepts_dicom(parse_accept(request.headers.get("accept")), syntaxes):
        raise NotAcceptable(
            "instances are served as stored (transfer syntaxes: "
            + ", ".join(sorted(syntaxes))
            + '); accept multipart/related; type="application/dicom"; transfer-syntax=*'
        )
    boundary = new_boundary()

    def parts() -> Iterator[tuple[str, bytes]]:
        for row in rows:
            yield (
                f"application/dicom; transfer-syntax={row.transfer_syntax_uid}",
                _read(kahu, row),
            )

    media = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return StreamingResponse(related_stream(parts(), boundary), media_type=media)


def _metadata(kahu: Kahu, request: Request, texts: list[str]) -> Response:
    body = "[" + ",".join(texts) + "]"
    return Response(body.replace(BASE_MARKER, base_url(request)), media_type=DICOM_JSON)


@router.get("/studies/{study}", summary="WADO-RS: retrieve a study")
def retrieve_study(study: str, request: Request, kahu: KahuDep, scope: Scope) -> Response:
    return _retrieve(kahu, request, _instances(kahu, scope, study))


@router.get("/studies/{study}/series/{series}", summary="WADO-RS: retrieve a series")
def retrieve_series(
    study: str, series: str, request: Request, kahu: KahuDep, scope: Scope
) -> Response:
    return _retrieve(kahu, request, _instances(kahu, scope, study, series))


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}", summary="WADO-RS: retrieve an instance"
)
def retrieve_instance(
    study: str, series: str, instance: str, request: Request, kahu: KahuDep, scope: Scope
) -> Response:
    return _retrieve(kahu, request, _instances(kahu, scope, study, series, instance))


@router.get("/studies/{study}/metadata", summary="WADO-RS: metadata of a study")
def study_metadata(study: str, request: Request, kahu: KahuDep, scope: Scope) -> Response:
    uids(study)
    texts = kahu.metadata.texts(study, where=scope.condition())
    if not texts:
        raise NotFound(f"no study {study}")
    return _metadata(kahu, request, texts)


@router.get("/studies/{study}/series/{series}/metadata", summary="WADO-RS: metadata of a series")
def series_metadata(
    study: str, series: str, request: Request, kahu: KahuDep, scope: Scope
) -> Response:
    uids(study, series)
    texts = kahu.metadata.texts(study, series, where=scope.condition())
    if not texts:
        raise NotFound(f"no series {series} in study {study}")
    return _metadata(kahu, request, texts)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/metadata",
    summary="WADO-RS: metadata of an instance",
)
def instance_metadata(
    study: str, series: str, instance: str, request: Request, kahu: KahuDep, scope: Scope
) -> Response:
    uids(study, series, instance)
    texts = kahu.metadata.texts(study, series, instance, where=scope.condition())
    if not texts:
        raise NotFound(f"no instance {instance}")
    return _metadata(kahu, request, texts)


def _frame_numbers(text: str, count: int) -> list[int]:
    try:
        numbers = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise InvalidInput(f"frame list must be comma-separated numbers: {text!r}") from exc
    if not numbers or any(not 1 <= n <= count for n in numbers):
        raise NotFound(f"frames must lie in 1-{count}")
    return numbers


def _uncompressed_frames(ds: Dataset, numbers: list[int], count: int) -> list[bytes]:
    bits = int(ds.BitsAllocated)
    if bits % 8:
        raise NotAcceptable("frames of 1-bit pixel data are not served yet")
    size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * bits // 8
    data = ds.PixelData
    if len(data) < size * count:
        raise InvalidInput("pixel data is shorter than its frames")
    if ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2":
        # big endian: OW is swapped in 16-bit words (8-bit pixels included), OB not at all
        width = 2 if ds["PixelData"].VR == "OW" and bits <= 16 else bits // 8
        if width > 1:
            dtype = np.dtype(f">u{width}")
            data = np.frombuffer(data, dtype).astype(dtype.newbyteorder("<")).tobytes()
    return [data[(n - 1) * size : n * size] for n in numbers]


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}",
    summary="WADO-RS: pixel data of frames",
)
def retrieve_frames(
    study: str,
    series: str,
    instance: str,
    frames: str,
    request: Request,
    kahu: KahuDep,
    scope: Scope,
) -> Response:
    [row] = _instances(kahu, scope, study, series, instance)
    ds = _dataset(kahu, row)
    if "PixelData" not in ds:
        raise NotFound("the instance has no pixel data")
    count = int(ds.get("NumberOfFrames") or 1)
    numbers = _frame_numbers(frames, count)
    syntax = row.transfer_syntax_uid
    accept = parse_accept(request.headers.get("accept"))
    if syntax in UNCOMPRESSED:
        payload = _uncompressed_frames(ds, numbers, count)
        part_type = f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
    else:
        media = FRAME_MEDIA.get(syntax, "application/octet-stream")
        if accept and not any(
            m.type in ("*/*", "multipart/*")
            or m.params.get("transfer-syntax") == "*"
            or m.params.get("type", "").lower() == media
            or m.params.get("transfer-syntax") == syntax
            for m in accept
        ):
            raise NotAcceptable(
                f"frames are stored compressed ({syntax}, {media}); accept "
                f'multipart/related; type="{media}" or transfer-syntax=*'
            )
        encapsulated = list(generate_frames(ds.PixelData, number_of_frames=count))
        payload = [encapsulated[n - 1] for n in numbers]
        part_type = f"{media}; transfer-syntax={syntax}"
    boundary = new_boundary()
    body = b"".join(related_stream(((part_type, f) for f in payload), boundary))
    return Response(
        body, media_type=f'multipart/related; type="{part_type.split(";")[0]}"; boundary={boundary}'
    )


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag}",
    summary="WADO-RS: a bulk data element",
)
def retrieve_bulkdata(
    study: str, series: str, instance: str, tag: str, kahu: KahuDep, scope: Scope
) -> Response:
    [row] = _instances(kahu, scope, study, series, instance)
    try:
        number = int(tag, 16)
    except ValueError as exc:
        raise InvalidInput(f"bulk data tag must be 8 hex digits: {tag!r}") from exc
    ds = _dataset(kahu, row)
    if number not in ds:
        raise NotFound(f"no element {tag} in the instance")
    value = ds[number].value
    content = value if isinstance(value, bytes) else bytes(value)
    boundary = new_boundary()
    body = b"".join(related_stream([("application/octet-stream", content)], boundary))
    return Response(
        body, media_type=f'multipart/related; type="application/octet-stream"; boundary={boundary}'
    )


def _render_params(
    window: str | None, viewport: str | None
) -> tuple[tuple[float, float] | None, tuple[int, int] | None]:
    win = view = None
    try:
        if window:
            center, width, *_ = window.split(",")
            win = (float(center), float(width))
        if viewport:
            vw, vh, *_ = viewport.split(",")
            view = (int(vw), int(vh))
    except ValueError as exc:
        raise InvalidInput(
            "window is 'center,width[,function]', viewport is 'width,height'"
        ) from exc
    if view is not None and not (0 < view[0] <= 4096 and 0 < view[1] <= 4096):
        raise InvalidInput("viewport must be between 1 and 4096 pixels")
    if win is not None and win[1] <= 0:
        raise InvalidInput("window width must be positive")
    return win, view


def _image_type(request: Request) -> str:
    for media in parse_accept(request.headers.get("accept")):
        if media.type in ("image/png", "image/jpeg"):
            return media.type
        if media.type in ("*/*", "image/*"):
            return "image/png"
    if request.headers.get("accept"):
        raise NotAcceptable("rendered images are image/png or image/jpeg")
    return "image/png"


def _rendered(
    kahu: Kahu,
    request: Request,
    row: InstanceRow,
    frame: int,
    window: str | None,
    viewport: str | None,
    quality: int,
) -> Response:
    media = _image_type(request)
    win, view = _render_params(window, viewport)
    try:
        image = render(
            _dataset(kahu, row),
            frame=frame,
            media_type=media,
            window=win,
            viewport=view,
            quality=quality,
        )
    except CannotRender as exc:
        raise NotAcceptable(str(exc)) from exc
    return Response(image, media_type=media)


Window = Annotated[str | None, Query(max_length=100, description="center,width[,function]")]
Viewport = Annotated[str | None, Query(max_length=40, description="width,height")]
Quality = Annotated[int, Query(ge=1, le=100)]


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/rendered",
    summary="WADO-RS: the instance rendered as PNG or JPEG",
)
def rendered_instance(
    study: str,
    series: str,
    instance: str,
    request: Request,
    kahu: KahuDep,
    scope: Scope,
    window: Window = None,
    viewport: Viewport = None,
    quality: Quality = 90,
) -> Response:
    [row] = _instances(kahu, scope, study, series, instance)
    return _rendered(kahu, request, row, 1, window, viewport, quality)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frame}/rendered",
    summary="WADO-RS: one frame rendered as PNG or JPEG",
)
def rendered_frame(
    study: str,
    series: str,
    instance: str,
    frame: int,
    request: Request,
    kahu: KahuDep,
    scope: Scope,
    window: Window = None,
    viewport: Viewport = None,
    quality: Quality = 90,
) -> Response:
    [row] = _instances(kahu, scope, study, series, instance)
    return _rendered(kahu, request, row, frame, window, viewport, quality)


def _thumbnail(
    kahu: Kahu,
    request: Request,
    scope: SeriesScope,
    series: str,
    rows: list[InstanceRow],
    viewport: str | None,
) -> Response:
    """A rendered image where there is one, else a typed placeholder: never a 406 for a
    series or instance that exists (the gallery shows every series)."""
    media = _image_type(request)
    _, view = _render_params(None, viewport or f"{SIZE},{SIZE}")
    assert view is not None

    def modality() -> str:
        return kahu.catalog.get_series(scope, series).modality or ""

    picture, _ = make_thumbnail(
        rows, lambda row: _read(kahu, row), modality, size=view, media_type=media
    )
    return Response(picture, media_type=media)


@router.get("/studies/{study}/series/{series}/thumbnail", summary="WADO-RS: series thumbnail")
def series_thumbnail(
    study: str,
    series: str,
    request: Request,
    kahu: KahuDep,
    scope: Scope,
    viewport: Viewport = None,
) -> Response:
    rows = _instances(kahu, scope, study, series)
    if viewport is None and _image_type(request) == "image/png":
        # made by the series-thumbnails workflow (on arrival by default)
        with contextlib.suppress(NotFound):
            return Response(kahu.store.get(thumbnail_key(series)), media_type="image/png")
    return _thumbnail(kahu, request, scope, series, rows, viewport)


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/thumbnail",
    summary="WADO-RS: instance thumbnail",
)
def instance_thumbnail(
    study: str,
    series: str,
    instance: str,
    request: Request,
    kahu: KahuDep,
    scope: Scope,
    viewport: Viewport = None,
) -> Response:
    rows = _instances(kahu, scope, study, series, instance)
    return _thumbnail(kahu, request, scope, series, rows, viewport)
