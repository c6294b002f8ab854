"""Search: Lucene query strings over the series metadata document (see docs/search.md)."""

from __future__ import annotations

from kahu.catalog.records import SeriesRow
from kahu.catalog.repository import Catalog
from kahu.search.query import QueryError, parse
from kahu.search.sql import condition

__all__ = ["QueryError", "search_series"]


def search_series(
    catalog: Catalog, query: str, *, limit: int = 100, offset: int = 0
) -> tuple[list[SeriesRow], int]:
    """The series ``query`` matches, newest first (a page), and how many match in all.

    Raises :class:`QueryError` (HTTP 400) for a query that cannot be run.
    """
    where = condition(parse(query), catalog.db.engine.dialect.name)
    return catalog.list_series(limit=limit, offset=offset, where=where)
