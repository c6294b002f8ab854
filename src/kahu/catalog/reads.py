"""The catalog's reads: counts, series (one, a page, by keys) and instances, each under the
caller's :class:`~kahu.catalog.scope.SeriesScope`; :class:`~kahu.catalog.repository.Catalog`
adds the writes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Text,
    any_,
    bindparam,
    func,
    select,
    type_coerce,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from kahu.catalog.database import Database
from kahu.catalog.records import InstanceRow, SeriesRow
from kahu.catalog.scope import SeriesScope
from kahu.catalog.tables import (
    Dataset,
    DatasetSeries,
    Instance,
    Patient,
    Series,
    SeriesTag,
    Study,
)
from kahu.errors import NotFound


@dataclass(frozen=True, slots=True)
class Counts:
    patients: int
    studies: int
    series: int
    instances: int
    size_bytes: int


def _loaded_json(value: Any) -> Any:
    """JSON of a page row: SQLite's text parsed (the empty list without parsing), the
    PostgreSQL driver's value as it comes. Read as plain text and decoded here: the JSON
    type's layers of processors cost more than the parse itself on a page of documents."""
    if isinstance(value, str):
        return [] if value == "[]" else json.loads(value)
    return value


def _loaded_utc(value: Any) -> datetime:
    """A UTC timestamp of a page row: SQLite's 'YYYY-MM-DD HH:MM:SS.ffffff' parsed in C,
    PostgreSQL's aware datetime as it comes."""
    when: datetime = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


class CatalogReads:
    """Every read of patients, studies, series and instances (a series read takes a scope)."""

    db: Database
    _series_stmt: Select[Any] | None
    _by_pks_stmt: Select[Any] | None

    def counts(self, scope: SeriesScope) -> Counts:
        """Counts of the series ``scope`` allows (the whole catalog for every series)."""
        where = scope.condition()
        with self.db.read() as s:
            if where is None:
                return Counts(
                    patients=s.scalar(select(func.count(Patient.id))) or 0,
                    studies=s.scalar(select(func.count(Study.id))) or 0,
                    series=s.scalar(select(func.count(Series.id))) or 0,
                    instances=s.scalar(select(func.count(Instance.id))) or 0,
                    size_bytes=s.scalar(select(func.coalesce(func.sum(Series.size_bytes), 0))) or 0,
                )
            row = s.execute(
                select(
                    func.count(func.distinct(Study.patient_pk)),
                    func.count(func.distinct(Series.study_pk)),
                    func.count(Series.id),
                    func.coalesce(func.sum(Series.instance_count), 0),
                    func.coalesce(func.sum(Series.size_bytes), 0),
                )
                .select_from(Series)
                .join(Study, Study.id == Series.study_pk)
                .where(where)
            ).one()
            return Counts(*(int(v or 0) for v in row))

    def _series_select(self) -> Select[Any]:
        """Series with their study, patient, dataset names and tags: one round trip (the
        statement is built once; ``.where()`` makes a new one)."""
        if self._series_stmt is None:
            self._series_stmt = self._build_series_select()
        return self._series_stmt

    def _build_series_select(self) -> Select[Any]:
        postgres = self.db.engine.dialect.name == "postgresql"
        agg = func.json_agg if postgres else func.json_group_array
        datasets = (
            select(agg(Dataset.name, type_=Text))
            .select_from(DatasetSeries)
            .join(Dataset, Dataset.id == DatasetSeries.dataset_pk)
            .where(DatasetSeries.series_pk == Series.id)
            .scalar_subquery()
        )
        tags = select(agg(SeriesTag.tag, type_=Text)).where(SeriesTag.series_pk == Series.id)
        stmt = (
            select(  # columns, not ORM objects: a page of rows without the identity map
                Series.id,
                Series.series_instance_uid,
                Study.study_instance_uid,
                Patient.patient_id,
                Series.modality,
                Series.series_description,
                Series.instance_count,
                Series.size_bytes,
                type_coerce(Series.received_at, Text),
                type_coerce(Series.updated_at, Text),
                type_coerce(Series.document, Text),
                datasets,
                tags.scalar_subquery(),
            )
            .join(Study, Series.study_pk == Study.id)
            .join(Patient, Study.patient_pk == Patient.id)
        )
        return cast("Select[Any]", stmt)

    @staticmethod
    def _series_rows(s: Session, stmt: Select[Any]) -> list[SeriesRow]:
        return [
            SeriesRow(
                series_instance_uid=uid,
                study_instance_uid=study_uid,
                patient_id=patient_id,
                modality=modality,
                series_description=description,
                instance_count=count,
                size_bytes=size,
                received_at=_loaded_utc(received),
                updated_at=_loaded_utc(updated),
                datasets=sorted(_loaded_json(names) or []),
                document=_loaded_json(document),
                tags=sorted(_loaded_json(tags) or []),
                pk=pk,
            )
            for (
                pk,
                uid,
                study_uid,
                patient_id,
                modality,
                description,
                count,
                size,
                received,
                updated,
                document,
                names,
                tags,
            ) in s.connection().execute(stmt)
        ]

    def get_series(self, scope: SeriesScope, series_uid: str) -> SeriesRow:
        """The series (NotFound also when ``scope`` leaves it out)."""
        stmt = self._series_select().where(Series.series_instance_uid == series_uid)
        where = scope.condition()
        if where is not None:
            stmt = stmt.where(where)
        with self.db.read() as s:
            rows = self._series_rows(s, stmt)
        if not rows:
            raise NotFound(f"no series {series_uid}")
        return rows[0]

    def series_by_pks(self, pks: Sequence[int]) -> list[SeriesRow]:
        """The series with these primary keys, in that order (those gone are left out)."""
        if not pks:
            return []
        if self._by_pks_stmt is None:
            if self.db.engine.dialect.name == "postgresql":  # one array, not a bind per key
                keys = bindparam("pks", type_=postgresql.ARRAY(Integer))
                where = Series.id == any_(keys)
            else:
                where = Series.id.in_(bindparam("pks", expanding=True))
            self._by_pks_stmt = self._series_select().where(where)
        with self.db.read() as s:
            rows = self._series_rows(s, self._by_pks_stmt.params(pks=list(pks)))
        position = {pk: i for i, pk in enumerate(pks)}
        return sorted(rows, key=lambda row: position[row.pk])

    def list_series(
        self,
        scope: SeriesScope,
        *,
        limit: int = 100,
        offset: int = 0,
        dataset: str | None = None,
        where: ColumnElement[bool] | None = None,
        order: Sequence[Any] = (),
    ) -> tuple[list[SeriesRow], int]:
        """A page of the series ``scope`` allows and how many there are; ``where`` is a
        condition on the series table (a search query, :mod:`kahu.search.sql`), ``order``
        sort keys before the default newest first."""
        stmt = self._series_select()
        count_stmt = select(func.count(Series.id))
        for condition in (scope.condition(), where):
            if condition is not None:
                stmt, count_stmt = stmt.where(condition), count_stmt.where(condition)
        if dataset is not None:
            members = (
                select(DatasetSeries.series_pk)
                .join(Dataset, Dataset.id == DatasetSeries.dataset_pk)
                .where(Dataset.name == dataset)
            )
            stmt = stmt.where(Series.id.in_(members))
            count_stmt = count_stmt.where(Series.id.in_(members))
        stmt = stmt.order_by(*order, Series.received_at.desc(), Series.id.desc()).limit(limit)
        with self.db.read() as s:
            return self._series_rows(s, stmt.offset(offset)), s.scalar(count_stmt) or 0

    def instances(
        self,
        scope: SeriesScope,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> list[InstanceRow]:
        """Instances of a study, series or one instance that ``scope`` allows, in series and
        instance order."""
        stmt = (
            select(Instance, Series.series_instance_uid, Study.study_instance_uid)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
        )
        where = scope.condition()
        if where is not None:
            stmt = stmt.where(where)
        if study_uid is not None:
            stmt = stmt.where(Study.study_instance_uid == study_uid)
        if series_uid is not None:
            stmt = stmt.where(Series.series_instance_uid == series_uid)
        if sop_uid is not None:
            stmt = stmt.where(Instance.sop_instance_uid == sop_uid)
        stmt = stmt.order_by(Series.id, Instance.instance_number, Instance.id)
        with self.db.read() as s:
            return [
                InstanceRow(
                    sop_instance_uid=i.sop_instance_uid,
                    sop_class_uid=i.sop_class_uid,
                    series_instance_uid=series,
                    study_instance_uid=study,
                    transfer_syntax_uid=i.transfer_syntax_uid,
                    blob_key=i.blob_key,
                    size_bytes=i.size_bytes,
                    sha256=i.sha256,
                    instance_number=i.instance_number,
                    number_of_frames=i.number_of_frames,
                    rows=i.rows,
                    columns=i.columns,
                )
                for i, series, study in s.execute(stmt).all()
            ]
