"""Catalog routes: series, instances, datasets, upload, stats."""

from __future__ import annotations

import dataclasses
import tempfile
from typing import IO, Annotated

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile as StarletteUploadFile

from kahu.actions import series as series_actions
from kahu.api.deps import ActorDep, CurrentUser, KahuDep, Scope
from kahu.api.schemas import (
    Document,
    FileReportPublic,
    InstancePublic,
    SeriesPage,
    SeriesPublic,
    StatsPublic,
    UploadReport,
)
from kahu.auth.policy import readable_projects, require_role
from kahu.auth.users import UserPublic
from kahu.catalog.records import SeriesRow
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.core import Kahu
from kahu.dicom.uids import validate_uid
from kahu.imports import FileReport, Importer
from kahu.search.fields import resolve
from kahu.search.query import MAX_LENGTH, And, Compare, parse
from kahu.search.series import search_series

router = APIRouter(prefix="/api/v1")

UPLOAD_TYPES = (
    "multipart/form-data",
    "application/zip",
    "application/dicom",
    "application/octet-stream",
    "application/x-zip-compressed",
)


def _visible(kahu: Kahu, user: UserPublic, row: SeriesRow) -> SeriesRow:
    """The row with only the datasets the caller may see (those of their projects)."""
    if user.is_admin or not row.datasets:
        return row
    names = kahu.curation.names(readable_projects(kahu.projects, user))
    return dataclasses.replace(row, datasets=[d for d in row.datasets if d in names])


def _series_public(row: SeriesRow) -> SeriesPublic:
    return SeriesPublic(
        series_instance_uid=row.series_instance_uid,
        study_instance_uid=row.study_instance_uid,
        patient_id=row.patient_id,
        modality=row.modality,
        series_description=row.series_description,
        instance_count=row.instance_count,
        size_bytes=row.size_bytes,
        received_at=row.received_at,
        updated_at=row.updated_at,
        datasets=row.datasets,
    )


@router.get("/stats", response_model=StatsPublic, summary="Counts of the catalog")
def stats(kahu: KahuDep, scope: Scope) -> StatsPublic:
    c = kahu.catalog.counts(scope)
    return StatsPublic(
        patients=c.patients,
        studies=c.studies,
        series=c.series,
        instances=c.instances,
        size_bytes=c.size_bytes,
    )


@router.get(
    "/series",
    response_model=SeriesPage,
    summary="Find series with a query (Lucene syntax), newest first",
    responses={400: {"description": "the query cannot be run; the message says why"}},
)
def list_series(
    kahu: KahuDep,
    scope: Scope,
    user: CurrentUser,
    q: Annotated[
        str,
        Query(
            max_length=MAX_LENGTH,
            description="Lucene query string over the series metadata (docs/search.md); "
            "empty or * for every series",
        ),
    ] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
    dataset: Annotated[str | None, Query(max_length=64)] = None,
    sort: Annotated[
        str,
        Query(
            max_length=512,
            description="fields to sort by, comma-separated, '-' for descending "
            "(e.g. '-StudyDate,SeriesNumber'); newest first by default and for ties",
        ),
    ] = "",
) -> SeriesPage:
    node = parse(q)
    if dataset is not None:  # explicit, frozen or query-defined alike
        node = And((node, Compare(resolve("dataset"), dataset)))
    rows, total = search_series(
        kahu.catalog,
        scope,
        node,
        limit=limit,
        offset=offset,
        sort=sort,
        index=kahu.search_index,
    )
    return SeriesPage(
        total=total,
        limit=limit,
        offset=offset,
        items=[_series_public(_visible(kahu, user, r)) for r in rows],
    )


@router.get(
    "/series/{series_uid}",
    response_model=Document,
    summary="The full metadata document of a series",
)
def get_series(series_uid: str, kahu: KahuDep, scope: Scope, user: CurrentUser) -> Document:
    uid = validate_uid(series_uid, "SeriesInstanceUID")
    row = _visible(kahu, user, kahu.catalog.get_series(scope, uid))
    return Document(series_instance_uid=row.series_instance_uid, document=row.full_document())


@router.get("/series/{series_uid}/instances", response_model=list[InstancePublic])
def series_instances(series_uid: str, kahu: KahuDep, scope: Scope) -> list[InstancePublic]:
    uid = validate_uid(series_uid, "SeriesInstanceUID")
    kahu.catalog.get_series(scope, uid)
    return [
        InstancePublic(
            sop_instance_uid=i.sop_instance_uid,
            sop_class_uid=i.sop_class_uid,
            transfer_syntax_uid=i.transfer_syntax_uid,
            instance_number=i.instance_number,
            size_bytes=i.size_bytes,
            number_of_frames=i.number_of_frames,
            rows=i.rows,
            columns=i.columns,
        )
        for i in kahu.catalog.instances(scope, series_uid=uid)
    ]


@router.delete("/series/{series_uid}", status_code=204, summary="Delete a series and its files")
def delete_series(series_uid: str, kahu: KahuDep, actor: ActorDep) -> Response:
    series_actions.delete_series(kahu, actor, series_uid)
    return Response(status_code=204)


def _summary(reports: list[FileReport]) -> UploadReport:
    files = [FileReportPublic(**r.as_dict()) for r in reports]
    return UploadReport(
        stored=sum(r.status == "stored" for r in reports),
        duplicate=sum(r.status == "duplicate" for r in reports),
        rejected=sum(r.status == "rejected" for r in reports),
        files=files,
    )


@router.post(
    "/upload",
    response_model=UploadReport,
    summary="Upload DICOM files or zip archives",
    description="multipart/form-data with one or more `files`, or a body of type "
    "application/zip or application/dicom. Reports every file: stored, duplicate or rejected.",
)
async def upload(
    request: Request,
    kahu: KahuDep,
    user: CurrentUser,
    dataset: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9 ._-]+$")] = None,
    project: Annotated[
        str | None, Query(max_length=64, description="the project the series enter")
    ] = None,
) -> UploadReport:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in UPLOAD_TYPES:
        raise HTTPException(
            415,
            f"unsupported content type {content_type or '(none)'!r}; send "
            "multipart/form-data, application/zip or application/dicom",
        )
    # the caller adds data to a project where they may (404 for a project they cannot see)
    require_role(kahu.projects, user, project or DEFAULT_PROJECT, "scientist")
    importer = Importer(kahu.ingestor, kahu.settings.imports, project)
    reports: list[FileReport] = []
    if content_type == "multipart/form-data":
        form = await request.form(max_files=10_000, max_fields=100)
        try:
            uploads = [v for v in form.getlist("files") if isinstance(v, StarletteUploadFile)]
            if not uploads:
                raise HTTPException(400, "no 'files' in the form")
            for item in uploads:
                reports.extend(await _run(importer, item.filename or "upload", item.file, dataset))
        finally:
            await form.close()
        return _summary(reports)
    limit = kahu.settings.imports.max_archive_bytes
    with tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"body larger than {limit} bytes")
            spool.write(chunk)
        spool.seek(0)
        name = request.headers.get("content-disposition", "body")[:200]
        reports = await _run(importer, name, spool, dataset)
    return _summary(reports)


async def _run(
    importer: Importer, name: str, stream: IO[bytes], dataset: str | None
) -> list[FileReport]:
    def work() -> list[FileReport]:
        return list(importer.import_stream(name, stream, dataset=dataset))

    return await run_in_threadpool(work)
