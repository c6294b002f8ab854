"""Series actions: delete a series, its catalog rows and its stored files (administrators)."""

from __future__ import annotations

from kahu.actions import Actor, Done, perform
from kahu.core import Kahu


def delete_series(kahu: Kahu, actor: Actor, series_uid: str) -> Done:
    """Delete ``series_uid`` everywhere (every project holding it); the result is the number
    of files removed."""
    removed = perform(
        kahu,
        actor,
        "series.delete",
        "admin",
        lambda: kahu.ingestor.delete_series(series_uid),
        series=[series_uid],
    )
    return Done(f"Series {series_uid} deleted ({removed} files).", removed)
