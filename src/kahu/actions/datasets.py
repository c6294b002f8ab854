"""Curation actions: datasets (create, add and remove series, freeze, delete) and tags on
series. Scientists of a dataset's project change it; to anyone else who is not a member it
does not exist. Tags change on series the actor may write (scientist in one of their
projects); a series outside that is not there for them (NotFound, nothing tagged)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from kahu.actions import Actor, Done, perform, scientists_of
from kahu.auth.policy import write_scope
from kahu.catalog.repository import DEFAULT_PROJECT
from kahu.core import Kahu
from kahu.search.datasets import DatasetInfo

T = TypeVar("T")


def create_dataset(
    kahu: Kahu,
    actor: Actor,
    name: str,
    *,
    query: str | None = None,
    series: Sequence[str] = (),
    description: str = "",
    project: str = DEFAULT_PROJECT,
) -> Done:
    """A dataset of ``project``: what ``query`` matches (it follows the query), or the
    listed ``series``."""
    info = perform(
        kahu,
        actor,
        "dataset.create",
        ("scientist", project),
        lambda: kahu.curation.create_dataset(
            name, query=query, series=series, description=description, project=project
        ),
        project=project,
        series=series,
        detail={"name": name, "query": query},
    )
    return Done(f"Dataset {name} saved.", info)


def _on_dataset(
    kahu: Kahu,
    actor: Actor,
    name: str,
    action: str,
    change: Callable[[], T],
    *,
    series: Sequence[str] = (),
    detail: dict[str, Any] | None = None,
) -> T:
    project = kahu.curation.dataset(name).project  # NotFound: no such dataset
    may = scientists_of(kahu, project, f"dataset {name!r}")
    return perform(
        kahu,
        actor,
        action,
        may,
        change,
        project=project,
        series=series,
        detail={"name": name, **(detail or {})},
    )


def change_series(
    kahu: Kahu,
    actor: Actor,
    name: str,
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
) -> Done:
    """Add and remove series of a list dataset (a query dataset follows its query)."""

    def change() -> DatasetInfo:
        info = kahu.curation.dataset(name)
        if add:
            info = kahu.curation.add_series(name, add)
        if remove:
            info = kahu.curation.remove_series(name, remove)
        return info

    info = _on_dataset(
        kahu,
        actor,
        name,
        "dataset.change",
        change,
        series=[*add, *remove],
        detail={"added": len(add), "removed": len(remove)},
    )
    return Done(f"{name} holds {info.series_count} series now.", info)


def freeze_dataset(kahu: Kahu, actor: Actor, name: str) -> Done:
    """Write down what a query dataset matches now; its series no longer change."""
    info = _on_dataset(kahu, actor, name, "dataset.freeze", lambda: kahu.curation.freeze(name))
    return Done(f"Dataset {name} frozen: its series no longer change.", info)


def delete_dataset(kahu: Kahu, actor: Actor, name: str) -> Done:
    """Delete the dataset; its series stay in the catalog."""
    _on_dataset(kahu, actor, name, "dataset.delete", lambda: kahu.curation.delete_dataset(name))
    return Done(f"Dataset {name} deleted (its series stay).")


def tag_series(
    kahu: Kahu,
    actor: Actor,
    series: Sequence[str],
    *,
    add: Sequence[str] = (),
    remove: Sequence[str] = (),
) -> Done:
    """Add and remove tags on ``series``, all of them writable by the actor; the result is
    each series' tags."""

    def change() -> dict[str, list[str]]:
        writable = write_scope(kahu.projects, actor.user)
        return kahu.curation.tag(series, add=add, remove=remove, where=writable.condition())

    tags = perform(
        kahu,
        actor,
        "tag.change",
        "anyone",
        change,
        series=series,
        detail={"add": list(add), "remove": list(remove)},
    )
    return Done(f"Tags changed on {len(tags)} series.", tags)
