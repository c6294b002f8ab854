"""The one authorization layer: who may do what in which project. Every route and command
that touches a project's data asks here (more paths join as they are scoped).

Administrators may do everything. A member may do what their role includes; a caller who is
not a member learns nothing, not even that the project exists (404, like a missing one)."""

from __future__ import annotations

from kahu.auth.projects import Projects, Role, at_least
from kahu.auth.users import UserPublic
from kahu.catalog.scope import SeriesScope
from kahu.errors import NotFound, PermissionDenied


def role_in(projects: Projects, user: UserPublic, project: str) -> str | None:
    """The caller's role in ``project`` (``manager`` for administrators), None if none."""
    if user.is_admin:
        return "manager"
    return projects.roles_of(user.name).get(project)


def readable_projects(projects: Projects, user: UserPublic) -> list[str] | None:
    """The projects whose data the caller may read; None: every project (administrators)."""
    return None if user.is_admin else sorted(projects.roles_of(user.name))


def require_in_project(
    projects: Projects, user: UserPublic, project: str, needed: Role, what: str
) -> None:
    """For a thing (``what``: "run 1", "task 7") of ``project``: a caller who is not a member
    is told it does not exist; a member without ``needed`` is refused."""
    role = role_in(projects, user, project)
    if role is None:
        raise NotFound(f"no {what}")
    if not at_least(role, needed):
        raise PermissionDenied(f"{needed}s of {project} only")


def require_role(projects: Projects, user: UserPublic, project: str, needed: Role) -> None:
    role = role_in(projects, user, project)
    if role is None:
        projects.pk(project)  # a project that does not exist: NotFound names it
        raise NotFound(f"no project {project!r}")
    if not at_least(role, needed):
        raise PermissionDenied(f"{needed}s of {project} only")


#: what administrators may read and change
EVERYTHING = SeriesScope(None, "administrator")


def read_scope(projects: Projects, user: UserPublic) -> SeriesScope:
    """What ``user`` may read: the series of every project they hold a role in."""
    if user.is_admin:
        return EVERYTHING
    return SeriesScope(projects.pks_of(user.name), f"user {user.name}")


def write_scope(projects: Projects, user: UserPublic, needed: Role = "scientist") -> SeriesScope:
    """The series ``user`` may change: those of the projects where they hold ``needed`` or
    more (scientists tag series and add them to datasets; managers copy them elsewhere)."""
    if user.is_admin:
        return EVERYTHING
    return SeriesScope(projects.pks_of(user.name, needed), f"user {user.name} as {needed}")
