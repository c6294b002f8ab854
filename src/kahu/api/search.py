"""Search routes: the fields a query can use and their values (autocomplete)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field

from kahu.api.deps import CurrentUser, KahuDep, Scope
from kahu.auth.policy import readable_projects
from kahu.auth.users import UserPublic
from kahu.core import Kahu
from kahu.search import aggregations as agg
from kahu.search.facts import field_counts, field_values
from kahu.search.fields import resolve
from kahu.search.query import MAX_LENGTH, parse

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
def list_fields(kahu: KahuDep, scope: Scope) -> list[FieldPublic]:
    counts = field_counts(kahu.catalog, scope.condition())
    return [FieldPublic(name=f.name, type=f.type, series=f.series) for f in counts]


@router.get(
    "/fields/{name}/values",
    response_model=list[ValuePublic],
    summary="The commonest values of a field, optionally those starting with a prefix",
    responses={400: {"description": "unknown field"}},
)
def list_field_values(
    kahu: KahuDep,
    scope: Scope,
    user: CurrentUser,
    name: Annotated[str, Path(max_length=256)],
    prefix: Annotated[str, Query(max_length=256)] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[ValuePublic]:
    values = field_values(
        kahu.catalog, scope, name, prefix=prefix, limit=limit, index=kahu.search_index
    )
    hidden = hidden_datasets(kahu, user) if resolve(name).column == "dataset" else set()
    return [ValuePublic(value=v.value, series=v.series) for v in values if v.value not in hidden]


def hidden_datasets(kahu: Kahu, user: UserPublic) -> set[str]:
    """Datasets of projects the caller is not in: their names are not shown (the series
    they see may be in such a dataset too)."""
    if user.is_admin:
        return set()
    return kahu.curation.names() - kahu.curation.names(readable_projects(kahu.projects, user))


class TermsFacet(BaseModel):
    type: Literal["terms"]
    field: str = Field(max_length=256)
    size: int = Field(default=10, ge=1, le=1000)


class HistogramFacet(BaseModel):
    type: Literal["histogram"]
    field: str = Field(max_length=256)
    interval: float = Field(gt=0)


class DateHistogramFacet(BaseModel):
    type: Literal["date_histogram"]
    field: str = Field(max_length=256)
    interval: Literal["year", "month", "day"] = "year"


class DistinctFacet(BaseModel):
    type: Literal["distinct"]
    of: Literal["patients", "studies", "series"]


FacetRequest = Annotated[
    TermsFacet | HistogramFacet | DateHistogramFacet | DistinctFacet, Field(discriminator="type")
]


class AggregationRequest(BaseModel):
    q: str = Field(default="", max_length=MAX_LENGTH, description="Lucene query (docs/search.md)")
    facets: dict[str, FacetRequest] = Field(default_factory=dict, max_length=agg.MAX_FACETS)


class BucketPublic(BaseModel):
    key: Any
    count: int


class FacetPublic(BaseModel):
    buckets: list[BucketPublic]
    missing: int | None = None
    count: int | None = None


class AggregationResponse(BaseModel):
    total: int
    facets: dict[str, FacetPublic]


def _facet(request: TermsFacet | HistogramFacet | DateHistogramFacet | DistinctFacet) -> agg.Facet:
    if isinstance(request, TermsFacet):
        return agg.Terms(request.field, request.size)
    if isinstance(request, HistogramFacet):
        return agg.Histogram(request.field, request.interval)
    if isinstance(request, DateHistogramFacet):
        return agg.DateHistogram(request.field, request.interval)
    return agg.Distinct(request.of)


@router.post(
    "/aggregations",
    response_model=AggregationResponse,
    summary="Count the series a query matches and draw facets over them, in one call",
    responses={400: {"description": "the query or a facet cannot be run; the message says why"}},
)
def aggregations(
    body: AggregationRequest, kahu: KahuDep, scope: Scope, user: CurrentUser
) -> AggregationResponse:
    total, results = agg.aggregate(
        kahu.catalog,
        scope,
        parse(body.q),
        {name: _facet(f) for name, f in body.facets.items()},
        index=kahu.search_index,
    )
    datasets = [
        name
        for name, f in body.facets.items()
        if not isinstance(f, DistinctFacet) and resolve(f.field).column == "dataset"
    ]
    hidden = hidden_datasets(kahu, user) if datasets else set()
    return AggregationResponse(
        total=total,
        facets={
            name: FacetPublic(
                buckets=[
                    BucketPublic(key=b.key, count=b.count)
                    for b in r.buckets
                    if not (name in datasets and b.key in hidden)
                ],
                missing=r.missing,
                count=r.count,
            )
            for name, r in results.items()
        },
    )
