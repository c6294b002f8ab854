"""The use-case layer: each change to accounts, projects, DICOM nodes, datasets, tags, runs
and series is one function that checks the policy once, makes the change and writes one
audit record (before the change; refusals are recorded with their status too). The command
line, the REST API and the web pages are thin adapters: they say who acts (:class:`Actor`)
and how to show the outcome.

- :mod:`kahu.actions.accounts`: users (create, disable, enable) and token revocation
- :mod:`kahu.actions.projects`: projects, members, AE title mappings, copying and moving
  series between projects
- :mod:`kahu.actions.nodes`: DICOM nodes
- :mod:`kahu.actions.datasets`: datasets and tags
- :mod:`kahu.actions.runs`: cancelling and retrying workflow runs
- :mod:`kahu.actions.series`: deleting series
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from kahu.auth.policy import require_in_project, require_role
from kahu.auth.projects import Role
from kahu.auth.users import UserPublic
from kahu.catalog.tables import utcnow
from kahu.core import Kahu
from kahu.errors import PermissionDenied

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts and by which door: a user over REST or the web (their path, address and
    token), or the operating system's user on the command line (who holds the database and
    so acts as administrator)."""

    user: UserPublic
    kind: Literal["user", "cli"] = "user"
    path: str = ""
    client: str = ""
    token_id: int | None = None

    @classmethod
    def cli(cls) -> Actor:
        name = f"cli:{getpass.getuser()}"
        return cls(UserPublic(name, True, False, utcnow()), kind="cli", path="cli")


@dataclass(frozen=True, slots=True)
class Done:
    """What an action did: a sentence for people, and what it made (for the REST body)."""

    message: str
    result: Any = None


#: who may: administrators, a role (or more) in the named project, anyone signed in (the change
#: itself then keeps to what is the actor's own), or whom a check lets through (it raises
#: for anyone else)
Needs = Literal["admin", "anyone"] | tuple[Role, str] | Callable[[UserPublic], None]


def scientists_of(kahu: Kahu, project: str, what: str) -> Callable[[UserPublic], None]:
    """The check for a thing of ``project`` (``what``: "run 'r1'"): its scientists may act on
    it; to anyone else who is not a member it does not exist."""

    def may(user: UserPublic) -> None:
        require_in_project(kahu.projects, user, project, "scientist", what)

    return may


def perform(
    kahu: Kahu,
    actor: Actor,
    action: str,
    needs: Needs,
    change: Callable[[], T],
    *,
    project: str | None = None,
    series: Sequence[str] = (),
    detail: dict[str, Any] | None = None,
) -> T:
    """Record ``action``, check that ``actor`` may do it (``needs``), then ``change``: the
    one path every adapter takes. A refusal or a failed change is recorded with its status."""
    with kahu.audit.action(
        actor.user.name,
        action,
        kind=actor.kind,
        path=actor.path,
        client=actor.client,
        token_id=actor.token_id,
        project=project,
        series=series,
        detail=detail or {},
    ):
        if needs == "admin":
            if not actor.user.is_admin:
                raise PermissionDenied("administrators only")
        elif callable(needs):
            needs(actor.user)
        elif needs != "anyone":
            require_role(kahu.projects, actor.user, needs[1], needs[0])
        return change()
