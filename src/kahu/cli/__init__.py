"""The ``kahu`` command: one Typer application assembled from the modules by area."""

from __future__ import annotations

from kahu.cli import federation, flow, models, projects
from kahu.cli.commands import app

federation.register(app)
flow.register(app)
models.register(app)
projects.register(app)


def main() -> None:
    app()


__all__ = ["app", "main"]
