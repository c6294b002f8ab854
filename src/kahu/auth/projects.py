"""Projects: series belong to projects (one or several), users hold a role in each, and data
enters a project by the AE title it was sent to, the project named by an upload, or the
project of the run that produced it.

Project roles, each including the ones before: ``viewer`` (search and view), ``scientist``
(also run workflows, create datasets, export), ``manager`` (also manage members and the
project's settings). Administrators (a global role) may do everything everywhere.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, delete, func, select

from kahu.auth.tables import AeProject, ProjectMember, User
from kahu.catalog.database import Database
from kahu.catalog.repository import DEFAULT_PROJECT, touch_series
from kahu.catalog.scope import in_projects
from kahu.catalog.tables import Project, ProjectSeries, Series, utcnow
from kahu.dicom.uids import validate_ae_title
from kahu.errors import Conflict, InvalidInput, NotFound

Role = Literal["viewer", "scientist", "manager"]
ROLES: tuple[Role, ...] = ("viewer", "scientist", "manager")

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def validate_project_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise InvalidInput(
            f"invalid project name {name!r}: lower-case letters, digits, '-' and '_'"
        )
    return name


def validate_role(role: str) -> Role:
    if role not in ROLES:
        raise InvalidInput(f"invalid role {role!r}: one of {', '.join(ROLES)}")
    return role


def at_least(role: str, needed: Role) -> bool:
    """Whether ``role`` includes ``needed`` (manager > scientist > viewer)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    name: str
    description: str
    created_at: datetime
    series_count: int = 0
    members: dict[str, str] | None = None
    ae_titles: tuple[str, ...] = ()

    def public(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "created_at": self.created_at,
            "series_count": self.series_count,
            "ae_titles": list(self.ae_titles),
        }
        if self.members is not None:
            out["members"] = [{"user": u, "role": r} for u, r in sorted(self.members.items())]
        return out


class Projects:
    #: the AE title map is read again at most this often (another process may change it)
    AE_MAP_TTL_S = 2.0

    def __init__(self, db: Database) -> None:
        self.db = db
        self._ae_map: tuple[float, dict[str, str]] | None = None

    # -- projects ----------------------------------------------------------------------------

    def create(self, name: str, description: str = "") -> ProjectInfo:
        validate_project_name(name)
        with self.db.write() as s:
            if s.scalar(select(Project.id).where(Project.name == name)) is not None:
                raise Conflict(f"project {name!r} exists")
            row = Project(name=name, description=description[:2000], created_at=utcnow())
            s.add(row)
            s.flush()
            return ProjectInfo(row.name, row.description, row.created_at)

    def delete(self, name: str) -> None:
        """Remove a project; its series stay in the catalog and in their other projects."""
        if name == DEFAULT_PROJECT:
            raise InvalidInput("the default project cannot be removed")
        with self.db.write() as s:
            pk = self._pk(s, name)
            members = s.scalars(
                select(ProjectSeries.series_pk).where(ProjectSeries.project_pk == pk)
            )
            touch_series(s.connection(), list(members))
            s.execute(delete(Project).where(Project.id == pk))

    def _pk(self, s: Any, name: str) -> int:
        pk = s.scalar(select(Project.id).where(Project.name == name))
        if pk is None:
            raise NotFound(f"no project {name!r}")
        return int(pk)

    def pk(self, name: str) -> int:
        with self.db.read() as s:
            return self._pk(s, name)

    def all(self, names: Sequence[str] | None = None) -> list[ProjectInfo]:
        """Every project, or those named, with their series counts and AE titles."""
        with self.db.read() as s:
            stmt = select(Project).order_by(Project.name)
            if names is not None:
                stmt = stmt.where(Project.name.in_(list(names)))
            rows = list(s.scalars(stmt))
            counts = dict(
                s.execute(
                    select(ProjectSeries.project_pk, func.count()).group_by(
                        ProjectSeries.project_pk
                    )
                ).all()
            )
            aes: dict[int, list[str]] = {}
            for ae, pk in s.execute(select(AeProject.ae_title, AeProject.project_pk)):
                aes.setdefault(pk, []).append(ae)
        return [
            ProjectInfo(
                p.name,
                p.description,
                p.created_at,
                int(counts.get(p.id, 0)),
                None,
                tuple(sorted(aes.get(p.id, []))),
            )
            for p in rows
        ]

    def get(self, name: str) -> ProjectInfo:
        found = self.all([name])
        if not found:
            raise NotFound(f"no project {name!r}")
        return ProjectInfo(
            found[0].name,
            found[0].description,
            found[0].created_at,
            found[0].series_count,
            self.members(name),
            found[0].ae_titles,
        )

    # -- members -----------------------------------------------------------------------------

    def set_member(self, project: str, user: str, role: str) -> None:
        """Give ``user`` ``role`` in ``project`` (adding or changing it)."""
        role = validate_role(role)
        with self.db.write() as s:
            project_pk = self._pk(s, project)
            user_pk = s.scalar(select(User.id).where(User.name == user))
            if user_pk is None:
                raise NotFound(f"no user {user!r}")
            s.execute(
                delete(ProjectMember).where(
                    ProjectMember.project_pk == project_pk, ProjectMember.user_pk == user_pk
                )
            )
            s.add(
                ProjectMember(project_pk=project_pk, user_pk=user_pk, role=role, added_at=utcnow())
            )

    def remove_member(self, project: str, user: str) -> None:
        with self.db.write() as s:
            project_pk = self._pk(s, project)
            user_pk = s.scalar(select(User.id).where(User.name == user))
            removed = s.execute(
                delete(ProjectMember).where(
                    ProjectMember.project_pk == project_pk, ProjectMember.user_pk == user_pk
                )
            ).rowcount  # type: ignore[attr-defined]
            if not removed:
                raise NotFound(f"{user!r} is not a member of {project!r}")

    def members(self, project: str) -> dict[str, str]:
        """User name -> role."""
        with self.db.read() as s:
            project_pk = self._pk(s, project)
            return dict(
                s.execute(
                    select(User.name, ProjectMember.role)
                    .join(User, User.id == ProjectMember.user_pk)
                    .where(ProjectMember.project_pk == project_pk)
                ).all()
            )

    def roles_of(self, user: str) -> dict[str, str]:
        """Project name -> the user's role there."""
        with self.db.read() as s:
            return dict(
                s.execute(
                    select(Project.name, ProjectMember.role)
                    .join(ProjectMember, ProjectMember.project_pk == Project.id)
                    .join(User, User.id == ProjectMember.user_pk)
                    .where(User.name == user)
                ).all()
            )

    def pks_of(self, user: str, needed: Role = "viewer") -> frozenset[int]:
        """The projects (primary keys) where ``user`` holds ``needed`` or more."""
        with self.db.read() as s:
            rows = s.execute(
                select(ProjectMember.project_pk, ProjectMember.role)
                .join(User, User.id == ProjectMember.user_pk)
                .where(User.name == user)
            ).all()
        return frozenset(pk for pk, role in rows if at_least(role, needed))

    # -- AE titles ---------------------------------------------------------------------------

    def map_ae(self, ae_title: str, project: str) -> None:
        """Data sent to ``ae_title`` enters ``project`` (replacing an earlier mapping)."""
        aet = validate_ae_title(ae_title)
        with self.db.write() as s:
            project_pk = self._pk(s, project)
            s.execute(delete(AeProject).where(AeProject.ae_title == aet))
            s.add(AeProject(ae_title=aet, project_pk=project_pk))
        self._ae_map = None

    def unmap_ae(self, ae_title: str) -> None:
        with self.db.write() as s:
            if s.execute(delete(AeProject).where(AeProject.ae_title == ae_title)).rowcount == 0:  # type: ignore[attr-defined]
                raise NotFound(f"AE title {ae_title!r} is not mapped")
        self._ae_map = None

    def ae_map(self) -> dict[str, str]:
        """Called AE title -> project name."""
        with self.db.read() as s:
            return dict(
                s.execute(
                    select(AeProject.ae_title, Project.name).join(
                        Project, Project.id == AeProject.project_pk
                    )
                ).all()
            )

    def project_of_ae(self, ae_title: str) -> str | None:
        """The project data sent to ``ae_title`` enters (None: the default project). Read
        on every C-STORE, so the map is cached for a moment."""
        cached = self._ae_map
        now = time.monotonic()
        if cached is None or now - cached[0] > self.AE_MAP_TTL_S:
            cached = self._ae_map = (now, self.ae_map())
        return cached[1].get(ae_title.strip())

    # -- series ------------------------------------------------------------------------------

    def series_projects(self, series_uid: str) -> list[str]:
        with self.db.read() as s:
            return list(
                s.scalars(
                    select(Project.name)
                    .join(ProjectSeries, ProjectSeries.project_pk == Project.id)
                    .join(Series, Series.id == ProjectSeries.series_pk)
                    .where(Series.series_instance_uid == series_uid)
                    .order_by(Project.name)
                )
            )

    def copy_series(
        self,
        series_uids: Sequence[str],
        target: str,
        *,
        where: ColumnElement[bool] | None = None,
    ) -> int:
        """Add the series to ``target`` as well; return how many were added. Series that
        ``where`` (a scope) leaves out are NotFound."""
        with self.db.write() as s:
            target_pk = self._pk(s, target)
            pks = self._series_pks(s, series_uids, where)
            present = set(
                s.scalars(
                    select(ProjectSeries.series_pk).where(
                        ProjectSeries.project_pk == target_pk,
                        ProjectSeries.series_pk.in_(pks),
                    )
                )
            )
            now = utcnow()
            added = set(pks) - present
            for pk in added:
                s.add(ProjectSeries(project_pk=target_pk, series_pk=pk, added_at=now))
            s.flush()
            touch_series(s.connection(), added)
            return len(added)

    def move_series(self, series_uids: Sequence[str], source: str, target: str) -> int:
        """Copy the series to ``target`` and take them out of ``source`` (series not in
        ``source`` are NotFound)."""
        if source == target:
            raise InvalidInput("a move needs two different projects")
        source_pk = self.pk(source)
        added = self.copy_series(series_uids, target, where=in_projects([source_pk]))
        with self.db.write() as s:
            pks = self._series_pks(s, series_uids)
            s.execute(
                delete(ProjectSeries).where(
                    ProjectSeries.project_pk == source_pk, ProjectSeries.series_pk.in_(pks)
                )
            )
            touch_series(s.connection(), pks)
        return added

    @staticmethod
    def _series_pks(
        s: Any, series_uids: Sequence[str], where: ColumnElement[bool] | None = None
    ) -> list[int]:
        stmt = select(Series.series_instance_uid, Series.id).where(
            Series.series_instance_uid.in_(list(series_uids))
        )
        found = dict(s.execute(stmt if where is None else stmt.where(where)).all())
        missing = [u for u in series_uids if u not in found]
        if missing:
            raise NotFound(f"no series {', '.join(missing[:5])}")
        return [int(found[u]) for u in series_uids]
