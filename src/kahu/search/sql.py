"""A query tree as a SQL condition on the ``series`` table, with bound parameters only.

Document fields are read through the backend's JSON functions, one row per value, so a
scalar and a list behave alike: SQLite's ``json_each`` and PostgreSQL's ``jsonb_path_query``
(lax mode, ``[*]`` unwraps a list and leaves a scalar as it is). Field names come from the
field registry, never from the query text, and are bound as parameters anyway.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Numeric,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    literal_column,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import JSONPATH

from kahu.catalog.scope import in_projects
from kahu.catalog.tables import Dataset, DatasetSeries, Series, SeriesTag
from kahu.errors import InvalidInput
from kahu.search.fields import Field, FieldType, resolve
from kahu.search.query import (
    And,
    Compare,
    Exists,
    InProjects,
    Like,
    MatchAll,
    Node,
    Not,
    Or,
    Range,
    Value,
    parse,
)

_MEMBERSHIP = frozenset({"dataset", "tags"})


def like_regex(pattern: str) -> str:
    """A LIKE pattern (escape backslash) as a regular expression."""
    out, chars = [], iter(pattern)
    for char in chars:
        if char == "\\":
            out.append(re.escape(next(chars, "\\")))
        elif char == "%":
            out.append(".*")
        elif char == "_":
            out.append(".")
        else:
            out.append(re.escape(char))
    return "".join(out)


_OPS = {
    (True, True): (">=", "<="),
    (True, False): (">=", "<"),
    (False, True): (">", "<="),
    (False, False): (">", "<"),
}


@dataclass(frozen=True, slots=True)
class Expansion:
    """One row per value of a document field, to join laterally to ``series``: the FROM item,
    the value (numbers as numbers), its text, and its kind ('text', 'number', 'true', 'false',
    'null')."""

    source: Any
    value: Any
    text: Any
    kind: Any


def expand(field: Field, dialect: str) -> Expansion:
    if dialect == "postgresql":
        path = cast(literal(f'$."{field.name}"[*]'), JSONPATH)
        items = func.jsonb_path_query(Series.document, path).table_valued("v").render_derived("j")
        json_type = func.jsonb_typeof(items.c.v)
        text = items.c.v.op("#>>")(literal_column("'{}'"))
        kind = case(
            (json_type == "string", literal("text")),
            (json_type == "boolean", case((text == "true", "true"), else_="false")),
            else_=json_type,
        )
        return Expansion(items, items.c.v, text, kind)
    each = func.json_each(Series.document, f'$."{field.name}"').table_valued("value", "type")
    kind = case((each.c.type.in_(("integer", "real")), literal("number")), else_=each.c.type)
    return Expansion(each, each.c.value, each.c.value, kind)


def condition(
    node: Node, dialect: str, dynamic: Mapping[str, str] | None = None
) -> ColumnElement[bool]:
    """The WHERE condition for ``node`` on ``dialect`` ('sqlite' or 'postgresql').

    ``dynamic`` maps the lower-case names of query-defined datasets to their queries:
    ``dataset:NAME`` then also matches what NAME's query matches (a dataset whose query
    leads back to itself is refused).
    """
    return _Builder(dialect, dynamic or {}).build(node)


class _Builder:
    def __init__(self, dialect: str, dynamic: Mapping[str, str]) -> None:
        self.dialect = dialect
        self.postgres = dialect == "postgresql"
        self.dynamic = dynamic
        self.expanding: list[str] = []

    def build(self, node: Node) -> ColumnElement[bool]:
        if isinstance(node, MatchAll):
            return true()
        if isinstance(node, And):
            return and_(*(self.build(item) for item in node.items))
        if isinstance(node, Or):
            return or_(*(self.build(item) for item in node.items))
        if isinstance(node, Not):
            return not_(self.build(node.item))
        if isinstance(node, Like):
            return or_(*(self.like(field, node.pattern) for field in node.fields))
        if isinstance(node, Exists):
            return self.exists(node.field)
        if isinstance(node, Compare):
            return self.compare(node.field, node.value)
        if isinstance(node, InProjects):
            return in_projects(node.projects)
        return self.range(node)

    # -- the catalog's own columns -------------------------------------------------------------

    def column(self, field: Field) -> Any:
        return getattr(Series, field.column or "")

    def column_value(self, field: Field, value: Value) -> Any:
        if field.type is FieldType.DATETIME:
            text = str(value).replace("T99", "T23:59:59.999999").removesuffix("Z")
            moment = datetime.fromisoformat(text)
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
        return value

    def members(
        self, field: Field, predicate: Any, names: Callable[[str], bool] | None = None
    ) -> ColumnElement[bool]:
        """Series tagged with, or in a dataset named by, something ``predicate`` accepts;
        ``names`` picks the query datasets to expand (``dataset`` only)."""
        # correlated to the series only: a facet's query may join these tables itself
        if field.column == "tags":
            return exists(
                select(literal(1))
                .select_from(SeriesTag)
                .where(SeriesTag.series_pk == Series.id, predicate(SeriesTag.tag))
                .correlate(Series)
            )
        listed = exists(
            select(literal(1))
            .select_from(DatasetSeries)
            .join(Dataset, Dataset.id == DatasetSeries.dataset_pk)
            .where(DatasetSeries.series_pk == Series.id, predicate(Dataset.name))
            .correlate(Series)
        )
        expanded = [
            self.expand_dataset(name)
            for name in sorted(self.dynamic)
            if names is None or names(name)
        ]
        return or_(listed, *expanded)

    def expand_dataset(self, name: str) -> ColumnElement[bool]:
        if name in self.expanding:
            chain = " -> ".join([*self.expanding, name])
            raise InvalidInput(f"dataset queries refer to each other in a circle: {chain}")
        self.expanding.append(name)
        try:
            return self.build(parse(self.dynamic[name]))
        finally:
            self.expanding.pop()

    # -- the metadata document -----------------------------------------------------------------

    def values(self, field: Field, predicate: Any) -> ColumnElement[bool]:
        """Whether any value of ``field`` in the document satisfies
        ``predicate(text, kind, value)`` (see :class:`Expansion`)."""
        each = expand(field, self.dialect)
        return exists(
            select(literal(1))
            .select_from(each.source)
            .where(predicate(each.text, each.kind, each.value))
        )

    def number(self, text: Any, kind: Any, raw: Any) -> Any:
        if self.postgres:
            return case((kind == "number", cast(text, Numeric)), else_=None)
        return case((kind == "number", raw), else_=None)

    # -- node kinds ----------------------------------------------------------------------------

    def exists(self, field: Field) -> ColumnElement[bool]:
        if field.column in _MEMBERSHIP:
            return self.members(field, lambda name: true())
        if field.column is not None:
            present: ColumnElement[bool] = self.column(field).is_not(None)
            return present
        return self.values(field, lambda text, kind, raw: kind != "null")

    def like(self, field: Field, pattern: str) -> ColumnElement[bool]:
        def match(text: Any) -> Any:
            if self.postgres:
                return text.ilike(pattern, escape="\\")
            return text.like(pattern, escape="\\")  # SQLite's LIKE ignores ASCII case

        if field.column in _MEMBERSHIP:
            compiled = re.compile(like_regex(pattern), re.IGNORECASE | re.DOTALL)
            return self.members(field, match, lambda name: bool(compiled.fullmatch(name)))
        if field.column is not None:
            if field.type is FieldType.NUMBER:
                return false()
            matched: ColumnElement[bool] = match(self.column(field))
            return matched
        return self.values(field, lambda text, kind, raw: and_(kind == "text", match(text)))

    def compare(self, field: Field, value: Value) -> ColumnElement[bool]:
        if field.column in _MEMBERSHIP:
            wanted = str(value).lower()
            return self.members(
                field, lambda name: func.lower(name) == wanted, lambda name: name == wanted
            )
        if field.column is not None:
            equal: ColumnElement[bool] = self.column(field) == self.column_value(field, value)
            return equal
        if field.type is FieldType.BOOLEAN:
            return self.values(
                field, lambda text, kind, raw: kind == ("true" if value else "false")
            )
        if field.type is FieldType.NUMBER:
            return self.values(field, lambda text, kind, raw: self.number(text, kind, raw) == value)
        if field.type is FieldType.TEXT:
            target = str(value).lower()
            return self.values(
                field, lambda text, kind, raw: and_(kind == "text", func.lower(text) == target)
            )
        return self.values(field, lambda text, kind, raw: and_(kind == "text", text == value))

    def range(self, node: Range) -> ColumnElement[bool]:
        low_op, high_op = _OPS[(node.include_low, node.include_high)]
        field = node.field
        if field.column in _MEMBERSHIP:
            raise InvalidInput(f"{field.name} holds names; use a value or a wildcard, not a range")

        def within(value: Any) -> Any:
            parts = []
            if node.low is not None:
                parts.append(value.op(low_op)(self.bound(field, node.low)))
            if node.high is not None:
                parts.append(value.op(high_op)(self.bound(field, node.high)))
            return and_(true(), *parts)

        if field.column is not None:
            bounded: ColumnElement[bool] = within(self.column(field))
            return bounded
        if field.type is FieldType.NUMBER:
            return self.values(field, lambda text, kind, raw: within(self.number(text, kind, raw)))
        return self.values(field, lambda text, kind, raw: and_(kind == "text", within(text)))

    def bound(self, field: Field, value: Value) -> Any:
        if field.column is not None:
            return literal(self.column_value(field, value))
        return literal(value)


def sort_key(spec: str, dialect: str) -> Any:
    """An ORDER BY term for ``Field`` (ascending) or ``-Field`` (descending); series without
    the field come last either way."""
    descending = spec.startswith("-")
    field = resolve(spec.removeprefix("-").removeprefix("+"))
    if field.column in _MEMBERSHIP:
        raise InvalidInput(f"series cannot be sorted by {field.name}")
    if field.column is not None:
        key: Any = getattr(Series, field.column)
    elif dialect == "postgresql":
        key = Series.document[field.name]  # jsonb orders numbers as numbers, text as text
    else:
        key = func.json_extract(Series.document, f'$."{field.name}"')
    return (key.desc() if descending else key.asc()).nulls_last()
