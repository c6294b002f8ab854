"""Search routes: the fields a query can use and their values (autocomplete)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel

from kahu.api.deps import CurrentUser, KahuDep
from kahu.search.facts import field_counts, field_values

router = APIRouter(prefix="/api/v1")


class FieldPublic(BaseModel):
    name: str
    type: str
    series: int


class ValuePublic(BaseModel):
    value: Any
    series: int


@router.get(
    "/fields",
    response_model=list[FieldPublic],
    summary="Fields series have, with their type and how many series have each",
)
def list_fields(kahu: KahuDep, _user: CurrentUser) -> list[FieldPublic]:
    return [
        FieldPublic(name=f.name, type=f.type, series=f.series) for f in field_counts(kahu.catalog)
    ]


@router.get(
    "/fields/{name}/values",
    response_model=list[ValuePublic],
    summary="The commonest values of a field, optionally those starting with a prefix",
    responses={400: {"description": "unknown field"}},
)
def list_field_values(
    kahu: KahuDep,
    _user: CurrentUser,
    name: Annotated[str, Path(max_length=256)],
    prefix: Annotated[str, Query(max_length=256)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[ValuePublic]:
    values = field_values(kahu.catalog, name, prefix=prefix, limit=limit)
    return [ValuePublic(value=v.value, series=v.series) for v in values]
