"""Lineage: which workflow run made a series, from which source series."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, not_, select, true

from kahu.catalog.database import Database
from kahu.catalog.tables import Series, SeriesLineage, utcnow
from kahu.errors import NotFound


class Lineage:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(
        self, series_uid: str, run_id: str, workflow: str, version: str, sources: Sequence[str]
    ) -> None:
        """Note that ``run_id`` made ``series_uid`` from ``sources`` (idempotent)."""
        with self.db.write() as s:
            pk = s.scalar(select(Series.id).where(Series.series_instance_uid == series_uid))
            if pk is None:
                raise NotFound(f"no series {series_uid}")
            known = set(
                s.scalars(
                    select(SeriesLineage.source_series_uid).where(
                        SeriesLineage.series_pk == pk, SeriesLineage.run_id == run_id
                    )
                )
            )
            for source in dict.fromkeys(sources or [""]):
                if source not in known:
                    s.add(
                        SeriesLineage(
                            series_pk=pk,
                            run_id=run_id,
                            source_series_uid=source,
                            workflow=workflow,
                            version=version,
                            created_at=utcnow(),
                        )
                    )

    def of(self, series_uid: str, where: ColumnElement[bool] | None = None) -> dict[str, Any]:
        """What ``series_uid`` was derived from, and what was derived from it, of the series
        ``where`` (a read scope) allows: the others are left out (the series itself: NotFound)."""
        allowed = true() if where is None else where
        with self.db.read() as s:
            pk = s.scalar(
                select(Series.id).where(Series.series_instance_uid == series_uid, allowed)
            )
            if pk is None:
                raise NotFound(f"no series {series_uid}")
            foreign = select(Series.series_instance_uid).where(not_(allowed))
            made = s.execute(
                select(
                    SeriesLineage.run_id,
                    SeriesLineage.workflow,
                    SeriesLineage.version,
                    SeriesLineage.source_series_uid,
                ).where(
                    SeriesLineage.series_pk == pk,
                    SeriesLineage.source_series_uid.not_in(foreign),
                )
            ).all()
            results = s.execute(
                select(
                    Series.series_instance_uid,
                    SeriesLineage.run_id,
                    SeriesLineage.workflow,
                    SeriesLineage.version,
                )
                .join(Series, Series.id == SeriesLineage.series_pk)
                .where(SeriesLineage.source_series_uid == series_uid, allowed)
                .order_by(Series.id)
            ).all()
        return {
            "series_uid": series_uid,
            "derived_from": [
                {"run_id": r, "workflow": w, "version": v, "source_series_uid": src or None}
                for r, w, v, src in made
            ],
            "results": [
                {"series_uid": uid, "run_id": r, "workflow": w, "version": v}
                for uid, r, w, v in results
            ],
        }
