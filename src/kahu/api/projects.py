"""Project routes: projects, members and roles, AE title mappings, copying and moving series.

Administrators manage everything; a project's managers manage its members and its series;
every member sees the project."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel, Field

from kahu.actions import projects as projects_actions
from kahu.api.deps import ActorDep, CurrentUser, KahuDep
from kahu.auth.policy import require_role, role_in
from kahu.auth.projects import ProjectInfo, Role, at_least
from kahu.auth.users import UserPublic
from kahu.core import Kahu

router = APIRouter(prefix="/api/v1/projects")
Name = Annotated[str, Path(max_length=64)]


class ProjectCreate(BaseModel):
    name: str = Field(max_length=64)
    description: str = Field(default="", max_length=2000)


class MemberRole(BaseModel):
    role: str = Field(max_length=16, description="viewer, scientist or manager")


class SeriesTransfer(BaseModel):
    series_uids: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1, max_length=100_000
    )
    move_from: str | None = Field(
        default=None, max_length=64, description="take the series out of this project"
    )


def _role(kahu: Kahu, user: UserPublic, project: str) -> str | None:
    return role_in(kahu.projects, user, project)


def _require(kahu: Kahu, user: UserPublic, project: str, needed: Role) -> None:
    require_role(kahu.projects, user, project, needed)


@router.get("", summary="The caller's projects (every project for administrators)")
def projects(kahu: KahuDep, user: CurrentUser) -> dict[str, Any]:
    if user.is_admin:
        return {"projects": [{**p.public(), "role": "admin"} for p in kahu.projects.all()]}
    roles = kahu.projects.roles_of(user.name)
    return {
        "projects": [{**p.public(), "role": roles[p.name]} for p in kahu.projects.all(list(roles))]
    }


@router.post("", status_code=201, summary="Create a project")
def create(body: ProjectCreate, kahu: KahuDep, actor: ActorDep) -> dict[str, Any]:
    info: ProjectInfo = projects_actions.create_project(
        kahu, actor, body.name, body.description
    ).result
    return info.public()


@router.get("/{name}", summary="A project (with its members for managers)")
def project(name: Name, kahu: KahuDep, user: CurrentUser) -> dict[str, Any]:
    _require(kahu, user, name, "viewer")
    info = kahu.projects.get(name).public()
    if not at_least(_role(kahu, user, name) or "", "manager"):
        info.pop("members", None)
    return info


@router.delete("/{name}", status_code=204, summary="Delete a project (not its series)")
def delete(name: Name, kahu: KahuDep, actor: ActorDep) -> Response:
    projects_actions.delete_project(kahu, actor, name)
    return Response(status_code=204)


@router.put("/{name}/members/{user_name}", summary="Give a user a role in the project")
def set_member(
    name: Name, user_name: Name, body: MemberRole, kahu: KahuDep, actor: ActorDep
) -> dict[str, Any]:
    projects_actions.set_member(kahu, actor, name, user_name, body.role)
    return {"project": name, "user": user_name, "role": body.role}


@router.delete("/{name}/members/{user_name}", status_code=204, summary="Remove a member")
def remove_member(name: Name, user_name: Name, kahu: KahuDep, actor: ActorDep) -> Response:
    projects_actions.remove_member(kahu, actor, name, user_name)
    return Response(status_code=204)


@router.put("/{name}/ae-titles/{ae_title}", summary="Data sent to this AE title enters it")
def map_ae(name: Name, ae_title: Name, kahu: KahuDep, actor: ActorDep) -> dict[str, Any]:
    projects_actions.map_ae(kahu, actor, ae_title, name)
    return {"project": name, "ae_title": ae_title}


@router.delete("/{name}/ae-titles/{ae_title}", status_code=204, summary="Unmap an AE title")
def unmap_ae(name: Name, ae_title: Name, kahu: KahuDep, actor: ActorDep) -> Response:
    projects_actions.unmap_ae(kahu, actor, ae_title, name)
    return Response(status_code=204)


@router.post(
    "/{name}/series",
    summary="Copy (or move) series into the project",
    description="The caller manages the project and the series' own project (or the one "
    "they move from).",
)
def add_series(name: Name, body: SeriesTransfer, kahu: KahuDep, actor: ActorDep) -> dict[str, Any]:
    done = projects_actions.add_series(
        kahu, actor, name, body.series_uids, move_from=body.move_from
    )
    return {"project": name, "added": done.result}
