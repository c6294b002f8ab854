"""Series-complete events: one per series, after its quiet period, with its datasets."""

from __future__ import annotations

import threading

from kahu.core import Kahu
from kahu.events import SeriesComplete
from tests import synthetic


def test_series_complete_is_emitted_once_after_the_quiet_period(make_settings) -> None:  # type: ignore[no-untyped-def]
    kahu = Kahu(make_settings(enabled=False))  # quiet period 0.3 s in tests
    seen: list[SeriesComplete] = []
    arrived = threading.Event()

    def on_complete(event: SeriesComplete) -> None:
        seen.append(event)
        arrived.set()

    kahu.events.subscribe(SeriesComplete, on_complete)
    kahu.start()
    try:
        files = synthetic.ct_series(5)
        for data in files[:3]:
            kahu.ingestor.ingest(data, dataset="A")
        kahu.ingestor.ingest(files[3], dataset="B")
        kahu.ingestor.ingest(files[4])
        assert arrived.wait(10)
        [event] = seen
        assert event.instances_received == 5
        assert event.datasets == ("A", "B")
        rows, _ = kahu.catalog.list_series()
        assert event.series_instance_uid == rows[0].series_instance_uid
        arrived.clear()
        assert not arrived.wait(1.0), "a quiet series completes once"
        kahu.ingestor.ingest(files[0])  # a duplicate is not a new arrival
        assert not arrived.wait(1.0)
    finally:
        kahu.stop()


def test_series_are_searchable_as_soon_as_stored(make_settings) -> None:  # type: ignore[no-untyped-def]
    kahu = Kahu(make_settings(enabled=False))
    try:
        result = kahu.ingestor.ingest(synthetic.ct_series(1)[0])
        doc = kahu.catalog.get_series(result.series_instance_uid or "").full_document()
        assert doc["BodyPartExamined"] == "CHEST"
    finally:
        kahu.stop()
