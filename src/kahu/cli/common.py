"""What every ``kahu`` command shares: the --home and --database-url options, opening the
instance and one-line errors (changes go through :mod:`kahu.actions`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from kahu.settings import Settings

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="Kahu home folder [env: KAHU_HOME]", show_default=False),
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--database-url", help="SQLAlchemy URL [env: KAHU_DATABASE_URL]", show_default=False
    ),
]


def _settings(home: Path | None, database_url: str | None, **nested: dict[str, Any]) -> Settings:
    overrides: dict[str, Any] = {}
    if home is not None:
        overrides["home"] = home
    if database_url is not None:
        overrides["database_url"] = database_url
    env = Settings()
    data = env.model_dump()
    data.update(overrides)
    for section, values in nested.items():
        data[section].update({k: v for k, v in values.items() if v is not None})
    return Settings.model_validate(data)


def _open(settings: Settings) -> Any:
    from kahu.core import Kahu

    return Kahu(settings)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def _guard(func: Any) -> Any:
    """Turn Kahu's own errors into a one-line message and exit status 2."""
    import functools

    from kahu.errors import KahuError

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KahuError as exc:
            _fail(str(exc))
        except ValueError as exc:  # pydantic validation of settings
            _fail(str(exc))

    return wrapper
