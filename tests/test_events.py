"""Series-complete events: one per series, after its quiet period, with its datasets."""

from __future__ import annotations

import threading

from kahu.core import Kahu
from kahu.events import EventBus, IngestRate, InstanceStored, SeriesComplete
from tests import synthetic
from tests.conftest import SYSTEM


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
        rows, _ = kahu.catalog.list_series(SYSTEM)
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
        doc = kahu.catalog.get_series(SYSTEM, result.series_instance_uid or "").full_document()
        assert doc["BodyPartExamined"] == "CHEST"
    finally:
        kahu.stop()


def test_the_ingest_rate_counts_the_last_minutes() -> None:

    now = [600_000.0]
    bus = EventBus()
    rate = IngestRate(bus, clock=lambda: now[0])
    event = InstanceStored("1.2", "1.2.3", "1.2.3.4", None, new_series=False)
    for _ in range(3):
        bus.publish(event)
    now[0] += 120  # two minutes later
    bus.publish(event)
    assert (rate.last(1), rate.last(60)) == (1, 4)
    now[0] += 3600  # an hour later: all of it is old
    assert (rate.last(1), rate.last(60)) == (0, 0)
    for _ in range(70):  # minutes keep being dropped past the hour
        now[0] += 60
        bus.publish(event)
    assert rate.last(60) == 60
    assert len(rate._minutes) <= 62
