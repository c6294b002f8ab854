"""QIDO-RS (PS3.18 10.6): search for studies, series and instances."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from sqlalchemy import ColumnElement, func, select

from kahu.api.deps import KahuDep, Scope
from kahu.catalog.dicom_query import ATTRIBUTES, DERIVED, UNIQUE_KEYS, Level
from kahu.catalog.scope import SeriesScope
from kahu.catalog.tables import Instance, InstanceMetadata, Series, Study
from kahu.core import Kahu
from kahu.dicom.json_model import BASE_MARKER, attribute
from kahu.dicomweb.common import dicom_json, uids
from kahu.errors import InvalidInput
from kahu.search.query import MAX_LENGTH
from kahu.search.series import series_condition

router = APIRouter()

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000

DEFAULTS: dict[Level, list[str]] = {
    Level.STUDY: [
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ModalitiesInStudy",
        "ReferringPhysicianName",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "StudyDescription",
        "NumberOfStudyRelatedSeries",
        "NumberOfStudyRelatedInstances",
    ],
    Level.SERIES: [
        "Modality",
        "SeriesDescription",
        "SeriesInstanceUID",
        "SeriesNumber",
        "SeriesDate",
        "BodyPartExamined",
        "NumberOfSeriesRelatedInstances",
        "StudyInstanceUID",
    ],
    Level.IMAGE: [
        "SOPClassUID",
        "SOPInstanceUID",
        "InstanceNumber",
        "Rows",
        "Columns",
        "NumberOfFrames",
        "StudyInstanceUID",
        "SeriesInstanceUID",
    ],
}
_TAG_RE = re.compile(r"^[0-9A-Fa-f]{8}$")


def _keyword(key: str) -> str:
    if _TAG_RE.match(key):
        keyword = keyword_for_tag(int(key, 16))
        if not keyword:
            raise InvalidInput(f"unknown attribute tag {key}")
        return keyword
    if tag_for_keyword(key) is None:
        raise InvalidInput(f"unknown attribute {key!r}")
    return key


def _int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise InvalidInput(f"{name} must be an integer, got {text!r}") from exc
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}")
    return value


def _parse(request: Request) -> tuple[dict[str, str], set[str], int, int, bool, str]:
    filters: dict[str, str] = {}
    include: set[str] = set()
    limit, offset, fuzzy, query = DEFAULT_LIMIT, 0, False, ""
    for key, value in request.query_params.multi_items():
        name = key.strip()
        lower = name.lower()
        if name == "q":  # Kahu's search query (docs/search.md); no DICOM keyword is "q"
            if len(value) > MAX_LENGTH:
                raise InvalidInput(f"the query is longer than {MAX_LENGTH} characters")
            query = value
        elif lower == "includefield":
            for item in value.split(","):
                item = item.strip()
                if item:
                    include.add("all" if item.lower() == "all" else _keyword(item))
        elif lower == "limit":
            limit = _int("limit", value, 1, MAX_LIMIT)
        elif lower == "offset":
            offset = _int("offset", value, 0, 10**9)
        elif lower == "fuzzymatching":
            if value.lower() not in ("true", "false"):
                raise InvalidInput("fuzzymatching must be true or false")
            fuzzy = value.lower() == "true"
        elif lower == "orderby":
            continue  # results come in catalog order; ordering is optional in PS3.18
        else:
            keyword = _keyword(name)
            if keyword not in ATTRIBUTES and keyword not in DERIVED:
                raise InvalidInput(f"{keyword} is not a supported matching key")
            filters[keyword] = value
    return filters, include, limit, offset, fuzzy, query


def _retrieve_url(level: Level, row: dict[str, Any]) -> str:
    url = f"{BASE_MARKER}studies/{row['StudyInstanceUID']}"
    if level in (Level.SERIES, Level.IMAGE):
        url += f"/series/{row['SeriesInstanceUID']}"
    if level is Level.IMAGE:
        url += f"/instances/{row['SOPInstanceUID']}"
    return url


def _representatives(
    kahu: Kahu, scope: SeriesScope, level: Level, rows: list[dict[str, Any]]
) -> dict[str, str]:
    """The first instance of each result (study, series or itself) the caller may read, for
    includefield."""
    key = UNIQUE_KEYS[level]
    values = [r[key] for r in rows]
    if level is Level.IMAGE:
        return {v: v for v in values}
    column = Study.study_instance_uid if level is Level.STUDY else Series.series_instance_uid
    first = (
        select(column, func.min(Instance.id))
        .select_from(Instance)
        .join(Series, Instance.series_pk == Series.id)
        .join(Study, Series.study_pk == Study.id)
        .where(column.in_(values), scope.clause())
        .group_by(column)
        .subquery()
    )
    stmt = select(first.c[0], Instance.sop_instance_uid).join(Instance, Instance.id == first.c[1])
    with kahu.db.read() as s:
        return {owner: sop for owner, sop in s.execute(stmt).all()}


def _instance_json(kahu: Kahu, sops: list[str]) -> dict[str, dict[str, Any]]:
    kahu.metadata.ensure(sops)
    stmt = (
        select(Instance.sop_instance_uid, InstanceMetadata.dicom_json)
        .join(InstanceMetadata, InstanceMetadata.instance_pk == Instance.id)
        .where(Instance.sop_instance_uid.in_(sops))
    )
    with kahu.db.read() as s:
        return {sop: json.loads(text) for sop, text in s.execute(stmt).all()}


def search(
    kahu: Kahu, scope: SeriesScope, request: Request, level: Level, fixed: dict[str, str]
) -> Response:
    filters, include, limit, offset, fuzzy, query = _parse(request)
    filters.update(fixed)
    extra: list[ColumnElement[bool]] = []
    if query:
        matched = series_condition(kahu.catalog, query)
        if level is Level.STUDY:  # studies with a matching series
            extra.append(Study.id.in_(select(Series.study_pk).where(matched)))
        else:  # the series, or the instances of the series, that match
            extra.append(matched)
    rows = kahu.query.search(
        scope,
        level,
        filters,
        limit=limit,
        offset=offset,
        fuzzy=fuzzy,
        extra_conditions=extra,
    )
    wanted = list(DEFAULTS[level])
    if level is not Level.STUDY and "StudyInstanceUID" not in fixed:
        wanted += [k for k in DEFAULTS[Level.STUDY] if k not in wanted and k not in DERIVED]
    asked = [k for k in include if k != "all" and k not in wanted]
    known = [k for k in asked if k in ATTRIBUTES or k in DERIVED]
    wanted += known
    from_instances = [k for k in asked if k not in known]
    docs: dict[str, dict[str, Any]] = {}
    if rows and (from_instances or "all" in include):
        owners = _representatives(kahu, scope, level, rows)
        by_sop = _instance_json(kahu, list(owners.values()))
        docs = {owner: by_sop.get(sop, {}) for owner, sop in owners.items()}
    results = []
    for row in rows:
        item: dict[str, Any] = {}
        for keyword in wanted:
            if keyword in row:
                tag, entry = attribute(keyword, row[keyword])
                item[tag] = entry
        doc = docs.get(row[UNIQUE_KEYS[level]], {})
        if "all" in include:
            for tag, entry in doc.items():
                item.setdefault(tag, entry)
        for keyword in from_instances:
            tag = f"{tag_for_keyword(keyword):08X}"
            if tag in doc:
                item[tag] = doc[tag]
        item["00080056"] = {"vr": "CS", "Value": ["ONLINE"]}
        item["00081190"] = {"vr": "UR", "Value": [_retrieve_url(level, row)]}
        results.append(dict(sorted(item.items())))
    return dicom_json(results, request)


@router.get("/studies", summary="QIDO-RS: search for studies")
def search_studies(request: Request, kahu: KahuDep, scope: Scope) -> Response:
    return search(kahu, scope, request, Level.STUDY, {})


@router.get("/series", summary="QIDO-RS: search for series")
def search_series(request: Request, kahu: KahuDep, scope: Scope) -> Response:
    return search(kahu, scope, request, Level.SERIES, {})


@router.get("/instances", summary="QIDO-RS: search for instances")
def search_instances(request: Request, kahu: KahuDep, scope: Scope) -> Response:
    return search(kahu, scope, request, Level.IMAGE, {})


@router.get("/studies/{study}/series", summary="QIDO-RS: series of a study")
def search_study_series(study: str, request: Request, kahu: KahuDep, scope: Scope) -> Response:
    uids(study)
    return search(kahu, scope, request, Level.SERIES, {"StudyInstanceUID": study})


@router.get("/studies/{study}/instances", summary="QIDO-RS: instances of a study")
def search_study_instances(study: str, request: Request, kahu: KahuDep, scope: Scope) -> Response:
    uids(study)
    return search(kahu, scope, request, Level.IMAGE, {"StudyInstanceUID": study})


@router.get("/studies/{study}/series/{series}/instances", summary="QIDO-RS: instances of a series")
def search_series_instances(
    study: str, series: str, request: Request, kahu: KahuDep, scope: Scope
) -> Response:
    uids(study, series)
    return search(
        kahu, scope, request, Level.IMAGE, {"StudyInstanceUID": study, "SeriesInstanceUID": series}
    )
