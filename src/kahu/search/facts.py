"""What the catalog holds per field: which fields series have (and how many), and a field's
most common values, for autocomplete in a query bar."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Text,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONPATH

from kahu.catalog.repository import Catalog
from kahu.catalog.tables import Dataset, DatasetSeries, Series
from kahu.search.fields import UnknownField, resolve
from kahu.search.query import like_pattern


@dataclass(frozen=True, slots=True)
class FieldCount:
    name: str
    type: str
    series: int  # how many series have a value for it


@dataclass(frozen=True, slots=True)
class ValueCount:
    value: Any
    series: int


def field_counts(catalog: Catalog) -> list[FieldCount]:
    """Every field some series has, with its type and how many series have it, by name."""
    postgres = catalog.db.engine.dialect.name == "postgresql"
    if postgres:
        keys = func.jsonb_object_keys(Series.document).table_valued("key").render_derived("k")
    else:
        keys = func.json_each(Series.document).table_valued("key")
    stmt = (
        select(keys.c.key, func.count())
        .select_from(Series)
        .join(keys, true())  # lateral: each series' own keys
        .group_by(keys.c.key)
    )
    with catalog.db.read() as s:
        counts: dict[str, int] = {str(k): int(n) for k, n in s.execute(stmt).all()}
        total = int(s.scalar(select(func.count(Series.id))) or 0)
        in_datasets = int(s.scalar(select(func.count(func.distinct(DatasetSeries.series_pk)))) or 0)
    for name in ("instance_count", "size_bytes", "received_at", "updated_at"):
        counts[name] = total
    counts["dataset"] = in_datasets
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
    catalog: Catalog, name: str, *, prefix: str = "", limit: int = 20
) -> list[ValueCount]:
    """The most common values of a field (those starting with ``prefix``, case-insensitive),
    with how many series have each."""
    field = resolve(name)
    pattern = like_pattern(prefix.replace("*", "\\*").replace("?", "\\?")) + "%"
    postgres = catalog.db.engine.dialect.name == "postgresql"
    if field.column == "dataset":
        value: Any = Dataset.name
        stmt = select(value, func.count(func.distinct(DatasetSeries.series_pk))).join(
            DatasetSeries, DatasetSeries.dataset_pk == Dataset.id
        )
        match: ColumnElement[bool] = _like(value, pattern, postgres)
    elif field.column is not None:
        value = getattr(Series, field.column)
        stmt = select(value, func.count())
        match = _like(cast(value, Text), pattern, postgres)
    elif postgres:
        path = cast(literal(f'$."{field.name}"[*]'), JSONPATH)
        items = func.jsonb_path_query(Series.document, path).table_valued("v").render_derived("j")
        # numbers and booleans come back as such, text as text
        value = case(
            (func.jsonb_typeof(items.c.v) == "string", items.c.v.op("#>>")(literal_column("'{}'"))),
            else_=None,
        )
        value = func.coalesce(value, cast(items.c.v, Text))
        stmt = (
            select(items.c.v, func.count(func.distinct(Series.id)))
            .select_from(Series)
            .join(items, true())
        )
        match = and_(func.jsonb_typeof(items.c.v) != "null", _like(value, pattern, True))
        value = items.c.v
    else:
        each = func.json_each(Series.document, f'$."{field.name}"').table_valued("value", "type")
        value = each.c.value
        stmt = (
            select(value, func.count(func.distinct(Series.id)))
            .select_from(Series)
            .join(each, true())
        )
        match = and_(each.c.type != "null", _like(value, pattern, False))
    stmt = stmt.where(match).group_by(value).order_by(func.count().desc(), value).limit(limit)
    with catalog.db.read() as s:
        return [ValueCount(v, int(n)) for v, n in s.execute(stmt).all()]


def _like(value: Any, pattern: str, postgres: bool) -> ColumnElement[bool]:
    result: ColumnElement[bool] = (
        value.ilike(pattern, escape="\\") if postgres else value.like(pattern, escape="\\")
    )
    return result
