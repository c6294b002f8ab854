"""STOW-RS (PS3.18 10.5): store instances, answer per instance, never all-or-nothing."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from kahu.api.deps import CurrentUser, KahuDep
from kahu.auth.policy import require_role
from kahu.auth.users import UserPublic
from kahu.catalog.records import IngestResult
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.core import Kahu
from kahu.dicom.json_model import BASE_MARKER
from kahu.dicomweb.common import dicom_json, uids
from kahu.dicomweb.multipart import parse_media_type, split_related
from kahu.errors import InvalidInput, PayloadTooLarge, StorageError

router = APIRouter()

# Failure Reason (0008,1197) values, PS3.18 Table 10.5.3-2 / PS3.4 Annex B
OUT_OF_RESOURCES = 0xA700
DATA_SET_MISMATCH = 0xA900
CANNOT_UNDERSTAND = 0xC000
STUDY_MISMATCH = 0xC122  # "Referenced SOP Instance is not in the study" (dcm4chee, Orthanc)


class UnsupportedMediaType(InvalidInput):
    """The request body is not multipart/related application/dicom (HTTP 415)."""

    http_status = 415


def _uid(tag: str, vr: str, value: str | None) -> tuple[str, dict[str, Any]]:
    return tag, ({"vr": vr, "Value": [value]} if value else {"vr": vr})


async def _body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body larger than {limit} bytes")
    return b"".join(chunks)  # one copy of a large body, not one per growth of a buffer


def _split_and_store(
    kahu: Kahu, body: bytes, boundary: str, root_type: str, study: str | None, project: str
) -> list[tuple[IngestResult, int]]:
    return _store_parts(kahu, split_related(body, boundary), root_type, study, project)


def _store_parts(
    kahu: Kahu,
    parts: list[tuple[dict[str, str], bytes]],
    root_type: str,
    study: str | None,
    project: str,
) -> list[tuple[IngestResult, int]]:
    """Ingest the DICOM parts as one group commit; report every part in order."""
    results: list[tuple[IngestResult, int] | None] = [None] * len(parts)
    dicom: list[tuple[int, bytes]] = []
    for index, (headers, content) in enumerate(parts):
        part_type = parse_media_type(headers.get("content-type", root_type)).type
        if part_type == "application/dicom":
            dicom.append((index, content))
        else:
            results[index] = (
                IngestResult(
                    "rejected", reason=f"part of type {part_type!r} is not application/dicom"
                ),
                DATA_SET_MISMATCH,
            )
    try:
        stored = kahu.ingestor.ingest_many(
            [c for _, c in dicom], source="stow", expect_study=study, project=project
        )
    except StorageError as exc:
        stored = [IngestResult("rejected", reason=str(exc))] * len(dicom)
        reasons = [OUT_OF_RESOURCES] * len(dicom)
    else:
        reasons = [
            STUDY_MISMATCH if r.reason and "belongs to study" in r.reason else CANNOT_UNDERSTAND
            for r in stored
        ]
    for (index, _), result, reason in zip(dicom, stored, reasons, strict=True):
        results[index] = (result, reason)
    return [r for r in results if r is not None]


async def _stow(
    request: Request, kahu: Kahu, user: UserPublic, study: str | None, project: str
) -> Response:
    # the caller stores into a project where they may add data (before reading the body)
    require_role(kahu.projects, user, project, "scientist")
    media = parse_media_type(request.headers.get("content-type", ""))
    root_type = media.params.get("type", "application/dicom").lower()
    if media.type != "multipart/related" or root_type != "application/dicom":
        raise UnsupportedMediaType(
            f'STOW-RS takes multipart/related; type="application/dicom", not {media.type!r}'
            + (f" of {root_type!r}" if media.type == "multipart/related" else "")
        )
    body = await _body(request, kahu.settings.imports.max_archive_bytes)
    boundary = media.params.get("boundary", "")
    # splitting copies every part: off the event loop, which goes on receiving other requests
    results = await run_in_threadpool(
        _split_and_store, kahu, body, boundary, root_type, study, project
    )
    del body
    stored, failed = [], []
    for result, reason in results:
        item = dict(
            [
                _uid("00081150", "UI", result.sop_class_uid),
                _uid("00081155", "UI", result.sop_instance_uid),
            ]
        )
        if result.status == "rejected":
            item["00081197"] = {"vr": "US", "Value": [reason]}
            item["00000902"] = {"vr": "LO", "Value": [(result.reason or "rejected")[:64]]}
            failed.append(item)
        else:
            url = (
                f"{BASE_MARKER}studies/{result.study_instance_uid}/series/"
                f"{result.series_instance_uid}/instances/{result.sop_instance_uid}"
            )
            item["00081190"] = {"vr": "UR", "Value": [url]}
            stored.append(item)
    payload: dict[str, Any] = {}
    if study is not None:
        payload["00081190"] = {"vr": "UR", "Value": [f"{BASE_MARKER}studies/{study}"]}
    if stored:
        payload["00081199"] = {"vr": "SQ", "Value": stored}
    if failed:
        payload["00081198"] = {"vr": "SQ", "Value": failed}
    status = 200 if not failed else 409 if not stored else 202
    return dicom_json(payload, request, status_code=status)


Project = Annotated[
    str, Query(max_length=64, description="the project the instances enter (Kahu's own)")
]


@router.post("/studies", summary="STOW-RS: store instances")
async def store_instances(
    request: Request, kahu: KahuDep, user: CurrentUser, project: Project = DEFAULT_PROJECT
) -> Response:
    return await _stow(request, kahu, user, None, project)


@router.post("/studies/{study}", summary="STOW-RS: store instances of one study")
async def store_study_instances(
    study: str,
    request: Request,
    kahu: KahuDep,
    user: CurrentUser,
    project: Project = DEFAULT_PROJECT,
) -> Response:
    uids(study)
    return await _stow(request, kahu, user, study, project)
