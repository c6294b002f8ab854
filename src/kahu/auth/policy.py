"""The one authorization layer: who may do what in which project. Every route and command
that touches a project's data asks here (more paths join as they are scoped).

Administrators may do everything. A member may do what their role includes; a caller who is
not a member learns nothing, not even that the project exists (404, like a missing one)."""

from __future__ import annotations

from kahu.auth.projects import Projects, Role, at_least
from kahu.auth.users import UserPublic
from kahu.errors import NotFound, PermissionDenied


def role_in(projects: Projects, user: UserPublic, project: str) -> str | None:
    """The caller's role in ``project`` (``manager`` for administrators), None if none."""
    if user.is_admin:
        return "manager"
    return projects.roles_of(user.name).get(project)


def require_role(projects: Projects, user: UserPublic, project: str, needed: Role) -> None:
    role = role_in(projects, user, project)
    if role is None:
        projects.pk(project)  # a project that does not exist: NotFound names it
        raise NotFound(f"no project {project!r}")
    if not at_least(role, needed):
        raise PermissionDenied(f"{needed}s of {project} only")
