"""The Alembic migrations produce exactly the tables the code declares, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from kahu.catalog.database import make_engine, migrate
from kahu.catalog.tables import Base


def _url(database_url: str, tmp_path: object) -> str:
    return database_url or f"sqlite:///{tmp_path}/migrations.sqlite"


def test_migrations_match_declared_tables(database_url: str, tmp_path: object) -> None:
    engine = make_engine(_url(database_url, tmp_path))
    try:
        migrate(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
            tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
        assert diff == []
        assert tables == set(Base.metadata.tables)
    finally:
        engine.dispose()


def test_migrate_twice_is_harmless(database_url: str, tmp_path: object) -> None:
    engine = make_engine(_url(database_url, tmp_path))
    try:
        migrate(engine)
        migrate(engine)
    finally:
        engine.dispose()
