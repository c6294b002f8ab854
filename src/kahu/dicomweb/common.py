"""Shared pieces of the DICOMweb routes: responses, base URLs, UID path parameters."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from kahu.dicom.json_model import BASE_MARKER
from kahu.dicom.uids import validate_uid

DICOM_JSON = "application/dicom+json"


def base_url(request: Request) -> str:
    """The URL of the DICOMweb root, ending in '/'."""
    public = request.app.state.kahu.settings.http.public_url
    return f"{public}/dicomweb/" if public else f"{request.base_url}dicomweb/"


def dicom_json(payload: Any, request: Request, status_code: int = 200) -> Response:
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return Response(
        text.replace(BASE_MARKER, base_url(request)), status_code=status_code, media_type=DICOM_JSON
    )


def uids(study: str, series: str | None = None, instance: str | None = None) -> None:
    validate_uid(study, "StudyInstanceUID")
    if series is not None:
        validate_uid(series, "SeriesInstanceUID")
    if instance is not None:
        validate_uid(instance, "SOPInstanceUID")
