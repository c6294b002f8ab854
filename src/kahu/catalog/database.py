"""Engine construction and schema migration for the catalog (SQLite or PostgreSQL)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine tuned for the backend: WAL and immediate write transactions on SQLite."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 60, "isolation_level": None},
            pool_size=20,
            max_overflow=20,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit that returned survives a power cut, not only a crash
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Writers take the lock up front; a deferred transaction that reads, then writes,
            # can fail with SQLITE_BUSY instead of waiting its turn.
            immediate = conn.get_execution_options().get("kahu_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_size=20, max_overflow=20, pool_pre_ping=True)


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    command.upgrade(alembic_config(engine), "head")


class Database:
    """Sessions for reading and for writing (the latter serialized on SQLite)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # PostgreSQL reads at READ COMMITTED see each statement's own snapshot anyway; in
        # autocommit they save the BEGIN/ROLLBACK round trip of every request.
        self._read_sessions = (
            sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"))
            if engine.dialect.name == "postgresql"
            else self._sessions
        )
        # SQLite has one writer at a time and its busy handler waits by sleeping with
        # back-off; threads of this process queue on a lock instead (other processes still
        # meet the busy timeout). PostgreSQL needs no such lock.
        self._write_lock: threading.Lock | contextlib.nullcontext[None] = (
            threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        )
        # ...and, holding that lock, reuse one connection: no pool checkout and reset per write
        self._writer: Connection | None = None

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read_sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on error."""
        with self._write_lock, self._sessions() as session:
            session.connection(execution_options={"kahu_write": True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """A Core connection in a write transaction (the ingest hot path)."""
        if isinstance(self._write_lock, contextlib.nullcontext):
            with self.engine.connect().execution_options(kahu_write=True) as conn, conn.begin():
                yield conn
            return
        with self._write_lock:
            if self._writer is None or self._writer.invalidated or self._writer.closed:
                self._writer = self.engine.connect().execution_options(kahu_write=True)
            with self._writer.begin():
                yield self._writer

    def dispose(self) -> None:
        with self._write_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        self.engine.dispose()
