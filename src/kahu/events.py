"""In-process events: instance stored, series complete (no new instance for a quiet period)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InstanceStored:
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    dataset: str | None
    new_series: bool


@dataclass(frozen=True, slots=True)
class SeriesComplete:
    series_instance_uid: str
    study_instance_uid: str
    datasets: tuple[str, ...]
    instances_received: int


Event = InstanceStored | SeriesComplete
Handler = Callable[[Any], None]


class EventBus:
    """Synchronous publish/subscribe; a failing subscriber is logged, never fatal to ingest."""

    def __init__(self) -> None:
        self._handlers: list[tuple[type, Handler]] = []
        self._lock = threading.Lock()

    def subscribe(self, kind: type, handler: Handler) -> None:
        with self._lock:
            self._handlers.append((kind, handler))

    def publish(self, event: Event) -> None:
        with self._lock:
            handlers = [h for kind, h in self._handlers if isinstance(event, kind)]
        for handler in handlers:
            try:
                handler(event)
            except Exception:
                log.exception("event handler failed for %r", event)


class IngestRate:
    """Instances stored by this process per minute, kept for the last hour (what the admin
    page shows as the ingest rate)."""

    def __init__(self, bus: EventBus, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._minutes: dict[int, int] = {}
        self._lock = threading.Lock()
        bus.subscribe(InstanceStored, self._on_stored)

    def _on_stored(self, _event: InstanceStored) -> None:
        minute = int(self._clock() // 60)
        with self._lock:
            self._minutes[minute] = self._minutes.get(minute, 0) + 1
            if len(self._minutes) > 61:
                for old in [m for m in self._minutes if m < minute - 60]:
                    del self._minutes[old]

    def last(self, minutes: int) -> int:
        """Instances stored in the last ``minutes`` whole minutes and the current one."""
        now = int(self._clock() // 60)
        with self._lock:
            return sum(n for m, n in self._minutes.items() if m > now - minutes)


class SeriesCompletionMonitor:
    """Emits :class:`SeriesComplete` once a series has had no new instance for ``quiet`` s."""

    def __init__(self, bus: EventBus, quiet_seconds: float) -> None:
        self.bus = bus
        self.quiet = quiet_seconds
        self._pending: dict[str, tuple[float, str, set[str], int]] = {}
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="kahu-series-complete", daemon=True)
        bus.subscribe(InstanceStored, self._on_stored)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def pending(self) -> int:
        """Series that received instances and are not complete yet."""
        with self._cond:
            return len(self._pending)

    def _on_stored(self, event: InstanceStored) -> None:
        with self._cond:
            _, study, datasets, count = self._pending.get(
                event.series_instance_uid, (0.0, event.study_instance_uid, set(), 0)
            )
            if event.dataset:
                datasets.add(event.dataset)
            self._pending[event.series_instance_uid] = (
                time.monotonic(),
                study,
                datasets,
                count + 1,
            )
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopped:
                    return
                now = time.monotonic()
                due = [uid for uid, (seen, *_) in self._pending.items() if now - seen >= self.quiet]
                ready = [(uid, self._pending.pop(uid)) for uid in due]
                if not ready:
                    wait = min(
                        (self.quiet - (now - seen) for seen, *_ in self._pending.values()),
                        default=None,
                    )
                    self._cond.wait(timeout=wait)
                    continue
            for uid, (_, study, datasets, count) in ready:
                self.bus.publish(SeriesComplete(uid, study, tuple(sorted(datasets)), count))
