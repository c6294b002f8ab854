"""DICOM JSON of every instance, computed after the store is acknowledged.

Encoding a rich header as DICOM JSON costs milliseconds of pure Python. Done beside a live
C-STORE stream it takes the GIL from the receiving thread and triples its latency, so the
background thread waits until ingest has been quiet for :data:`IDLE_SECONDS`;
:meth:`MetadataIndex.ensure` fills any gap on demand (a request that comes first, a crash).
WADO-RS metadata then joins the stored strings.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.dialects import postgresql, sqlite

from kahu.catalog.database import Database
from kahu.catalog.tables import Instance, InstanceMetadata, Series, Study
from kahu.dicom.json_model import instance_json_from_bytes
from kahu.events import EventBus, InstanceStored
from kahu.storage.base import BlobStore

log = logging.getLogger(__name__)
_BATCH = 64
IDLE_SECONDS = 1.0


class MetadataIndex:
    def __init__(self, db: Database, store: BlobStore, events: EventBus | None = None) -> None:
        self.db = db
        self.store = store
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._last_ingest = 0.0
        self._stopping = threading.Event()
        if events is not None:
            events.subscribe(InstanceStored, self._on_stored)

    def _on_stored(self, event: InstanceStored) -> None:
        self._last_ingest = time.monotonic()
        self._queue.put(event.sop_instance_uid)

    def _wait_for_quiet(self) -> None:
        while not self._stopping.is_set():
            quiet_for = time.monotonic() - self._last_ingest
            if quiet_for >= IDLE_SECONDS:
                return
            self._stopping.wait(IDLE_SECONDS - quiet_for)

    def _insert(self) -> Any:
        dialect = postgresql if self.db.engine.dialect.name == "postgresql" else sqlite
        return dialect.insert(InstanceMetadata).on_conflict_do_nothing()

    def ensure(self, sop_uids: Sequence[str]) -> int:
        """Compute and store the JSON of those instances that have none; return how many."""
        if not sop_uids:
            return 0
        stmt = (
            select(
                Instance.id,
                Instance.sop_instance_uid,
                Instance.blob_key,
                Series.series_instance_uid,
                Study.study_instance_uid,
            )
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .outerjoin(InstanceMetadata, InstanceMetadata.instance_pk == Instance.id)
            .where(
                Instance.sop_instance_uid.in_(list(sop_uids)),
                InstanceMetadata.instance_pk.is_(None),
            )
        )
        with self.db.read() as s:
            missing = s.execute(stmt).all()
        rows = []
        for pk, sop, key, series, study in missing:
            try:
                text = instance_json_from_bytes(self.store.get(key), study, series, sop)
                rows.append({"instance_pk": pk, "dicom_json": text})
            except Exception:
                log.exception("could not encode metadata of %s", sop)
        if rows:
            with self.db.write_connection() as conn:
                conn.execute(self._insert(), rows)
        return len(rows)

    def texts(
        self,
        study: str,
        series: str | None = None,
        instance: str | None = None,
        *,
        where: ColumnElement[bool] | None = None,
    ) -> list[str]:
        """The stored DICOM JSON of every instance of a study, series or single instance
        (of the series ``where``, a read scope, allows)."""
        stmt = (
            select(Instance.sop_instance_uid, InstanceMetadata.dicom_json)
            .join(Series, Instance.series_pk == Series.id)
            .join(Study, Series.study_pk == Study.id)
            .outerjoin(InstanceMetadata, InstanceMetadata.instance_pk == Instance.id)
            .where(Study.study_instance_uid == study)
            .order_by(Series.id, Instance.instance_number, Instance.id)
        )
        if series is not None:
            stmt = stmt.where(Series.series_instance_uid == series)
        if instance is not None:
            stmt = stmt.where(Instance.sop_instance_uid == instance)
        if where is not None:
            stmt = stmt.where(where)
        with self.db.read() as s:
            rows = s.execute(stmt).all()
        missing = [sop for sop, text in rows if text is None]
        if missing:
            # filled here or, meanwhile, by the background thread: read again either way
            self.ensure(missing)
            with self.db.read() as s:
                rows = s.execute(stmt).all()
        return [text for _, text in rows if text is not None]

    def backfill(self) -> int:
        """Queue every instance that has no metadata yet (after a crash or an upgrade)."""
        stmt = (
            select(Instance.sop_instance_uid)
            .outerjoin(InstanceMetadata, InstanceMetadata.instance_pk == Instance.id)
            .where(InstanceMetadata.instance_pk.is_(None))
        )
        with self.db.read() as s:
            uids = list(s.scalars(stmt))
        for uid in uids:
            self._queue.put(uid)
        return len(uids)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kahu-metadata", daemon=True)
        self._thread.start()
        self.backfill()

    def stop(self) -> None:
        if self._thread is not None:
            self._stopping.set()
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def idle(self, timeout: float = 30.0) -> bool:
        """Wait until the queue is drained (for tests and benchmarks)."""
        done = threading.Event()

        def waiter() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=waiter, daemon=True).start()
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is not None:
                self._wait_for_quiet()
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            uids = [item for item in batch if item is not None]
            try:
                self.ensure(uids)
            except Exception:
                log.exception("metadata indexing failed for %d instances", len(uids))
            finally:
                for _ in batch:
                    self._queue.task_done()
            if None in batch:
                return
