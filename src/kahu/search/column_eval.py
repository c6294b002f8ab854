"""Answering a query tree from the column index: each node becomes a mask over the series
of a :class:`~kahu.search.columns.Snapshot` (a test on each field's distinct values, then one
vectorized lookup per series). A node the index cannot answer raises :class:`Uncovered`,
and the whole query goes to SQL."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from kahu.errors import InvalidInput
from kahu.search.columns import (
    MEMBERSHIP,
    ColumnIndex,
    Mask,
    Snapshot,
    is_number,
    lookup,
    membership_pairs,
)
from kahu.search.fields import Field, FieldType
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
    parse,
)
from kahu.search.sql import like_regex


class Evaluator:
    def __init__(self, index: ColumnIndex, snapshot: Snapshot, dynamic: Mapping[str, str]) -> None:
        self.index = index
        self.snapshot = snapshot
        self.dynamic = dynamic
        self.expanding: list[str] = []
        self.size = len(snapshot.pks)

    def build(self, node: Node) -> Mask:
        if isinstance(node, MatchAll):
            return np.ones(self.size, bool)
        if isinstance(node, And):
            out = writable(self.build(node.items[0]))
            for item in node.items[1:]:
                out &= self.build(item)
            return out
        if isinstance(node, Or):
            out = writable(self.build(node.items[0]))
            for item in node.items[1:]:
                out |= self.build(item)
            return out
        if isinstance(node, Not):
            return ~self.build(node.item)
        if isinstance(node, Like):
            out = np.zeros(self.size, bool)
            for f in node.fields:
                out |= self.like(f, node.pattern)
            return out
        if isinstance(node, Exists):
            return self.exists(node.field)
        if isinstance(node, Compare):
            return self.compare(node.field, node.value)
        if isinstance(node, InProjects):
            return self.in_projects(node.projects)
        return self.range(node)

    def values(
        self, f: Field, accept: Callable[[Any], bool], fast: tuple[str, str] | None = None
    ) -> Mask:
        """Series with a value of ``f`` that ``accept`` takes; ``fast`` (kind, text) says the
        same as a case-insensitive text test (see :meth:`_Column.text_test`)."""
        column = self.index.columns[f.name]
        size = self.snapshot.sizes[f.name]
        ok = column.text_test(*fast, size) if fast is not None else None
        if ok is None:
            ok = column.test(accept, size)
        return lookup(ok, self.snapshot.codes[f.name])

    def visible(self, projects: frozenset[int]) -> Mask:
        """The live series of ``projects`` (read-only, kept by the snapshot)."""
        key = frozenset({-1, *projects})  # -1 is no project: apart from in_projects' keys
        cached = self.snapshot.scopes.get(key)
        if cached is None:
            cached = self.in_projects(projects) & self.snapshot.alive
            cached.flags.writeable = False
            self.snapshot.scopes[key] = cached
        return cached

    def in_projects(self, projects: frozenset[int]) -> Mask:
        """The series of ``projects``: the same few scopes ask again and again, so each
        snapshot keeps their masks, read-only (:meth:`build` copies one it would change)."""
        scopes = self.snapshot.scopes
        cached = scopes.get(projects)
        if cached is None:

            def member(item: Any) -> bool:
                return isinstance(item, str) and any(int(p) in projects for p in item.split(","))

            column = self.index.columns[MEMBERSHIP]
            ok = column.test(member, self.snapshot.sizes[MEMBERSHIP])
            cached = lookup(ok, self.snapshot.codes[MEMBERSHIP])
            cached.flags.writeable = False
            if len(scopes) >= 256:  # racing threads may both clear: harmless
                scopes.clear()
            scopes[projects] = cached
        return cached

    # -- datasets and tags: their members come from the database ---------------------------

    def members(
        self, f: Field, accept_name: Callable[[str], bool], names: Callable[[str], bool] | None
    ) -> Mask:
        pairs = membership_pairs(self.index.catalog, f.column)
        chosen = [pk for pk, name in pairs if accept_name(name)]
        out = np.isin(self.snapshot.pks, np.fromiter(chosen, np.int64, len(chosen)))
        if f.column == "dataset":
            for name in sorted(self.dynamic):
                if names is None or names(name):
                    out |= self.expand_dataset(name)
        return out

    def expand_dataset(self, name: str) -> Mask:
        if name in self.expanding:
            chain = " -> ".join([*self.expanding, name])
            raise InvalidInput(f"dataset queries refer to each other in a circle: {chain}")
        self.expanding.append(name)
        try:
            node = parse(self.dynamic[name])
            if not self.index.covers(node):
                raise Uncovered
            return self.build(node)
        finally:
            self.expanding.pop()

    # -- node kinds (each mirrors its twin in kahu.search.sql) -------------------------------

    def exists(self, f: Field) -> Mask:
        if f.column in ("dataset", "tags"):
            return self.members(f, lambda name: True, None)
        return self.values(f, lambda item: item is not None)

    def like(self, f: Field, pattern: str) -> Mask:
        compiled = re.compile(like_regex(pattern), re.IGNORECASE | re.DOTALL)
        if f.column in ("dataset", "tags"):
            names = lambda name: bool(compiled.fullmatch(name))  # noqa: E731
            return self.members(f, names, names)
        return self.values(
            f,
            lambda item: isinstance(item, str) and bool(compiled.fullmatch(item)),
            plain_like(pattern),
        )

    def compare(self, f: Field, value: Any) -> Mask:
        if f.column in ("dataset", "tags"):
            wanted = str(value).lower()
            return self.members(f, lambda name: name.lower() == wanted, lambda n: n == wanted)
        if f.type is FieldType.BOOLEAN:
            return self.values(f, lambda item: item is bool(value))
        if f.type is FieldType.NUMBER:
            return self.values(f, lambda item: is_number(item) and item == value)
        if f.type is FieldType.TEXT:
            target = str(value).lower()
            return self.values(
                f, lambda item: isinstance(item, str) and item.lower() == target, ("equal", target)
            )
        return self.values(f, lambda item: isinstance(item, str) and item == value)

    def range(self, node: Range) -> Mask:
        f = node.field
        if f.column in ("dataset", "tags"):
            raise InvalidInput(f"{f.name} holds names; use a value or a wildcard, not a range")
        low, high = node.low, node.high
        number = f.type is FieldType.NUMBER
        if number and low is None and high is None:
            return self.values(f, lambda item: True)  # as SQL: no bound to compare with

        def within(item: Any) -> bool:
            if not (is_number(item) if number else isinstance(item, str)):
                return False
            if low is not None and not (item >= low if node.include_low else item > low):
                return False
            return high is None or (item <= high if node.include_high else item < high)

        return self.values(f, within)


def writable(mask: Mask) -> Mask:
    return mask if mask.flags.writeable else mask.copy()


def plain_like(pattern: str) -> tuple[str, str] | None:
    """A LIKE pattern that is text with ``%`` at one or both ends, as (kind, text)."""
    tokens: list[str | None] = []  # None: %; "" never occurs
    chars = iter(pattern)
    for char in chars:
        if char == "\\":
            tokens.append(next(chars, "\\"))
        elif char == "_":
            return None
        else:
            tokens.append(None if char == "%" else char)
    head = bool(tokens) and tokens[0] is None
    tail = len(tokens) > 1 and tokens[-1] is None
    core = tokens[1 if head else 0 : len(tokens) - 1 if tail else len(tokens)]
    if not core or None in core:
        return None
    kind = {(True, True): "contains", (False, True): "prefix", (True, False): "suffix"}
    return kind.get((head, tail), "equal"), "".join(c for c in core if c is not None)


class Uncovered(Exception):
    """A query dataset's own query needs SQL: the whole query goes there."""
