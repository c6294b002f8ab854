"""Finding series: a query, a page, a sort order."""

from __future__ import annotations

from typing import Any

from kahu.catalog.curation import Curation
from kahu.catalog.records import SeriesRow
from kahu.catalog.repository import Catalog
from kahu.errors import InvalidInput
from kahu.search.query import parse
from kahu.search.sql import condition, sort_key


def search_series(
    catalog: Catalog, query: str, *, limit: int = 100, offset: int = 0, sort: str = ""
) -> tuple[list[SeriesRow], int]:
    """The series ``query`` matches (a page) and how many match in all.

    ``sort`` is a comma-separated list of fields, ``-`` before one for descending; ties and
    the default go newest first. Raises :class:`~kahu.errors.InvalidInput` (HTTP 400) for a
    query or sort that cannot be run.
    """
    dialect = catalog.db.engine.dialect.name
    where = condition(parse(query), dialect, Curation(catalog).dynamic_queries())
    return catalog.list_series(
        limit=limit, offset=offset, where=where, order=sort_keys(sort, dialect)
    )


def sort_keys(sort: str, dialect: str) -> list[Any]:
    specs = [spec.strip() for spec in sort.split(",") if spec.strip()]
    if len(specs) > 8:
        raise InvalidInput("sort by 8 fields at most")
    return [sort_key(spec, dialect) for spec in specs]
