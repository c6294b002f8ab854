"""Object store routes: a project's buckets, their objects, upload, download, delete.

Members of a project read its buckets; its scientists upload and delete."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from kahu.api.deps import CurrentUser, KahuDep
from kahu.auth.policy import require_role
from kahu.auth.projects import Role
from kahu.auth.users import UserPublic
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.core import Kahu
from kahu.errors import PayloadTooLarge
from kahu.storage.objects import ObjectStore

router = APIRouter(prefix="/api/v1/objects")
Bucket = Annotated[str, Path(max_length=63)]
Key = Annotated[str, Path(max_length=1024)]
#: the largest object one request may upload
MAX_OBJECT = 4 * 1024**3
#: objects listed per call
MAX_LISTED = 10_000
ProjectParam = Annotated[
    str, Query(max_length=64, description="whose buckets (default: the default project)")
]


def _store(kahu: Kahu, user: UserPublic, project: str, needed: Role) -> ObjectStore:
    require_role(kahu.projects, user, project, needed)
    return kahu.objects.of_project(project)


@router.get("", summary="Buckets")
def buckets(
    kahu: KahuDep, user: CurrentUser, project: ProjectParam = DEFAULT_PROJECT
) -> dict[str, Any]:
    return {"buckets": _store(kahu, user, project, "viewer").buckets()}


@router.get("/{bucket}", summary="Objects of a bucket")
def objects(
    bucket: Bucket,
    kahu: KahuDep,
    user: CurrentUser,
    prefix: Annotated[str, Query(max_length=1024)] = "",
    project: ProjectParam = DEFAULT_PROJECT,
) -> dict[str, Any]:
    listed = []
    for item in _store(kahu, user, project, "viewer").objects(bucket, prefix):
        listed.append(item.public())
        if len(listed) == MAX_LISTED:
            break
    return {"bucket": bucket, "objects": listed, "truncated": len(listed) == MAX_LISTED}


@router.get("/{bucket}/{key:path}", summary="Download an object")
def download(
    bucket: Bucket,
    key: Key,
    kahu: KahuDep,
    user: CurrentUser,
    project: ProjectParam = DEFAULT_PROJECT,
) -> StreamingResponse:
    handle = _store(kahu, user, project, "viewer").open(bucket, key)

    def chunks() -> Iterator[bytes]:
        with handle:
            while chunk := handle.read(1024 * 1024):
                yield chunk

    name = key.rsplit("/", 1)[-1]
    return StreamingResponse(
        chunks(),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.put("/{bucket}/{key:path}", status_code=201, summary="Upload an object (the body)")
async def upload(
    bucket: Bucket,
    key: Key,
    request: Request,
    kahu: KahuDep,
    user: CurrentUser,
    project: ProjectParam = DEFAULT_PROJECT,
) -> dict[str, Any]:
    store = _store(kahu, user, project, "scientist")
    store.check(bucket, key)  # refuse a bad name before reading the body
    size = 0
    with tempfile.NamedTemporaryFile(dir=kahu.settings.home, prefix=".upload-") as tmp:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_OBJECT:
                raise PayloadTooLarge(f"objects are at most {MAX_OBJECT} bytes")
            tmp.write(chunk)
        tmp.flush()
        store.put_file(bucket, key, FsPath(tmp.name))
    return {"project": project, "bucket": bucket, "key": key, "size": size}


@router.delete("/{bucket}/{key:path}", status_code=204, summary="Delete an object")
def delete(
    bucket: Bucket,
    key: Key,
    kahu: KahuDep,
    user: CurrentUser,
    project: ProjectParam = DEFAULT_PROJECT,
) -> Response:
    _store(kahu, user, project, "scientist").delete(bucket, key)
    return Response(status_code=204)
