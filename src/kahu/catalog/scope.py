"""Which series a read may see: every catalog read that returns series, instances or counts
takes a :class:`SeriesScope`, so an unscoped read cannot be written by leaving an argument
out.

A scope comes from one of two places:

- :mod:`kahu.auth.policy` builds it for a caller (a user, a DICOM node, a workflow run): the
  series of the projects they may read, every series for administrators.
- :meth:`SeriesScope.system` is the explicit system context, for the paths that act for the
  instance itself (ingest, maintenance commands, the column index). Request handlers and
  operators never use it; ``tests/test_layers.py`` checks that by reading the source.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import ColumnElement, exists, false, true

from kahu.catalog.tables import ProjectSeries, Series


def in_projects(projects: Collection[int]) -> ColumnElement[bool]:
    """Series that belong to one of ``projects`` (primary keys)."""
    if not projects:
        return false()
    return exists().where(
        ProjectSeries.series_pk == Series.id, ProjectSeries.project_pk.in_(sorted(projects))
    )


@dataclass(frozen=True, slots=True)
class SeriesScope:
    """The series of ``projects`` (primary keys); every series when None (administrators and
    the system context). Each path narrows what it looks at by it, as a query node (searches,
    facets, autocomplete: :func:`kahu.search.query.within`) or a SQL condition on ``series``
    (everything else)."""

    projects: frozenset[int] | None
    #: who it was made for, for error messages and logs ("user ann", "run 12", "system")
    holder: str = ""

    @staticmethod
    def system(why: str) -> SeriesScope:
        """Every series, for the instance itself; ``why`` names the path (kept for logs)."""
        return SeriesScope(None, f"system: {why}")

    @property
    def everything(self) -> bool:
        return self.projects is None

    def condition(self) -> ColumnElement[bool] | None:
        """The SQL condition on ``series`` (None: no condition)."""
        return None if self.projects is None else in_projects(self.projects)

    def clause(self) -> ColumnElement[bool]:
        """The SQL condition on ``series``, TRUE for every series."""
        return true() if self.projects is None else in_projects(self.projects)

    def allows_project(self, project_pk: int) -> bool:
        return self.projects is None or project_pk in self.projects

    def narrowed(self, projects: Collection[int]) -> SeriesScope:
        """This scope within ``projects`` as well."""
        wanted = frozenset(projects)
        return SeriesScope(wanted if self.projects is None else self.projects & wanted, self.holder)
