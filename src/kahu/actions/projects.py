"""Project actions: create and delete projects, set and remove members, map AE titles."""

from __future__ import annotations

from collections.abc import Sequence

from kahu.actions import Actor, Done, perform
from kahu.auth.policy import require_role, write_scope
from kahu.core import Kahu
from kahu.errors import NotFound


def create_project(kahu: Kahu, actor: Actor, name: str, description: str = "") -> Done:
    info = perform(
        kahu,
        actor,
        "project.create",
        "admin",
        lambda: kahu.projects.create(name, description),
        project=name,
    )
    return Done(f"Project {name} created.", info)


def delete_project(kahu: Kahu, actor: Actor, name: str) -> Done:
    """Remove a project; its series stay in the catalog and in their other projects."""

    def change() -> None:
        kahu.projects.delete(name)
        kahu.catalog.forget_projects()

    perform(kahu, actor, "project.delete", "admin", change, project=name)
    return Done(f"Project {name} deleted.")


def set_member(kahu: Kahu, actor: Actor, project: str, user: str, role: str) -> Done:
    """Give ``user`` ``role`` in ``project``: administrators, or the project's managers."""
    perform(
        kahu,
        actor,
        "member.set",
        ("manager", project),
        lambda: kahu.projects.set_member(project, user, role),
        project=project,
        detail={"user": user, "role": role},
    )
    return Done(f"{user} is {role} in {project}.")


def remove_member(kahu: Kahu, actor: Actor, project: str, user: str) -> Done:
    perform(
        kahu,
        actor,
        "member.remove",
        ("manager", project),
        lambda: kahu.projects.remove_member(project, user),
        project=project,
        detail={"user": user},
    )
    return Done(f"{user} left {project}.")


def map_ae(kahu: Kahu, actor: Actor, ae_title: str, project: str) -> Done:
    """Data sent to ``ae_title`` enters ``project`` (replacing an earlier mapping)."""
    perform(
        kahu,
        actor,
        "project.map-ae",
        "admin",
        lambda: kahu.projects.map_ae(ae_title, project),
        project=project,
        detail={"ae_title": ae_title},
    )
    return Done(f"{ae_title} now stores into {project}.")


def unmap_ae(kahu: Kahu, actor: Actor, ae_title: str, project: str | None = None) -> Done:
    """Unmap ``ae_title`` (only from ``project`` when given: NotFound if mapped elsewhere)."""

    mapped = kahu.projects.ae_map().get(ae_title)

    def change() -> None:
        if project is not None and mapped != project:
            raise NotFound(f"AE title {ae_title!r} is not mapped to {project!r}")
        kahu.projects.unmap_ae(ae_title)

    perform(
        kahu,
        actor,
        "project.unmap-ae",
        "admin",
        change,
        project=project or mapped,  # the project it stored into, whichever door
        detail={"ae_title": ae_title},
    )
    return Done(f"{ae_title} unmapped.")


def add_series(
    kahu: Kahu,
    actor: Actor,
    project: str,
    series_uids: Sequence[str],
    *,
    move_from: str | None = None,
) -> Done:
    """Copy series into ``project`` (they stay where they are; only series the actor
    manages elsewhere), or move them out of ``move_from``: managers of both projects."""

    def change() -> int:
        if move_from is not None:
            require_role(kahu.projects, actor.user, move_from, "manager")
            added = kahu.projects.move_series(series_uids, move_from, project)
            kahu.catalog.forget_projects()
            return added
        managed = write_scope(kahu.projects, actor.user, "manager")
        return kahu.projects.copy_series(series_uids, project, where=managed.condition())

    added = perform(
        kahu,
        actor,
        "project.add-series",
        ("manager", project),
        change,
        project=project,
        series=series_uids,
        detail={"move_from": move_from} if move_from is not None else {},
    )
    verb = f"moved from {move_from} to" if move_from is not None else "added to"
    return Done(f"{added} series {verb} {project}.", added)
