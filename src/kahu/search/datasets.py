"""Curation: datasets (cohorts) and free-text tags on series.

A dataset is one of three kinds:

A dataset belongs to one project: its series come from there (a query dataset counts and
freezes what its query matches there), and the project's members see it. Names are unique
across projects.

- **explicit**: a list of series (named by an AE title at ingest, an upload, or chosen by hand);
  series are added and removed one by one;
- **query**: defined by a Lucene query; its series are whatever the query matches *now*;
- **frozen**: a query dataset whose matches were written down at ``frozen_at``; the query is
  kept as the record of how the cohort was made, and the list no longer changes by itself.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.orm import Session

from kahu.catalog.repository import DEFAULT_PROJECT, Catalog
from kahu.catalog.tables import (
    Dataset,
    DatasetSeries,
    Project,
    ProjectSeries,
    Series,
    SeriesTag,
    utcnow,
)
from kahu.dicom.uids import validate_uid
from kahu.errors import Conflict, InvalidInput, NotFound
from kahu.search.query import parse
from kahu.search.sql import condition

DatasetKind = Literal["explicit", "query", "frozen"]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")
MAX_TAG = 64


@dataclass(frozen=True, slots=True)
class DatasetInfo:
    name: str
    kind: DatasetKind
    origin: str
    description: str
    query: str | None
    frozen_at: datetime | None
    created_at: datetime
    series_count: int
    project: str = DEFAULT_PROJECT


def _kind(query: str | None, frozen_at: datetime | None) -> DatasetKind:
    if query is None:
        return "explicit"
    return "query" if frozen_at is None else "frozen"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(
            "a dataset name is 1-64 letters, digits, spaces, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def check_tag(tag: str) -> str:
    tag = tag.strip()
    if not tag or len(tag) > MAX_TAG or any(ord(c) < 32 for c in tag):
        raise InvalidInput(f"a tag is 1-{MAX_TAG} printable characters, not {tag!r}")
    return tag


def _in_project(project: str) -> ColumnElement[bool]:
    """Series of the project named ``project``."""
    return Series.id.in_(
        select(ProjectSeries.series_pk)
        .join(Project, Project.id == ProjectSeries.project_pk)
        .where(Project.name == project)
    )


class Curation:
    """Datasets and tags on one catalog (thread-safe: every change is one transaction)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.db = catalog.db

    # -- datasets -----------------------------------------------------------------------------

    def create_dataset(
        self,
        name: str,
        *,
        query: str | None = None,
        series: Sequence[str] = (),
        description: str = "",
        project: str = DEFAULT_PROJECT,
    ) -> DatasetInfo:
        """A new explicit dataset of ``series`` (of ``project``) or, with ``query``, a
        query-defined one (counted and frozen within ``project``)."""
        check_name(name)
        if query is not None and series:
            raise InvalidInput("a dataset is defined by a query or by a list of series, not both")
        with self.db.write() as s:
            taken = s.scalar(select(Dataset.name).where(func.lower(Dataset.name) == name.lower()))
            if taken is not None:
                raise Conflict(f"dataset {taken!r} exists")
            dataset = Dataset(
                name=name,
                description=description[:4000],
                origin="query" if query is not None else "manual",
                created_at=utcnow(),
                query=query,
                project=project,
            )
            s.add(dataset)
            s.flush()
            self._add(s, dataset, series)
            if query is not None:  # refuses a circle of dataset queries before it is stored
                dynamic = {**self.dynamic(s), name.lower(): query}
                condition(parse(query), self.db.engine.dialect.name, dynamic)
        return self.dataset(name)

    def add_series(self, name: str, series: Sequence[str]) -> DatasetInfo:
        with self.db.write() as s:
            dataset = self._changeable(s, name)
            self._add(s, dataset, series)
        return self.dataset(name)

    def remove_series(self, name: str, series: Sequence[str]) -> DatasetInfo:
        with self.db.write() as s:
            dataset = self._changeable(s, name)
            pks = self._series_pks(s, series)
            s.execute(
                delete(DatasetSeries).where(
                    DatasetSeries.dataset_pk == dataset.id, DatasetSeries.series_pk.in_(pks)
                )
            )
        self.catalog.forget_dataset_members()
        return self.dataset(name)

    def freeze(self, name: str) -> DatasetInfo:
        """Write down what a query dataset matches now; later series no longer join it."""
        with self.db.write() as s:
            dataset = self._get(s, name)
            if dataset.query is None:
                raise InvalidInput(
                    f"dataset {dataset.name!r} is a list already; only query datasets freeze"
                )
            if dataset.frozen_at is not None:
                raise Conflict(
                    f"dataset {dataset.name!r} was frozen at {dataset.frozen_at.isoformat()}"
                )
            where = condition(parse(dataset.query), self.db.engine.dialect.name, self.dynamic(s))
            now = utcnow()
            for pk in s.scalars(select(Series.id).where(where, _in_project(dataset.project))):
                s.add(DatasetSeries(dataset_pk=dataset.id, series_pk=pk, added_at=now))
            dataset.frozen_at = now
        return self.dataset(name)

    def delete_dataset(self, name: str) -> None:
        with self.db.write() as s:
            dataset = self._get(s, name)
            s.execute(delete(DatasetSeries).where(DatasetSeries.dataset_pk == dataset.id))
            s.delete(dataset)
        self.catalog.forget_dataset_members()

    def dataset(self, name: str) -> DatasetInfo:
        with self.db.read() as s:
            return self._info(s, self._get(s, name))

    def datasets(self, projects: Collection[str] | None = None) -> list[DatasetInfo]:
        """Every dataset, or those of ``projects``."""
        stmt = select(Dataset).order_by(Dataset.name)
        if projects is not None:
            stmt = stmt.where(Dataset.project.in_(sorted(projects)))
        with self.db.read() as s:
            return [self._info(s, d) for d in s.scalars(stmt)]

    def names(self, projects: Collection[str] | None = None) -> set[str]:
        """The names of every dataset, or of those of ``projects``."""
        stmt = select(Dataset.name)
        if projects is not None:
            stmt = stmt.where(Dataset.project.in_(sorted(projects)))
        with self.db.read() as s:
            return set(s.scalars(stmt))

    @staticmethod
    def dynamic(s: Session) -> dict[str, str]:
        """Query datasets not frozen: lower-case name -> query (``dataset:NAME`` expands them)."""
        rows = s.execute(
            select(Dataset.name, Dataset.query).where(
                Dataset.query.is_not(None), Dataset.frozen_at.is_(None)
            )
        )
        return {name.lower(): str(query) for name, query in rows}

    def dynamic_queries(self) -> dict[str, str]:
        with self.db.read() as s:
            return self.dynamic(s)

    def _info(self, s: Session, dataset: Dataset) -> DatasetInfo:
        kind = _kind(dataset.query, dataset.frozen_at)
        if kind == "query":
            assert dataset.query is not None
            where = condition(parse(dataset.query), self.db.engine.dialect.name, self.dynamic(s))
        else:
            where = Series.id.in_(
                select(DatasetSeries.series_pk).where(DatasetSeries.dataset_pk == dataset.id)
            )
        count = s.scalar(select(func.count(Series.id)).where(where, _in_project(dataset.project)))
        return DatasetInfo(
            dataset.name,
            kind,
            dataset.origin,
            dataset.description,
            dataset.query,
            dataset.frozen_at,
            dataset.created_at,
            int(count or 0),
            dataset.project,
        )

    @staticmethod
    def _get(s: Session, name: str) -> Dataset:
        dataset = s.scalar(select(Dataset).where(func.lower(Dataset.name) == name.lower()))
        if dataset is None:
            raise NotFound(f"no dataset {name!r}")
        return dataset

    def _changeable(self, s: Session, name: str) -> Dataset:
        dataset = self._get(s, name)
        if _kind(dataset.query, dataset.frozen_at) == "query":
            raise InvalidInput(
                f"dataset {dataset.name!r} is what its query matches; freeze it to change its list"
            )
        return dataset

    @staticmethod
    def _series_pks(
        s: Session, series: Iterable[str], where: ColumnElement[bool] | None = None
    ) -> list[int]:
        """Primary keys of the series (NotFound naming those missing or, with ``where``, left
        out by it)."""
        uids = sorted({validate_uid(uid, "SeriesInstanceUID") for uid in series})
        stmt = select(Series.series_instance_uid, Series.id).where(
            Series.series_instance_uid.in_(uids)
        )
        found = dict(s.execute(stmt if where is None else stmt.where(where)).all())
        missing = [uid for uid in uids if uid not in found]
        if missing:
            raise NotFound(
                f"no series {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
            )
        return [int(found[uid]) for uid in uids]

    def _add(self, s: Session, dataset: Dataset, series: Sequence[str]) -> None:
        if not series:
            return
        have = set(
            s.scalars(select(DatasetSeries.series_pk).where(DatasetSeries.dataset_pk == dataset.id))
        )
        now = utcnow()
        for pk in self._series_pks(s, series, _in_project(dataset.project)):
            if pk not in have:
                s.add(DatasetSeries(dataset_pk=dataset.id, series_pk=pk, added_at=now))

    # -- tags ---------------------------------------------------------------------------------

    def tag(
        self,
        series: Sequence[str],
        *,
        add: Sequence[str] = (),
        remove: Sequence[str] = (),
        where: ColumnElement[bool] | None = None,
    ) -> dict[str, list[str]]:
        """Add and remove tags on several series at once (NotFound for any ``where``, a
        scope, leaves out); return each series' tags."""
        adding = [check_tag(t) for t in add]
        removing = [check_tag(t) for t in remove]
        with self.db.write() as s:
            pks = self._series_pks(s, series, where)
            if removing:
                s.execute(
                    delete(SeriesTag).where(
                        SeriesTag.series_pk.in_(pks),
                        func.lower(SeriesTag.tag).in_([t.lower() for t in removing]),
                    )
                )
            existing = {
                (pk, tag.lower())
                for pk, tag in s.execute(
                    select(SeriesTag.series_pk, SeriesTag.tag).where(SeriesTag.series_pk.in_(pks))
                )
            }
            now = utcnow()
            for pk in pks:
                for tag in adding:
                    if (pk, tag.lower()) not in existing:
                        s.add(SeriesTag(series_pk=pk, tag=tag, added_at=now))
                        existing.add((pk, tag.lower()))
        return self.tags_of(series)

    def tags_of(self, series: Sequence[str]) -> dict[str, list[str]]:
        with self.db.read() as s:
            out: dict[str, list[str]] = {uid: [] for uid in series}
            for uid, tag in s.execute(
                select(Series.series_instance_uid, SeriesTag.tag)
                .join(SeriesTag, SeriesTag.series_pk == Series.id)
                .where(Series.series_instance_uid.in_(list(series)))
                .order_by(SeriesTag.tag)
            ):
                out[uid].append(tag)
            return out
