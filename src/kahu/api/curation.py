"""Curation routes: datasets (explicit, query-defined, frozen) and tags on series."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from kahu.api.deps import CurrentUser, KahuDep
from kahu.api.schemas import DatasetPublic
from kahu.catalog.curation import DatasetInfo
from kahu.search.query import MAX_LENGTH

router = APIRouter(prefix="/api/v1")
MAX_SERIES = 10_000
NameParam = Annotated[str, Path(max_length=64)]
SeriesList = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=MAX_SERIES)]
TagList = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=100)]


class DatasetCreate(BaseModel):
    name: str = Field(max_length=64)
    description: str = Field(default="", max_length=4000)
    query: str | None = Field(
        default=None,
        max_length=MAX_LENGTH,
        description="Lucene query: the dataset is what it matches",
    )
    series: SeriesList = Field(default_factory=list, description="SeriesInstanceUIDs")


class MembershipChange(BaseModel):
    add: SeriesList = Field(default_factory=list)
    remove: SeriesList = Field(default_factory=list)


class TagChange(BaseModel):
    series: SeriesList
    add: TagList = Field(default_factory=list)
    remove: TagList = Field(default_factory=list)


def _public(info: DatasetInfo) -> DatasetPublic:
    return DatasetPublic(
        name=info.name,
        kind=info.kind,
        origin=info.origin,
        description=info.description,
        query=info.query,
        frozen_at=info.frozen_at,
        created_at=info.created_at,
        series_count=info.series_count,
    )


@router.get("/datasets", response_model=list[DatasetPublic], summary="Datasets with their sizes")
def list_datasets(kahu: KahuDep, _user: CurrentUser) -> list[DatasetPublic]:
    return [_public(d) for d in kahu.curation.datasets()]


@router.post(
    "/datasets",
    response_model=DatasetPublic,
    status_code=201,
    summary="Create a dataset from a query (it follows the query) or from a list of series",
)
def create_dataset(body: DatasetCreate, kahu: KahuDep, _user: CurrentUser) -> DatasetPublic:
    info = kahu.curation.create_dataset(
        body.name, query=body.query, series=body.series, description=body.description
    )
    return _public(info)


@router.get("/datasets/{name}", response_model=DatasetPublic)
def get_dataset(name: NameParam, kahu: KahuDep, _user: CurrentUser) -> DatasetPublic:
    return _public(kahu.curation.dataset(name))


@router.post(
    "/datasets/{name}/series",
    response_model=DatasetPublic,
    summary="Add and remove series (explicit and frozen datasets)",
)
def change_members(
    name: NameParam, body: MembershipChange, kahu: KahuDep, _user: CurrentUser
) -> DatasetPublic:
    info = kahu.curation.dataset(name)
    if body.add:
        info = kahu.curation.add_series(name, body.add)
    if body.remove:
        info = kahu.curation.remove_series(name, body.remove)
    return _public(info)


@router.post(
    "/datasets/{name}/freeze",
    response_model=DatasetPublic,
    summary="Write down what a query dataset matches now (the query and the time are kept)",
)
def freeze_dataset(name: NameParam, kahu: KahuDep, _user: CurrentUser) -> DatasetPublic:
    return _public(kahu.curation.freeze(name))


@router.delete("/datasets/{name}", status_code=204, summary="Delete a dataset (not its series)")
def delete_dataset(name: NameParam, kahu: KahuDep, _user: CurrentUser) -> Response:
    kahu.curation.delete_dataset(name)
    return Response(status_code=204)


@router.post(
    "/tags",
    response_model=dict[str, list[str]],
    summary="Add and remove tags on series; answers each series' tags",
)
def change_tags(body: TagChange, kahu: KahuDep, _user: CurrentUser) -> dict[str, list[str]]:
    return kahu.curation.tag(body.series, add=body.add, remove=body.remove)
