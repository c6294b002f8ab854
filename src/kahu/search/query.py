"""Lucene query-string syntax, parsed by luqum into a small typed query tree.

The tree says what matches, not how: :mod:`kahu.search.sql` turns it into SQL with bound
parameters, so no text of a query ever becomes SQL. Rules (docs/search.md has the user's view):

- ``Field:value`` compares by the field's type (text case-insensitively, numbers and dates as
  such); a partial date (``2020``, ``2020-03``) means the whole year or month.
- ``*`` and ``?`` make a wildcard (text, dates and times); ``Field:*`` and ``_exists_:Field``
  ask for a field with a value; ``"a phrase"`` is one exact value.
- ``[a TO b]`` includes its bounds, ``{a TO b}`` excludes them, ``*`` leaves a side open;
  ``Field:>=40``, ``Field:<2020`` are one-sided ranges.
- ``AND``, ``OR``, ``NOT`` (and ``+term``, ``-term``) with parentheses; terms without an
  operator between them must all match. A term without a field is looked for, as a substring,
  in the descriptive fields (:data:`kahu.search.fields.DESCRIPTIVE`).
- A multi-valued field matches when any of its values does.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from luqum import tree
from luqum.exceptions import IllegalCharacterError, ParseError
from luqum.parser import parser

from kahu.errors import InvalidInput
from kahu.search.fields import DESCRIPTIVE, Field, FieldType, resolve

MAX_LENGTH = 4096
MAX_DEPTH = 40


class QueryError(InvalidInput):
    """A query that cannot be run, with the reason and, where known, its position."""


Value = str | float | bool


@dataclass(frozen=True, slots=True)
class MatchAll:
    pass


@dataclass(frozen=True, slots=True)
class Compare:
    field: Field
    value: Value


@dataclass(frozen=True, slots=True)
class Range:
    field: Field
    low: Value | None
    high: Value | None
    include_low: bool = True
    include_high: bool = True


@dataclass(frozen=True, slots=True)
class Like:
    """A SQL LIKE pattern (escape character backslash), case-insensitive; ``fields`` holds
    more than one field for a term without a field name."""

    fields: tuple[Field, ...]
    pattern: str


@dataclass(frozen=True, slots=True)
class Exists:
    field: Field


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


@dataclass(frozen=True, slots=True)
class InProjects:
    """Series of one of these projects (primary keys): never parsed from a query, added by
    the authorization layer (:mod:`kahu.auth.policy`) to what a caller asks."""

    projects: frozenset[int]


Node = MatchAll | Compare | Range | Like | Exists | And | Or | Not | InProjects


def within(node: Node, projects: frozenset[int] | None) -> Node:
    """``node`` narrowed to series of ``projects`` (None: not narrowed)."""
    if projects is None:
        return node
    if isinstance(node, MatchAll):
        return InProjects(projects)
    return And((node, InProjects(projects)))


@functools.lru_cache(maxsize=1024)
def parse(text: str) -> Node:
    """The query tree of ``text``; raises :class:`QueryError` (HTTP 400) for anything wrong.
    Trees are immutable, so the same text (a user paging, a facet click) is parsed once."""
    if len(text) > MAX_LENGTH:
        raise QueryError(f"query longer than {MAX_LENGTH} characters")
    if not text.strip() or text.strip() == "*":
        return MatchAll()
    if text.count("(") > MAX_DEPTH:
        raise QueryError(f"query nested deeper than {MAX_DEPTH} parentheses")
    try:
        parsed = parser.parse(text)
    except IllegalCharacterError as exc:
        raise QueryError(f"syntax error: {exc}") from exc
    except ParseError as exc:
        raise QueryError(
            f"syntax error: {str(exc).removeprefix('Syntax error in input : ')}"
        ) from exc
    except RecursionError as exc:
        raise QueryError("query nested too deeply") from exc
    return _Converter().node(parsed, None, 0)


def _where(item: Any) -> str:
    pos = getattr(item, "pos", None)
    return f" at position {pos + 1}" if isinstance(pos, int) else ""


_DATE = re.compile(r"^(\d{4})(?:-?(\d{2})(?:-?(\d{2}))?)?$")
_TIME = re.compile(r"^(\d{2}):?(\d{2})?:?(\d{2}(?:\.\d{1,6})?)?$")
_MONTH_END = {2: 29, 4: 30, 6: 30, 9: 30, 11: 30}


def _unescape(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw)


def _has_wildcard(raw: str) -> bool:
    return re.search(r"(?<!\\)(?:\\\\)*[*?]", raw) is not None


def like_pattern(raw: str, *, contains: bool = False) -> str:
    """A Lucene wildcard term as a LIKE pattern: ``*`` and ``?`` become ``%`` and ``_``;
    escaped characters and LIKE's own specials stay literal."""
    out: list[str] = []
    chars = iter(raw)
    for char in chars:
        if char == "\\":
            char = next(chars, "\\")
            out.append("\\" + char if char in "%_\\" else char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append("\\" + char if char in "%_" else char)
    pattern = "".join(out)
    return f"%{pattern}%" if contains else pattern


def _date_bounds(text: str, where: str) -> tuple[str, str]:
    """First and last day a full or partial date means."""
    match = _DATE.match(text)
    if match is None:
        raise QueryError(f"{text!r} is not a date (YYYY-MM-DD, YYYYMMDD, YYYY-MM or YYYY){where}")
    year, month, day = match.group(1), match.group(2), match.group(3)
    if month is None:
        return f"{year}-01-01", f"{year}-12-31"
    if not 1 <= int(month) <= 12:
        raise QueryError(f"{text!r} is not a date{where}")
    if day is None:
        return f"{year}-{month}-01", f"{year}-{month}-{_MONTH_END.get(int(month), 31):02d}"
    if not 1 <= int(day) <= 31:
        raise QueryError(f"{text!r} is not a date{where}")
    return (f"{year}-{month}-{day}",) * 2


def _time(text: str, where: str) -> str:
    match = _TIME.match(text)
    if match is None or int(match.group(1)) > 23:
        raise QueryError(f"{text!r} is not a time (HH:MM:SS){where}")
    return ":".join(part for part in match.groups() if part is not None)


class _Converter:
    def node(self, item: Any, field: Field | None, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise QueryError(f"query nested deeper than {MAX_DEPTH} levels")
        depth += 1
        if isinstance(item, tree.SearchField):
            return self.search_field(item, depth)
        if isinstance(item, (tree.FieldGroup, tree.Group)):
            return self.node(item.expr, field, depth)
        if isinstance(item, tree.AndOperation | tree.UnknownOperation):
            return self.conjunction(item, field, depth)
        if isinstance(item, tree.OrOperation):
            return Or(tuple(self.node(child, field, depth) for child in item.children))
        if isinstance(item, (tree.Not, tree.Prohibit)):
            return Not(self.node(item.a, field, depth))
        if isinstance(item, tree.Plus):
            return self.node(item.a, field, depth)
        if isinstance(item, tree.Boost):  # ranking means nothing to a cohort
            return self.node(item.expr, field, depth)
        if isinstance(item, tree.Word):
            return self.word(item, field)
        if isinstance(item, tree.Phrase):
            return self.phrase(item, field)
        if isinstance(item, (tree.Range, tree.From, tree.To)):
            return self.range(item, field)
        kind = {
            tree.Fuzzy: "fuzzy search (~)",
            tree.Proximity: "proximity search (~)",
            tree.Regex: "regular expressions",
        }.get(type(item), type(item).__name__)
        raise QueryError(f"{kind} not supported{_where(item)}")

    def conjunction(self, item: Any, field: Field | None, depth: int) -> Node:
        for child in item.children:
            if isinstance(child, tree.Word) and child.value in ("&&", "||", "!"):
                raise QueryError(f"use AND, OR and NOT instead of {child.value!r}{_where(child)}")
        return And(tuple(self.node(child, field, depth) for child in item.children))

    def search_field(self, item: tree.SearchField, depth: int) -> Node:
        if item.name == "_exists_":
            target = item.expr
            if not isinstance(target, tree.Word):
                raise QueryError(f"_exists_ takes a field name{_where(item)}")
            return Exists(self.resolve(target.value, target))
        field = self.resolve(item.name, item)
        return self.node(item.expr, field, depth)

    @staticmethod
    def resolve(name: str, item: Any) -> Field:
        try:
            return resolve(_unescape(name))
        except InvalidInput as exc:
            raise QueryError(f"{exc}{_where(item)}") from exc

    def word(self, item: tree.Word, field: Field | None) -> Node:
        raw = item.value
        if field is None:
            return Like(_descriptive(), like_pattern(raw, contains=True))
        if raw == "*":
            return Exists(field)
        if _has_wildcard(raw):
            if field.type in (FieldType.NUMBER, FieldType.BOOLEAN):
                raise QueryError(
                    f"wildcards apply to text, date and time fields, not {field.name}{_where(item)}"
                )
            return Like((field,), like_pattern(raw))
        return self.equals(field, _unescape(raw), item)

    def phrase(self, item: tree.Phrase, field: Field | None) -> Node:
        text = _unescape(item.value[1:-1])
        if field is None:
            return Like(_descriptive(), like_pattern(text.replace("*", "\\*"), contains=True))
        return self.equals(field, text, item)

    def equals(self, field: Field, text: str, item: Any) -> Node:
        where = _where(item)
        if field.type is FieldType.DATE:
            low, high = _date_bounds(text, where)
            return Compare(field, low) if low == high else Range(field, low, high)
        if field.type is FieldType.DATETIME and _DATE.match(text):
            low, high = _date_bounds(text, where)
            return Range(field, low, high + "T99", include_high=False)  # the whole days
        return Compare(field, self.typed(field, text, where))

    def typed(self, field: Field, text: str, where: str) -> Value:
        if field.type is FieldType.NUMBER:
            try:
                return float(text)
            except ValueError:
                raise QueryError(f"{field.name} takes a number, not {text!r}{where}") from None
        if field.type is FieldType.BOOLEAN:
            if text.lower() not in ("true", "false"):
                raise QueryError(f"{field.name} takes true or false, not {text!r}{where}")
            return text.lower() == "true"
        if field.type is FieldType.TIME:
            return _time(text, where)
        if field.type is FieldType.DATE:
            return _date_bounds(text, where)[0]
        return text

    def range(self, item: Any, field: Field | None) -> Node:
        where = _where(item)
        if field is None:
            raise QueryError(f"a range needs a field{where}")
        if field.type is FieldType.BOOLEAN:
            raise QueryError(f"{field.name} is true or false, not a range{where}")
        if isinstance(item, tree.From):
            low, include_low, high, include_high = item.a, item.include, None, True
        elif isinstance(item, tree.To):
            low, include_low, high, include_high = None, True, item.a, item.include
        else:
            low, include_low = item.low, item.include_low
            high, include_high = item.high, item.include_high
        low_value = self.bound(field, low, where, end=False)
        high_value = self.bound(field, high, where, end=True)
        if low_value is not None and high_value is not None and high_value < low_value:  # type: ignore[operator]
            raise QueryError(f"empty range: {low_value} is above {high_value}{where}")
        return Range(field, low_value, high_value, include_low, include_high)

    def bound(self, field: Field, item: Any, where: str, *, end: bool) -> Value | None:
        if item is None:
            return None
        if not isinstance(item, (tree.Word, tree.Phrase)):
            raise QueryError(f"a range bound must be a single value{where}")
        text = item.value[1:-1] if isinstance(item, tree.Phrase) else _unescape(item.value)
        if text == "*":
            return None
        if field.type in (FieldType.DATE, FieldType.DATETIME) and _DATE.match(text):
            low, high = _date_bounds(text, where)
            if field.type is FieldType.DATETIME:
                return high + "T99" if end else low
            return high if end else low
        return self.typed(field, text, where)


def _descriptive() -> tuple[Field, ...]:
    return tuple(resolve(name) for name in DESCRIPTIVE)
