"""A run's input: a dataset, a query or explicit series, limited in size, with the series
they reference (a SEG's source CT) fetched on request."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from kahu.catalog.repository import DEFAULT_PROJECT, Catalog
from kahu.catalog.scope import SeriesScope
from kahu.catalog.tables import ProjectSeries, Series
from kahu.dicom.uids import validate_uid
from kahu.errors import InvalidInput
from kahu.search.datasets import Curation
from kahu.search.query import parse
from kahu.search.series import series_condition


@dataclass(frozen=True, slots=True)
class RunInput:
    dataset: str | None = None
    query: str | None = None
    series_uids: Sequence[str] = field(default_factory=tuple)
    limit: int | None = None
    fetch_references: bool = False

    def public(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "query": self.query,
            "series_uids": list(self.series_uids),
            "limit": self.limit,
            "fetch_references": self.fetch_references,
        }

    @classmethod
    def from_public(cls, data: dict[str, Any]) -> RunInput:
        return cls(
            dataset=data.get("dataset"),
            query=data.get("query"),
            series_uids=tuple(data.get("series_uids") or ()),
            limit=data.get("limit"),
            fetch_references=bool(data.get("fetch_references")),
        )


def _quoted(name: str) -> str:
    return '"' + re.sub(r'(["\\])', r"\\\1", name) + '"'


def resolve(
    catalog: Catalog, given: RunInput, project: str = DEFAULT_PROJECT
) -> tuple[list[str], list[str]]:
    """The run's series (in catalog order, limited) and the referenced series not found,
    all from ``project``: a series of another project is not there for the run."""
    if given.limit is not None and given.limit < 1:
        raise InvalidInput("limit must be at least 1")
    in_project = Series.id.in_(
        select(ProjectSeries.series_pk).where(
            ProjectSeries.project_pk == catalog.project_pk(project)
        )
    )
    uids = [validate_uid(u) for u in given.series_uids]
    terms = []
    if given.dataset:
        Curation(catalog).dataset(given.dataset)  # NotFound names it
        terms.append(f"dataset:{_quoted(given.dataset)}")
    if given.query and given.query.strip():
        parse(given.query)  # a bad query is a 400 before anything is created
        terms.append(f"({given.query})")
    chosen: list[str] = []
    if terms:
        condition = series_condition(catalog, " AND ".join(terms))
        stmt = select(Series.series_instance_uid).where(condition, in_project).order_by(Series.id)
        if uids:
            stmt = stmt.where(Series.series_instance_uid.in_(uids))
        if given.limit is not None:
            stmt = stmt.limit(given.limit)
        with catalog.db.read() as s:
            chosen = list(s.scalars(stmt))
    elif uids:
        with catalog.db.read() as s:
            known = set(
                s.scalars(
                    select(Series.series_instance_uid).where(
                        Series.series_instance_uid.in_(uids), in_project
                    )
                )
            )
        unknown = [u for u in uids if u not in known]
        if unknown:
            raise InvalidInput(f"series not in project {project}: {', '.join(unknown[:5])}")
        chosen = list(dict.fromkeys(uids))[: given.limit]
    else:
        raise InvalidInput("a run needs a dataset, a query or series UIDs")
    missing: list[str] = []
    if given.fetch_references and chosen:
        scope = SeriesScope(frozenset({catalog.project_pk(project)}), f"cohort in {project}")
        referenced: list[str] = []
        for uid in chosen:
            doc = catalog.get_series(scope, uid).document
            referenced += [r for r in doc.get("referenced_series", []) if r not in chosen]
        referenced = list(dict.fromkeys(referenced))
        if referenced:
            with catalog.db.read() as s:
                found = set(
                    s.scalars(
                        select(Series.series_instance_uid).where(
                            Series.series_instance_uid.in_(referenced), in_project
                        )
                    )
                )
            chosen += [r for r in referenced if r in found]
            missing = [r for r in referenced if r not in found]
    return chosen, missing


def modalities(catalog: Catalog, series: Sequence[str], project: str) -> dict[str, str]:
    """Each series' modality ("" where it has none), read within ``project``."""
    scope = SeriesScope(frozenset({catalog.project_pk(project)}), f"cohort in {project}")
    return {uid: catalog.get_series(scope, uid).modality or "" for uid in series}
