"""The Alembic migrations produce exactly the tables the code declares, on every backend."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from kahu.catalog.database import alembic_config, make_engine, migrate
from kahu.catalog.tables import utcnow
from kahu.core import Kahu
from kahu.schema import metadata
from kahu.search.series import search_series
from kahu.settings import Settings
from tests.conftest import SYSTEM
from tests.synthetic import ct_series


def _url(database_url: str, tmp_path: object) -> str:
    return database_url or f"sqlite:///{tmp_path}/migrations.sqlite"


def test_migrations_match_declared_tables(database_url: str, tmp_path: object) -> None:
    engine = make_engine(_url(database_url, tmp_path))
    try:
        migrate(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, metadata)
            tables = set(inspect(conn).get_table_names()) - {"alembic_version"}
        assert diff == []
        assert tables == set(metadata.tables)
    finally:
        engine.dispose()


def test_migrate_twice_is_harmless(database_url: str, tmp_path: object) -> None:
    engine = make_engine(_url(database_url, tmp_path))
    try:
        migrate(engine)
        migrate(engine)
    finally:
        engine.dispose()


def test_series_stored_before_generations_are_found_after_the_upgrade(
    database_url: str, tmp_path: Path
) -> None:
    """A catalog of the previous revision: its series are in generation 1, which the column
    index loads like any other."""
    url = _url(database_url, tmp_path)
    engine = make_engine(url)
    try:
        command.upgrade(alembic_config(engine), "0003")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO patients (patient_id, issuer) VALUES ('P', '')"))
            conn.execute(
                text(
                    "INSERT INTO studies (study_instance_uid, patient_pk, created_at)"
                    " SELECT '1.2', id, :now FROM patients"
                ),
                {"now": utcnow()},
            )
            conn.execute(
                text(
                    "INSERT INTO series (series_instance_uid, study_pk, received_at,"
                    " updated_at, instance_count, size_bytes, document)"
                    " SELECT '1.2.3', id, :now, :now, 0, 0, :doc FROM studies"
                ),
                {"now": utcnow(), "doc": '{"Modality": "CT"}'},
            )
    finally:
        engine.dispose()
    with Kahu(Settings(home=tmp_path / "home", database_url=url)) as kahu:
        kahu.ingestor.ingest(ct_series(1, 8)[0])
        rows, total = search_series(kahu.catalog, SYSTEM, "Modality:CT", index=kahu.search_index)
        assert total == 2
        assert "1.2.3" in {r.series_instance_uid for r in rows}
