"""Curation routes: datasets (explicit, query-defined, frozen) and tags on series."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from kahu.actions import datasets
from kahu.api.deps import ActorDep, CurrentUser, KahuDep
from kahu.api.schemas import DatasetPublic
from kahu.auth.policy import readable_projects, require_in_project
from kahu.auth.projects import Role
from kahu.auth.users import UserPublic
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.core import Kahu
from kahu.search.datasets import DatasetInfo
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
    project: str = Field(
        default=DEFAULT_PROJECT,
        max_length=64,
        description="the project it belongs to (its series come from there)",
    )


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
        project=info.project,
    )


def _dataset(kahu: Kahu, user: UserPublic, name: str, needed: Role) -> DatasetInfo:
    """The dataset, for a caller with ``needed`` in its project (others: NotFound)."""
    info = kahu.curation.dataset(name)
    require_in_project(kahu.projects, user, info.project, needed, f"dataset {name!r}")
    return info


@router.get(
    "/datasets",
    response_model=list[DatasetPublic],
    summary="Datasets of the caller's projects with their sizes",
)
def list_datasets(kahu: KahuDep, user: CurrentUser) -> list[DatasetPublic]:
    return [_public(d) for d in kahu.curation.datasets(readable_projects(kahu.projects, user))]


@router.post(
    "/datasets",
    response_model=DatasetPublic,
    status_code=201,
    summary="Create a dataset from a query (it follows the query) or from a list of series",
)
def create_dataset(body: DatasetCreate, kahu: KahuDep, actor: ActorDep) -> DatasetPublic:
    done = datasets.create_dataset(
        kahu,
        actor,
        body.name,
        query=body.query,
        series=body.series,
        description=body.description,
        project=body.project,
    )
    return _public(done.result)


@router.get("/datasets/{name}", response_model=DatasetPublic)
def get_dataset(name: NameParam, kahu: KahuDep, user: CurrentUser) -> DatasetPublic:
    return _public(_dataset(kahu, user, name, "viewer"))


@router.post(
    "/datasets/{name}/series",
    response_model=DatasetPublic,
    summary="Add and remove series (explicit and frozen datasets)",
)
def change_members(
    name: NameParam, body: MembershipChange, kahu: KahuDep, actor: ActorDep
) -> DatasetPublic:
    done = datasets.change_series(kahu, actor, name, add=body.add, remove=body.remove)
    return _public(done.result)


@router.post(
    "/datasets/{name}/freeze",
    response_model=DatasetPublic,
    summary="Write down what a query dataset matches now (the query and the time are kept)",
)
def freeze_dataset(name: NameParam, kahu: KahuDep, actor: ActorDep) -> DatasetPublic:
    return _public(datasets.freeze_dataset(kahu, actor, name).result)


@router.delete("/datasets/{name}", status_code=204, summary="Delete a dataset (not its series)")
def delete_dataset(name: NameParam, kahu: KahuDep, actor: ActorDep) -> Response:
    datasets.delete_dataset(kahu, actor, name)
    return Response(status_code=204)


@router.post(
    "/tags",
    response_model=dict[str, list[str]],
    summary="Add and remove tags on series; answers each series' tags",
    description="The caller needs the scientist role in a project of each series.",
)
def change_tags(body: TagChange, kahu: KahuDep, actor: ActorDep) -> dict[str, list[str]]:
    done = datasets.tag_series(kahu, actor, body.series, add=body.add, remove=body.remove)
    tags: dict[str, list[str]] = done.result
    return tags
