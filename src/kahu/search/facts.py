"""What the catalog holds per field: which fields series have (and how many), and a field's
most common values, for autocomplete in a query bar."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    cast,
    func,
    select,
    true,
)

from kahu.catalog.repository import Catalog
from kahu.catalog.scope import SeriesScope
from kahu.catalog.tables import Dataset, DatasetSeries, Series, SeriesTag
from kahu.search.columns import ColumnIndex, Mask, Snapshot, value_order
from kahu.search.fields import UnknownField, resolve
from kahu.search.query import MatchAll, like_pattern, within
from kahu.search.sql import condition, expand


@dataclass(frozen=True, slots=True)
class FieldCount:
    name: str
    type: str
    series: int  # how many series have a value for it


@dataclass(frozen=True, slots=True)
class ValueCount:
    value: Any
    series: int


def field_counts(catalog: Catalog, where: ColumnElement[bool] | None = None) -> list[FieldCount]:
    """Every field some series has (of those ``where``, a read scope, allows), with its type
    and how many series have it, by name."""
    scope = true() if where is None else where
    postgres = catalog.db.engine.dialect.name == "postgresql"
    if postgres:
        keys = func.jsonb_object_keys(Series.document).table_valued("key").render_derived("k")
    else:
        keys = func.json_each(Series.document).table_valued("key")
    stmt = (
        select(keys.c.key, func.count())
        .select_from(Series)
        .join(keys, true())  # lateral: each series' own keys
        .where(scope)
        .group_by(keys.c.key)
    )
    with catalog.db.read() as s:
        counts: dict[str, int] = {str(k): int(n) for k, n in s.execute(stmt).all()}
        total = int(s.scalar(select(func.count(Series.id)).where(scope)) or 0)
        in_datasets = int(
            s.scalar(
                select(func.count(func.distinct(DatasetSeries.series_pk)))
                .join(Series, Series.id == DatasetSeries.series_pk)
                .where(scope)
            )
            or 0
        )
        tagged = int(
            s.scalar(
                select(func.count(func.distinct(SeriesTag.series_pk)))
                .join(Series, Series.id == SeriesTag.series_pk)
                .where(scope)
            )
            or 0
        )
    for name in ("instance_count", "size_bytes", "received_at", "updated_at"):
        counts[name] = total
    counts["dataset"] = in_datasets
    counts["tags"] = tagged
    out = []
    for name, count in counts.items():
        try:
            field = resolve(name)
        except UnknownField:  # _invalid, and keys of documents from older versions
            continue
        if count:
            out.append(FieldCount(field.name, field.type.value, count))
    return sorted(out, key=lambda f: f.name.lower())


def field_values(
    catalog: Catalog,
    scope: SeriesScope,
    name: str,
    *,
    prefix: str = "",
    limit: int = 20,
    index: ColumnIndex | None = None,
) -> list[ValueCount]:
    """The most common values of a field (those starting with ``prefix``, case-insensitive),
    with how many series have each, among the series of ``scope``; from the column ``index``
    where it holds the field."""
    field = resolve(name)
    node = within(MatchAll(), scope.projects)
    snapshot = index.current(wait=False) if index is not None else None
    if index is not None and snapshot is not None and field.name in index.columns:
        mask = index.mask(snapshot, node)
        if mask is not None:
            return _indexed_values(index, snapshot, field.name, prefix, limit, mask)
    dialect = catalog.db.engine.dialect.name
    allowed = condition(node, dialect)
    pattern = like_pattern(prefix.replace("*", "\\*").replace("?", "\\?")) + "%"
    postgres = catalog.db.engine.dialect.name == "postgresql"
    if field.column == "dataset":
        value: Any = Dataset.name
        stmt = (
            select(value, func.count(func.distinct(DatasetSeries.series_pk)))
            .join(DatasetSeries, DatasetSeries.dataset_pk == Dataset.id)
            .join(Series, Series.id == DatasetSeries.series_pk)
        )
        match: ColumnElement[bool] = _like(value, pattern, postgres)
    elif field.column == "tags":
        value = SeriesTag.tag
        stmt = select(value, func.count(func.distinct(SeriesTag.series_pk))).join(
            Series, Series.id == SeriesTag.series_pk
        )
        match = _like(value, pattern, postgres)
    elif field.column is not None:
        value = getattr(Series, field.column)
        stmt = select(value, func.count())
        match = _like(cast(value, Text), pattern, postgres)
    else:
        each = expand(field, catalog.db.engine.dialect.name)
        value = each.value  # numbers stay numbers
        stmt = (
            select(value, func.count(func.distinct(Series.id)))
            .select_from(Series)
            .join(each.source, true())  # lateral: each series' own values
        )
        match = and_(each.kind != "null", _like(each.text, pattern, postgres))
    stmt = (
        stmt.where(match, allowed).group_by(value).order_by(func.count().desc(), value).limit(limit)
    )
    with catalog.db.read() as s:
        return [ValueCount(v, int(n)) for v, n in s.execute(stmt).all()]


def _like(value: Any, pattern: str, postgres: bool) -> ColumnElement[bool]:
    result: ColumnElement[bool] = (
        value.ilike(pattern, escape="\\") if postgres else value.like(pattern, escape="\\")
    )
    return result


def _indexed_values(
    index: ColumnIndex, snapshot: Snapshot, name: str, prefix: str, limit: int, mask: Mask
) -> list[ValueCount]:
    start = prefix.lower()

    def key_of(item: Any) -> Any:
        if item is None or isinstance(item, dict):
            return None
        text = json.dumps(item) if not isinstance(item, str) else item
        return item if text.lower().startswith(start) else None

    counts, _ = index.bucket_counts(snapshot, name, mask, key_of)
    ordered = sorted(counts.items(), key=lambda kv: value_order(kv[0]))
    ordered = sorted(ordered, key=lambda kv: -kv[1])[:limit]
    return [ValueCount(value, count) for value, count in ordered]
