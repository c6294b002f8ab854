"""A series: its metadata, thumbnail, lineage, download, send and delete, and the viewer."""

from __future__ import annotations

import contextlib
import io
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response

from kahu.actions import models as models_actions
from kahu.actions import series as series_actions
from kahu.api.deps import KahuDep
from kahu.auth.policy import readable_projects, require_role
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.errors import KahuError, NotFound
from kahu.flow.cohort import RunInput
from kahu.flow.launch import launch
from kahu.web.session import flash, page, session

router = APIRouter(include_in_schema=False)


# -- viewer --------------------------------------------------------------------------------------

#: window/level presets (name, centre, width)
PRESETS = [
    ("Soft tissue", 40, 400),
    ("Lung", -600, 1500),
    ("Bone", 300, 1500),
    ("Brain", 40, 80),
]


@router.get("/viewer/{series_uid}", response_class=HTMLResponse)
def viewer(request: Request, kahu: KahuDep, series_uid: str) -> Response:
    """The series in NiiVue, with the segmentations derived from it as overlays and the
    measurements of its structured reports beside it."""
    import pydicom

    from kahu.api.volumes import segments, series_files
    from kahu.operators.sr import sr_to_measurements

    s = session(request, kahu)
    row = kahu.catalog.get_series(s.scope, series_uid)
    overlays, reports = [], []
    for result in kahu.lineage.of(series_uid, s.scope.condition())["results"]:
        derived = kahu.catalog.get_series(s.scope, result["series_uid"])
        if derived.modality not in ("SEG", "SR"):
            continue
        with series_files(kahu, s.scope, derived.series_instance_uid) as files:
            ds = pydicom.dcmread(files[0], stop_before_pixels=True)
        description = derived.series_description or derived.modality
        if derived.modality == "SR":
            with contextlib.suppress(AttributeError, IndexError, KeyError, ValueError):
                reports.append({"description": description, **sr_to_measurements(ds)})
            continue  # (a report that is not TID 1500 has no measurements to show)
        overlays.append(
            {
                "uid": derived.series_instance_uid,
                "description": description,
                "url": f"/api/v1/series/{derived.series_instance_uid}/labels.nii.gz?"
                + urlencode({"on": series_uid}),
                "segments": segments(ds),
            }
        )
    may_draw = any(s.can(p, "scientist") for p in kahu.projects.series_projects(series_uid))
    config = {
        "series": series_uid,
        "volume": f"/api/v1/series/{series_uid}/volume.nii.gz",
        "overlays": overlays,
        "presets": [{"name": n, "center": c, "width": w} for n, c, w in PRESETS],
    }
    return page(
        request, "viewer.html",
        {"s": s, "page": "explore", "series": row, "config": config, "overlays": overlays,
         "presets": PRESETS, "may_draw": may_draw, "reports": reports},
    )  # fmt: skip


# -- series --------------------------------------------------------------------------------------


@router.get("/series/{series_uid}", response_class=HTMLResponse)
def series_page(
    request: Request,
    kahu: KahuDep,
    series_uid: str,
    msg: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    """All of a series' metadata, its thumbnail, lineage and what can be done with it."""
    s = session(request, kahu)
    row = kahu.catalog.get_series(s.scope, series_uid)
    visible = (
        None if s.user.is_admin else kahu.curation.names(readable_projects(kahu.projects, s.user))
    )
    document = row.full_document()
    if visible is not None:
        document["dataset"] = [d for d in row.datasets if d in visible]
    lineage = kahu.lineage.of(series_uid, s.scope.condition())
    projects = kahu.projects.series_projects(series_uid)
    shown = [p for p in projects if s.user.is_admin or p in s.roles]
    senders = [p for p in shown if s.can(p, "scientist")]
    nodes = [n for n in kahu.nodes.list() if set(n.projects) & set(senders)]
    models = models_actions.runnable(kahu, s.user, senders)
    return page(
        request, "series.html",
        {"s": s, "page": "explore", "series": row, "document": sorted(document.items()),
         "lineage": lineage, "projects": shown, "nodes": nodes, "senders": senders, "msg": msg,
         "models": models},
    )  # fmt: skip


@router.get("/series/{series_uid}/download")
def download_series(request: Request, kahu: KahuDep, series_uid: str) -> Response:
    """The series' files as stored, in a zip (audited as a retrieval)."""
    import zipfile

    s = session(request, kahu)
    rows = kahu.catalog.instances(s.scope, series_uid=series_uid)
    if not rows:
        raise NotFound(f"no series {series_uid}")
    kahu.audit.record(
        s.user.name, "retrieve", path="GET /series/{series_uid}/download",
        client=request.client.host if request.client else "", series=[series_uid], status=200,
    )  # fmt: skip
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for row in rows:
            archive.writestr(
                f"{series_uid}/{row.sop_instance_uid}.dcm", kahu.store.get(row.blob_key)
            )
    return Response(
        out.getvalue(),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{series_uid}.zip"'},
    )


@router.get("/series/{series_uid}/report")
def open_report(request: Request, kahu: KahuDep, series_uid: str) -> Response:
    """The PDF of an Encapsulated PDF series (a workflow's report), shown in the browser
    (audited as a retrieval). Its scripts do not run: the page is sandboxed."""
    import pydicom

    s = session(request, kahu)
    rows = kahu.catalog.instances(s.scope, series_uid=series_uid)
    for row in sorted(rows, key=lambda r: r.instance_number or 0):
        ds = pydicom.dcmread(io.BytesIO(kahu.store.get(row.blob_key)))
        if ds.get("MIMETypeOfEncapsulatedDocument") == "application/pdf":
            break
    else:
        raise NotFound(f"series {series_uid} holds no PDF")
    kahu.audit.record(
        s.user.name, "retrieve", path="GET /series/{series_uid}/report",
        client=request.client.host if request.client else "", series=[series_uid], status=200,
    )  # fmt: skip
    data = bytes(ds.EncapsulatedDocument)
    if length := ds.get("EncapsulatedDocumentLength"):
        data = data[: int(length)]  # without the pad byte of an odd length
    elif data.endswith(b"\x00"):
        data = data[:-1]  # a PDF ends with %%EOF and a line end, never a NUL
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Content-Disposition": f'inline; filename="{series_uid}.pdf"',
            "Content-Security-Policy": "sandbox",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/series/{series_uid}/send")
def send_series(
    request: Request,
    kahu: KahuDep,
    series_uid: str,
    csrf: Annotated[str, Form(max_length=128)] = "",
    node: Annotated[str, Form(max_length=64)] = "",
    project: Annotated[str, Form(max_length=64)] = DEFAULT_PROJECT,
) -> Response:
    s = session(request, kahu, change=csrf)
    back = f"/series/{series_uid}"
    try:
        require_role(kahu.projects, s.user, project, "scientist")
        ids = launch(
            kahu.catalog, kahu.workflows, kahu.flow, "send-to-node", {"node": node},
            RunInput(series_uids=(series_uid,)), audit=kahu.audit,
            path="POST /series/{series_uid}/send", created_by=s.user.name, project=project,
        )  # fmt: skip
    except KahuError as exc:
        return flash(back, f"Not sent: {exc}")
    return flash(back, f"Sending to {node}: run {ids[0]}.")


@router.post("/series/{series_uid}/segment")
def segment_series(
    request: Request,
    kahu: KahuDep,
    series_uid: str,
    csrf: Annotated[str, Form(max_length=128)] = "",
    model: Annotated[str, Form(max_length=100)] = "",
    project: Annotated[str, Form(max_length=64)] = DEFAULT_PROJECT,
) -> Response:
    """Run an installed model on the series (its format's workflow), in ``project``."""
    s = session(request, kahu, change=csrf)
    back = f"/series/{series_uid}"
    try:
        cohort = RunInput(series_uids=(series_uid,))
        path = "POST /series/{series_uid}/segment"
        chosen, ids = models_actions.segment(kahu, s.user, model, project, cohort, path)
    except KahuError as exc:
        return flash(back, f"Not started: {exc}")
    return flash(back, f"Segmenting with {chosen.ref}: run {ids[0]}.")


@router.post("/series/{series_uid}/delete")
def delete_series_page(
    request: Request,
    kahu: KahuDep,
    series_uid: str,
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    s = session(request, kahu, change=csrf)
    actor = s.actor(request, "POST /series/{series_uid}/delete")
    return flash("/explore", series_actions.delete_series(kahu, actor, series_uid).message)
