"""The catalog repository: every read and write of patients, studies, series and instances."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from kahu.catalog.database import Database
from kahu.catalog.records import InstanceFacts, InstanceRow, SeriesRow
from kahu.catalog.tables import (
    Dataset,
    DatasetSeries,
    Instance,
    Patient,
    Series,
    Study,
    utcnow,
)
from kahu.errors import NotFound


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    inserted: bool
    existing_sha256: str | None
    new_series: bool
    stored_series_uid: str | None = None


@dataclass(frozen=True, slots=True)
class Counts:
    patients: int
    studies: int
    series: int
    instances: int
    size_bytes: int


class Catalog:
    """Repository over a :class:`Database`; the same code runs on SQLite and PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writes -------------------------------------------------------------------------------

    def _insert(self, _session: Session, table: Any) -> Any:
        """INSERT that supports ``on_conflict_do_nothing`` on both backends."""
        dialect = postgresql if self.db.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(table)

    def add_instance(
        self,
        facts: InstanceFacts,
        *,
        blob_key: str,
        size_bytes: int,
        sha256: str,
        dataset: str | None,
        document: Callable[[], dict[str, Any]],
    ) -> StoredOutcome:
        """Record an instance whose file is already stored; idempotent per SOPInstanceUID.

        ``document`` builds the series' metadata document; it is called only for a new series.
        """
        now = utcnow()
        with self.db.write() as s:
            existing = s.execute(
                select(Instance.sha256, Series.series_instance_uid)
                .join(Series, Instance.series_pk == Series.id)
                .where(Instance.sop_instance_uid == facts.sop_instance_uid)
            ).first()
            if existing is not None:
                return StoredOutcome(False, existing[0], False, existing[1])

            series_pk = s.scalar(
                select(Series.id).where(Series.series_instance_uid == facts.series_instance_uid)
            )
            new_series = series_pk is None
            if series_pk is None:
                series_pk = self._create_series(s, facts, document(), now)
            s.execute(
                self._insert(s, Instance)
                .values(
                    sop_instance_uid=facts.sop_instance_uid,
                    series_pk=series_pk,
                    sop_class_uid=facts.sop_class_uid,
                    instance_number=facts.instance_number,
                    transfer_syntax_uid=facts.transfer_syntax_uid,
                    blob_key=blob_key,
                    size_bytes=size_bytes,
                    sha256=sha256,
                    number_of_frames=facts.number_of_frames,
                    rows=facts.rows,
                    columns=facts.columns,
                    received_at=now,
                )
                .on_conflict_do_nothing()
            )
            s.execute(
                update(Series)
                .where(Series.id == series_pk)
                .values(
                    instance_count=Series.instance_count + 1,
                    size_bytes=Series.size_bytes + size_bytes,
                    updated_at=now,
                )
            )
            if dataset:
                self._add_to_dataset(s, dataset, facts.series_instance_uid, "ae")
        return StoredOutcome(True, None, new_series)

    def _create_series(
        self, s: Session, facts: InstanceFacts, document: dict[str, Any], now: datetime
    ) -> int:
        s.execute(
            self._insert(s, Patient)
            .values(
                patient_id=facts.patient_id,
                issuer=facts.issuer_of_patient_id,
                patient_name=facts.patient_name,
                birth_date=facts.patient_birth_date,
                sex=facts.patient_sex,
            )
            .on_conflict_do_nothing()
        )
        patient_pk = s.scalar(
            select(Patient.id).where(
                Patient.patient_id == facts.patient_id,
                Patient.issuer == facts.issuer_of_patient_id,
            )
        )
        s.execute(
            self._insert(s, Study)
            .values(
                study_instance_uid=facts.study_instance_uid,
                patient_pk=patient_pk,
                study_date=facts.study_date,
                study_time=facts.study_time,
                accession_number=facts.accession_number,
                study_id=facts.study_id,
                study_description=facts.study_description,
                referring_physician_name=facts.referring_physician_name,
                created_at=now,
            )
            .on_conflict_do_nothing()
        )
        study_pk = s.scalar(
            select(Study.id).where(Study.study_instance_uid == facts.study_instance_uid)
        )
        s.execute(
            self._insert(s, Series)
            .values(
                series_instance_uid=facts.series_instance_uid,
                study_pk=study_pk,
                modality=facts.modality,
                series_number=facts.series_number,
                series_description=facts.series_description,
                body_part_examined=facts.body_part_examined,
                series_date=facts.series_date,
                received_at=now,
                updated_at=now,
                instance_count=0,
                size_bytes=0,
                document=document,
            )
            .on_conflict_do_nothing()
        )
        series_pk = s.scalar(
            select(Series.id).where(Series.series_instance_uid == facts.series_instance_uid)
        )
        assert series_pk is not None
        return series_pk

    def add_to_dataset(self, name: str, series_uid: str, *, origin: str = "manual") -> None:
        """Add a series to a dataset, creating the dataset if it does not exist."""
        with self.db.write() as s:
            self._add_to_dataset(s, name, series_uid, origin)

    def _add_to_dataset(self, s: Session, name: str, series_uid: str, origin: str) -> None:
        s.execute(
            self._insert(s, Dataset)
            .values(name=name, description="", origin=origin, created_at=utcnow())
            .on_conflict_do_nothing()
        )
        dataset_pk = s.scalar(select(Dataset.id).where(Dataset.name == name))
        series_pk = s.scalar(select(Series.id).where(Series.series_instance_uid == series_uid))
        if series_pk is None:
            return
        s.execute(
            self._insert(s, DatasetSeries)
            .values(dataset_pk=dataset_pk, series_pk=series_pk, added_at=utcnow())
            .on_conflict_do_nothing()
        )

    def delete_series(self, series_uid: str) -> list[str]:
        """Remove a series' rows (and studies/patients left empty); return its blob keys."""
        with self.db.write() as s:
            row = s.execute(
                select(Series.id, Series.study_pk).where(Series.series_instance_uid == series_uid)
            ).first()
            if row is None:
                raise NotFound(f"no series {series_uid}")
            series_pk, study_pk = row
            keys = list(s.scalars(select(Instance.blob_key).where(Instance.series_pk == series_pk)))
            s.execute(delete(Instance).where(Instance.series_pk == series_pk))
            s.execute(delete(DatasetSeries).where(DatasetSeries.series_pk == series_pk))
            s.execute(delete(Series).where(Series.id == series_pk))
            if s.scalar(select(func.count()).where(Series.study_pk == study_pk)) == 0:
                patient_pk = s.scalar(select(Study.patient_pk).where(Study.id == study_pk))
                s.execute(delete(Study).where(Study.id == study_pk))
                if s.scalar(select(func.count()).where(Study.patient_pk == patient_pk)) == 0:
                    s.execute(delete(Patient).where(Patient.id == patient_pk))
        return keys

    # -- reads --------------------------------------------------------------------------------

    def counts(self) -> Counts:
        with self.db.read() as s:
            return Counts(
                patients=s.scalar(select(func.count(Patient.id))) or 0,
                studies=s.scalar(select(func.count(Study.id))) or 0,
                series=s.scalar(select(func.count(Series.id))) or 0,
                instances=s.scalar(select(func.count(Instance.id))) or 0,
                size_bytes=s.scalar(select(func.coalesce(func.sum(Series.size_bytes), 0))) or 0,
            )

    @staticmethod
    def _series_select() -> Select[Any]:
        stmt = (
            select(Series, Study.study_instance_uid, Patient.patient_id)
            .join(Study, Series.study_pk == Study.id)
            .join(Patient, Study.patient_pk == Patient.id)
        )
        return cast("Select[Any]", stmt)

    def _series_rows(self, s: Session, stmt: Select[Any]) -> list[SeriesRow]:
        rows = s.execute(stmt).all()
        if not rows:
            return []
        pks = [row[0].id for row in rows]
        names: dict[int, list[str]] = {}
        for series_pk, name in s.execute(
            select(DatasetSeries.series_pk, Dataset.name)
            .join(Dataset, Dataset.id == DatasetSeries.dataset_pk)
            .where(DatasetSeries.series_pk.in_(pks))
            .order_by(Dataset.name)
        ):
            names.setdefault(series_pk, []).append(name)
        return [
            SeriesRow(
                series_instance_uid=series.series_instance_uid,
                study_instance_uid=study_uid,
                patient_id=patient_id,
                modality=series.modality,
                series_description=series.series_description,
                instance_count=series.instance_count,
                size_bytes=series.size_bytes,
                received_at=series.received_at,
                updated_at=series.updated_at,
                datasets=names.get(series.id, []),
                document=series.document,
            )
            for series, study_uid, patient_id in rows
        ]

    def get_series(self, series_uid: str) -> SeriesRow:
        with self.db.read() as s:
            rows = self._series_rows(
                s, self._series_select().where(Series.series_instance_uid == series_uid)
            )
        if not rows:
            raise NotFound(f"no series {series_uid}")
        return rows[0]

    def list_series(
        self, *, limit: int = 100, offset: int = 0, dataset: str | None = None
    ) -> tuple[list[SeriesRow], int]:
        stmt = self._series_select()
        count_stmt = select(func.count(Series.id))
        if dataset is not None:
            members = (
                select(DatasetSeries.series_pk)
                .join(Dataset, Dataset.id == DatasetSeries.dataset_pk)
                .where(Dataset.name == dataset)
            )
            stmt = stmt.where(Series.id.in_(members))
            count_stmt = count_stmt.where(Series.id.in_(members))
        stmt = stmt.order_by(Series.received_at.desc(), Series.id.desc()).limit(limit)
        with self.db.read() as s:
            return self._series_rows(s, stmt.offset(offset)), s.scalar(count_stmt) or 0

    def instances(
        self,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> list[InstanceRow]:
        stmt = (
            select(Instance, Series.series_instance_uid, Study.study_instance_uid)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
        )
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

    def datasets(self) -> list[tuple[str, str, int]]:
        """(name, origin, series count) of every dataset."""
        stmt = (
            select(Dataset.name, Dataset.origin, func.count(DatasetSeries.series_pk))
            .outerjoin(DatasetSeries, DatasetSeries.dataset_pk == Dataset.id)
            .group_by(Dataset.id)
            .order_by(Dataset.name)
        )
        with self.db.read() as s:
            return [(name, origin, count) for name, origin, count in s.execute(stmt).all()]

    def series_uids(self, uids: Sequence[str]) -> set[str]:
        with self.db.read() as s:
            return set(
                s.scalars(
                    select(Series.series_instance_uid).where(
                        Series.series_instance_uid.in_(list(uids))
                    )
                )
            )
