"""Facets over the series a query matches: what a dashboard draws, in one call.

- ``terms``: the commonest values of a field (a multi-valued field counts each series once per
  value) and how many matched series have no value;
- ``histogram``: numbers in buckets of a fixed width (``PatientAge`` by 10 years);
- ``date_histogram``: dates and date-times by ``year``, ``month`` or ``day``;
- ``distinct``: how many patients, studies or series match.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sqlalchemy import Integer, Numeric, case, cast, func, select, true

from kahu.catalog.repository import Catalog
from kahu.catalog.scope import SeriesScope
from kahu.catalog.tables import Dataset, DatasetSeries, Series, SeriesTag, Study
from kahu.errors import InvalidInput
from kahu.search.columns import ColumnIndex, is_number, membership_pairs, value_order
from kahu.search.datasets import Curation
from kahu.search.fields import Field, FieldType, resolve
from kahu.search.query import Node, parse, within
from kahu.search.sql import condition, expand

MAX_FACETS = 20
#: interval -> (length of an ISO date prefix, SQLite strftime format, PostgreSQL to_char format)
_DATE_BUCKETS = {
    "year": (4, "%Y", "YYYY"),
    "month": (7, "%Y-%m", "YYYY-MM"),
    "day": (10, "%Y-%m-%d", "YYYY-MM-DD"),
}


@dataclass(frozen=True, slots=True)
class Terms:
    field: str
    size: int = 10
    kind: Literal["terms"] = "terms"


@dataclass(frozen=True, slots=True)
class Histogram:
    field: str
    interval: float
    kind: Literal["histogram"] = "histogram"


@dataclass(frozen=True, slots=True)
class DateHistogram:
    field: str
    interval: Literal["year", "month", "day"] = "year"
    kind: Literal["date_histogram"] = "date_histogram"


@dataclass(frozen=True, slots=True)
class Distinct:
    of: Literal["patients", "studies", "series"]
    kind: Literal["distinct"] = "distinct"


Facet = Terms | Histogram | DateHistogram | Distinct


@dataclass(frozen=True, slots=True)
class Bucket:
    key: Any
    count: int


@dataclass(frozen=True, slots=True)
class FacetResult:
    buckets: list[Bucket]
    missing: int | None = None  # matched series without a value (terms and histograms)
    count: int | None = None  # distinct


def aggregate(
    catalog: Catalog,
    scope: SeriesScope,
    query: str | Node,
    facets: dict[str, Facet],
    *,
    index: ColumnIndex | None = None,
) -> tuple[int, dict[str, FacetResult]]:
    """How many series of ``scope`` ``query`` matches and each facet over them. The column
    ``index``, where given, counts the facets on the fields it holds; SQL counts the rest
    alike."""
    if len(facets) > MAX_FACETS:
        raise InvalidInput(f"at most {MAX_FACETS} facets in one request")
    dialect = catalog.db.engine.dialect.name
    node = within(parse(query) if isinstance(query, str) else query, scope.projects)
    dynamic = Curation(catalog).dynamic_queries()
    plans = {name: _Plan(facet, dialect) for name, facet in facets.items()}
    results: dict[str, FacetResult] = {}
    total: int | None = None
    if index is not None:
        snapshot = index.current(wait=False)
        mask = None if snapshot is None else index.mask(snapshot, node, dynamic)
        if mask is not None:
            total = int(np.count_nonzero(mask))
            for name, plan in plans.items():
                result = plan.from_index(index, snapshot, mask, total)
                if result is not None:
                    results[name] = result
    if total is not None and len(results) == len(plans):
        return total, results
    where = condition(node, dialect, dynamic)
    with catalog.db.read() as s:
        if total is None:
            total = int(s.scalar(select(func.count(Series.id)).where(where)) or 0)
        for name, plan in plans.items():
            if name not in results:
                results[name] = plan.run(s, where, total)
    return total, {name: results[name] for name in plans}


class _Plan:
    def __init__(self, facet: Facet, dialect: str) -> None:
        self.facet = facet
        self.postgres = dialect == "postgresql"
        self.dialect = dialect
        self.field: Field | None = None
        if not isinstance(facet, Distinct):
            self.field = resolve(facet.field)
            self.check()

    def check(self) -> None:
        assert self.field is not None
        facet, kind = self.facet, self.field.type
        if isinstance(facet, Terms) and not 1 <= facet.size <= 1000:
            raise InvalidInput("terms size must be between 1 and 1000")
        if isinstance(facet, Histogram):
            if kind is not FieldType.NUMBER:
                raise InvalidInput(f"a histogram needs a number field; {self.field.name} is {kind}")
            if not facet.interval > 0:
                raise InvalidInput("a histogram interval must be above 0")
        if isinstance(facet, DateHistogram):
            if kind not in (FieldType.DATE, FieldType.DATETIME):
                raise InvalidInput(
                    f"a date histogram needs a date field; {self.field.name} is {kind}"
                )
            if facet.interval not in _DATE_BUCKETS:
                raise InvalidInput("a date histogram interval is year, month or day")

    def from_index(
        self, index: ColumnIndex, snapshot: Any, mask: Any, total: int
    ) -> FacetResult | None:
        """The facet counted by the column index, or None when it does not hold the field."""
        facet, f = self.facet, self.field
        if isinstance(facet, Distinct):
            if facet.of == "series":
                return FacetResult([], count=total)
            return FacetResult([], count=snapshot.distinct(facet.of, mask))
        assert f is not None
        if f.column in ("dataset", "tags") and isinstance(facet, Terms):
            return self.members_from_index(index, snapshot, mask, total)
        if f.name not in index.columns:
            return None
        key_of: Callable[[Any], Any]
        if isinstance(facet, Terms):
            key_of = lambda item: item  # noqa: E731
        elif isinstance(facet, Histogram):
            interval = facet.interval
            key_of = lambda item: (  # noqa: E731
                self.clean(math.floor(item / interval) * interval) if is_number(item) else None
            )
        else:
            length = _DATE_BUCKETS[facet.interval][0]
            key_of = lambda item: item[:length] if isinstance(item, str) else None  # noqa: E731
        counts, having = index.bucket_counts(snapshot, f.name, mask, key_of)
        ordered = sorted(counts.items(), key=lambda kv: value_order(kv[0]))
        if isinstance(facet, Terms):
            ordered = sorted(ordered, key=lambda kv: -kv[1])[: facet.size]
        return FacetResult([Bucket(k, n) for k, n in ordered], missing=total - having)

    def members_from_index(
        self, index: ColumnIndex, snapshot: Any, mask: Any, total: int
    ) -> FacetResult:
        """Datasets or tags of the matched series: their (series, name) pairs read once and
        kept to the series the index matched (as SQL counts them: explicit memberships)."""
        assert isinstance(self.facet, Terms)
        assert self.field is not None
        pairs = membership_pairs(index.catalog, self.field.column)
        if not pairs:
            return FacetResult([], missing=total)
        pks = np.fromiter((pk for pk, _ in pairs), np.int64, len(pairs))
        hit = np.isin(pks, snapshot.pks[mask])
        counts: dict[str, int] = {}
        having: set[int] = set()
        for (pk, name), matched in zip(pairs, hit.tolist(), strict=True):
            if matched:
                counts[name] = counts.get(name, 0) + 1
                having.add(pk)
        ordered = sorted(counts.items(), key=lambda kv: value_order(kv[0]))
        ordered = sorted(ordered, key=lambda kv: -kv[1])[: self.facet.size]
        return FacetResult([Bucket(k, n) for k, n in ordered], missing=total - len(having))

    def run(self, s: Any, where: Any, total: int) -> FacetResult:
        if isinstance(self.facet, Distinct):
            return FacetResult([], count=self.distinct(s, where, self.facet.of))
        assert self.field is not None
        key, joins, present = self.key(self.field)
        base = select(func.count(func.distinct(Series.id))).select_from(Series)
        grouped = select(key, func.count(func.distinct(Series.id))).select_from(Series)
        for target, onclause in joins:
            base, grouped = base.join(target, onclause), grouped.join(target, onclause)
        having = int(s.scalar(base.where(where, present)) or 0)
        grouped = grouped.where(where, present).group_by(key)
        if isinstance(self.facet, Terms):
            grouped = grouped.order_by(func.count(func.distinct(Series.id)).desc(), key)
            grouped = grouped.limit(self.facet.size)
        else:
            grouped = grouped.order_by(key)
        buckets = [Bucket(self.clean(k), int(n)) for k, n in s.execute(grouped).all()]
        return FacetResult(buckets, missing=total - having)

    def key(self, field: Field) -> tuple[Any, list[tuple[Any, Any]], Any]:
        """The bucket key, the joins that provide it, and the condition 'has a value'."""
        facet = self.facet
        if field.column == "dataset":
            joins = [
                (DatasetSeries, DatasetSeries.series_pk == Series.id),
                (Dataset, Dataset.id == DatasetSeries.dataset_pk),
            ]
            return Dataset.name, joins, true()
        if field.column == "tags":
            return SeriesTag.tag, [(SeriesTag, SeriesTag.series_pk == Series.id)], true()
        if field.column is not None:
            column = getattr(Series, field.column)
            return self.bucket(column), [], column.is_not(None)
        values = expand(field, self.dialect)
        joins = [(values.source, true())]  # lateral: each series' own values
        if isinstance(facet, Histogram):
            number = case((values.kind == "number", values.value), else_=None)
            if self.postgres:
                number = case((values.kind == "number", cast(values.text, Numeric)), else_=None)
            return self.bucket(number), joins, values.kind == "number"
        if isinstance(facet, DateHistogram):
            return self.bucket(values.text), joins, values.kind == "text"
        return values.value, joins, values.kind != "null"

    def bucket(self, value: Any) -> Any:
        facet = self.facet
        if isinstance(facet, Histogram):
            ratio = value / facet.interval
            if self.postgres:
                return func.floor(ratio) * facet.interval
            whole = cast(ratio, Integer)
            return (whole - case((ratio < whole, 1), else_=0)) * facet.interval
        if isinstance(facet, DateHistogram):
            length, sqlite_format, postgres_format = _DATE_BUCKETS[facet.interval]
            if self.field is None or self.field.column is None:  # ISO text in the document
                return func.substr(value, 1, length)
            if self.postgres:
                return func.to_char(func.timezone("UTC", value), postgres_format)
            return func.strftime(sqlite_format, value)
        return value

    def clean(self, key: Any) -> Any:
        if isinstance(self.facet, Histogram) and key is not None:
            number = float(key)
            return int(number) if number.is_integer() else number
        return key

    @staticmethod
    def distinct(s: Any, where: Any, of: str) -> int:
        if of == "series":
            stmt = select(func.count(Series.id))
        elif of == "studies":
            stmt = select(func.count(func.distinct(Series.study_pk)))
        elif of == "patients":
            stmt = select(func.count(func.distinct(Study.patient_pk))).join(
                Study, Study.id == Series.study_pk
            )
        else:
            raise InvalidInput("distinct counts patients, studies or series")
        return int(s.scalar(stmt.select_from(Series).where(where)) or 0)
