"""Curation: datasets (cohorts) and free-text tags on series.

A dataset is one of three kinds:

- **explicit**: a list of series (named by an AE title at ingest, an upload, or chosen by hand);
  series are added and removed one by one;
- **query**: defined by a Lucene query; its series are whatever the query matches *now*;
- **frozen**: a query dataset whose matches were written down at ``frozen_at``; the query is
  kept as the record of how the cohort was made, and the list no longer changes by itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kahu.catalog.repository import Catalog
from kahu.catalog.tables import Dataset, DatasetSeries, Series, SeriesTag, utcnow
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
    ) -> DatasetInfo:
        """A new explicit dataset of ``series`` or, with ``query``, a query-defined one."""
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
            )
            s.add(dataset)
            s.flush()
            self._add(s, dataset.id, series)
            if query is not None:  # refuses a circle of dataset queries before it is stored
                dynamic = {**self.dynamic(s), name.lower(): query}
                condition(parse(query), self.db.engine.dialect.name, dynamic)
        return self.dataset(name)

    def add_series(self, name: str, series: Sequence[str]) -> DatasetInfo:
        with self.db.write() as s:
            dataset = self._changeable(s, name)
            self._add(s, dataset.id, series)
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
            for pk in s.scalars(select(Series.id).where(where)):
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

    def datasets(self) -> list[DatasetInfo]:
        with self.db.read() as s:
            return [self._info(s, d) for d in s.scalars(select(Dataset).order_by(Dataset.name))]

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
            count = s.scalar(select(func.count(Series.id)).where(where))
        else:
            count = s.scalar(select(func.count()).where(DatasetSeries.dataset_pk == dataset.id))
        return DatasetInfo(
            dataset.name,
            kind,
            dataset.origin,
            dataset.description,
            dataset.query,
            dataset.frozen_at,
            dataset.created_at,
            int(count or 0),
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
    def _series_pks(s: Session, series: Iterable[str]) -> list[int]:
        uids = sorted({validate_uid(uid, "SeriesInstanceUID") for uid in series})
        found = dict(
            s.execute(
                select(Series.series_instance_uid, Series.id).where(
                    Series.series_instance_uid.in_(uids)
                )
            ).all()
        )
        missing = [uid for uid in uids if uid not in found]
        if missing:
            raise NotFound(
                f"no series {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")
            )
        return [int(found[uid]) for uid in uids]

    def _add(self, s: Session, dataset_pk: int, series: Sequence[str]) -> None:
        if not series:
            return
        have = set(
            s.scalars(select(DatasetSeries.series_pk).where(DatasetSeries.dataset_pk == dataset_pk))
        )
        now = utcnow()
        for pk in self._series_pks(s, series):
            if pk not in have:
                s.add(DatasetSeries(dataset_pk=dataset_pk, series_pk=pk, added_at=now))

    # -- tags ---------------------------------------------------------------------------------

    def tag(
        self, series: Sequence[str], *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> dict[str, list[str]]:
        """Add and remove tags on several series at once; return each series' tags."""
        adding = [check_tag(t) for t in add]
        removing = [check_tag(t) for t in remove]
        with self.db.write() as s:
            pks = self._series_pks(s, series)
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
