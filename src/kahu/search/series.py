"""Finding series: a query, a page, a sort order."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import ColumnElement

from kahu.catalog.records import SeriesRow
from kahu.catalog.repository import Catalog
from kahu.catalog.scope import SeriesScope
from kahu.errors import InvalidInput
from kahu.search.columns import ColumnIndex
from kahu.search.datasets import Curation
from kahu.search.query import Node, parse, within
from kahu.search.sql import condition, sort_key


def search_series(
    catalog: Catalog,
    scope: SeriesScope,
    query: str | Node,
    *,
    limit: int = 100,
    offset: int = 0,
    sort: str = "",
    index: ColumnIndex | None = None,
) -> tuple[list[SeriesRow], int]:
    """The series ``query`` matches (a page) and how many match in all.

    ``sort`` is a comma-separated list of fields, ``-`` before one for descending; ties and
    the default go newest first. The column ``index``, where given, answers queries on the
    fields it holds in the default order; SQL answers the rest alike. Raises
    :class:`~kahu.errors.InvalidInput` (HTTP 400) for a query or sort that cannot be run.
    """
    dialect = catalog.db.engine.dialect.name
    node = within(parse(query) if isinstance(query, str) else query, scope.projects)
    dynamic = Curation(catalog).dynamic_queries()
    order = sort_keys(sort, dialect)
    if index is not None and not order:
        snapshot = index.current(wait=False)
        mask = None if snapshot is None else index.mask(snapshot, node, dynamic)
        if snapshot is not None and mask is not None:
            total = int(np.count_nonzero(mask))
            return catalog.series_by_pks(index.page(snapshot, mask, limit, offset)), total
    where = condition(node, dialect, dynamic)
    return catalog.list_series(scope, limit=limit, offset=offset, where=where, order=order)


def series_condition(catalog: Catalog, query: str | Node) -> ColumnElement[bool]:
    """The SQL condition on the ``series`` table for ``query`` (datasets defined by queries
    expanded), for callers that add it to their own statements (QIDO-RS)."""
    node = parse(query) if isinstance(query, str) else query
    dialect = catalog.db.engine.dialect.name
    return condition(node, dialect, Curation(catalog).dynamic_queries())


def sort_keys(sort: str, dialect: str) -> list[Any]:
    specs = [spec.strip() for spec in sort.split(",") if spec.strip()]
    if len(specs) > 8:
        raise InvalidInput("sort by 8 fields at most")
    return [sort_key(spec, dialect) for spec in specs]
