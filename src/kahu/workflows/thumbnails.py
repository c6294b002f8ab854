"""Thumbnails of every arriving series (``KAHU_FLOW__THUMBNAILS_ON_ARRIVAL``, on by default),
or of any cohort on demand."""

from __future__ import annotations

from kahu.flow import Workflow
from kahu.operators import thumbnails

WORKFLOW = Workflow(
    name="series-thumbnails",
    version="1.0",
    title="Series thumbnails",
    description=(
        "Renders the middle image of each series as a small PNG kept beside the series, "
        "which the gallery and WADO-RS thumbnails then serve at once. Runs on every "
        "arriving series unless KAHU_FLOW__THUMBNAILS_ON_ARRIVAL=false."
    ),
    parameters={"type": "object", "properties": {}, "additionalProperties": False},
    operators=(thumbnails(),),
)
