"""Trigger actions: add an arrival rule or a schedule, enable or disable it, remove it.
Scientists of the trigger's project may; to anyone else who is not a member it does not
exist."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from kahu.actions import Actor, Done, perform, scientists_of
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.core import Kahu
from kahu.errors import NotFound
from kahu.flow.cohort import RunInput

T = TypeVar("T")


def add_trigger(
    kahu: Kahu,
    actor: Actor,
    name: str,
    workflow: str,
    *,
    query: str = "",
    cron: str = "",
    params: dict[str, Any] | None = None,
    run_input: RunInput | None = None,
    project: str = DEFAULT_PROJECT,
) -> Done:
    """An arrival rule (``query``) or a schedule (``cron`` with ``run_input``) whose runs go
    to ``project`` and are launched in the actor's name (the command line's: "cli")."""
    info = perform(
        kahu,
        actor,
        "trigger.add",
        ("scientist", project),
        lambda: kahu.triggers.add(
            name,
            workflow,
            query=query,
            cron=cron,
            params=params,
            run_input=run_input,
            created_by="cli" if actor.kind == "cli" else actor.user.name,
            project=project,
        ),
        project=project,
        detail={"name": name, "workflow": workflow, "query": query, "cron": cron},
    )
    return Done(f"Trigger {name} added.", info)


def _on_trigger(
    kahu: Kahu, actor: Actor, name: str, action: str, change: Callable[[], T], **detail: Any
) -> T:
    found = [t for t in kahu.triggers.all() if t.name == name]
    if not found:
        raise NotFound(f"no trigger {name!r}")
    project = found[0].project
    may = scientists_of(kahu, project, f"trigger {name!r}")
    return perform(
        kahu, actor, action, may, change, project=project, detail={"name": name, **detail}
    )


def set_enabled(kahu: Kahu, actor: Actor, name: str, enabled: bool) -> Done:
    _on_trigger(
        kahu,
        actor,
        name,
        "trigger.change",
        lambda: kahu.triggers.set_enabled(name, enabled),
        enabled=enabled,
    )
    return Done(f"Trigger {name} {'enabled' if enabled else 'disabled'}.")


def remove_trigger(kahu: Kahu, actor: Actor, name: str) -> Done:
    _on_trigger(kahu, actor, name, "trigger.remove", lambda: kahu.triggers.remove(name))
    return Done(f"Trigger {name} removed.")
