"""Arrival rules start a workflow on a matching completed series (not on its own results);
schedules start one on their cohort when their cron time comes."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from kahu.catalog.tables import utcnow
from kahu.core import Kahu
from kahu.errors import Conflict, InvalidInput, InvalidParameters
from kahu.events import SeriesComplete
from kahu.flow.cohort import RunInput
from tests.flow.conftest import add_series
from tests.synthetic import ct_series


def _complete(kahu: Kahu, uid: str) -> list[str]:
    return kahu.triggers.on_series_complete(SeriesComplete(uid, "", (), 1))


class TestArrival:
    def test_matching_series_starts_the_workflow(self, flow_kahu: Kahu) -> None:
        flow_kahu.triggers.add("ct-rule", "test-chain", query="Modality:CT AND PatientID:P0")
        first, second = add_series(flow_kahu, 2)
        (run_id,) = _complete(flow_kahu, first)
        assert _complete(flow_kahu, second) == []  # PatientID P1 does not match
        assert flow_kahu.flow.wait_idle(run_id, 60) == "succeeded"
        info = flow_kahu.runs.run(run_id)
        assert info.series == [first]
        assert info.trigger == "rule:ct-rule"
        assert flow_kahu.triggers.all()[0].last_fired_at is not None

    def test_results_of_the_rules_own_workflow_do_not_trigger_it(self, flow_kahu: Kahu) -> None:
        flow_kahu.triggers.add("loop", "test-store", query="Modality:CT")
        (uid,) = add_series(flow_kahu, 1)
        (run_id,) = _complete(flow_kahu, uid)
        assert flow_kahu.flow.wait_idle(run_id, 60) == "succeeded"
        # the stored result series carries lineage from test-store: no second run
        assert _complete(flow_kahu, uid) == []

    def test_disabled_rules_do_not_fire(self, flow_kahu: Kahu) -> None:
        flow_kahu.triggers.add("off", "test-chain", query="Modality:CT")
        flow_kahu.triggers.set_enabled("off", False)
        (uid,) = add_series(flow_kahu, 1)
        assert _complete(flow_kahu, uid) == []

    def test_a_real_arrival_fires_through_the_event_bus(self, local_kahu: Kahu) -> None:
        local_kahu.triggers.add("bus", "test-chain", query="Modality:CT")
        local_kahu.ingestor.ingest_many(ct_series(2, size=16))
        deadline = time.monotonic() + 30
        while not local_kahu.runs.runs() and time.monotonic() < deadline:
            time.sleep(0.1)
        (run,) = local_kahu.runs.runs()
        assert local_kahu.flow.wait_idle(run.id, 60) == "succeeded"


class TestSchedule:
    def test_due_schedule_runs_on_its_dataset_once(self, flow_kahu: Kahu) -> None:
        series = add_series(flow_kahu, 2)
        flow_kahu.curation.create_dataset("nightly", series=series)
        flow_kahu.triggers.add(
            "night", "test-chain", cron="0 2 * * *", run_input=RunInput(dataset="nightly")
        )
        assert flow_kahu.triggers.run_due(utcnow()) == []  # next 02:00 has not come
        later = utcnow() + timedelta(days=1, hours=1)
        (run_id,) = flow_kahu.triggers.run_due(later)
        assert flow_kahu.triggers.run_due(later) == []  # fired: the next time is a day on
        assert flow_kahu.flow.wait_idle(run_id, 60) == "succeeded"
        assert sorted(flow_kahu.runs.run(run_id).series) == sorted(series)


class TestValidation:
    @pytest.mark.parametrize(
        ("kwargs", "error", "text"),
        [
            ({"query": "Modality:(CT"}, InvalidInput, "syntax"),
            ({"cron": "every day"}, InvalidInput, "invalid cron"),
            ({"cron": "0 2 * * *"}, InvalidInput, "needs a cohort"),
            ({}, InvalidInput, "either a query"),
            ({"query": "x", "cron": "0 2 * * *"}, InvalidInput, "either a query"),
            ({"query": "Modality:CT", "params": {"mode": "slow"}}, InvalidParameters, "mode"),
        ],
    )
    def test_bad_triggers_are_refused(
        self, flow_kahu: Kahu, kwargs: dict[str, object], error: type, text: str
    ) -> None:
        with pytest.raises(error, match=text):
            flow_kahu.triggers.add("t", "test-chain", **kwargs)  # type: ignore[arg-type]
        assert flow_kahu.triggers.all() == []

    def test_names_are_unique(self, flow_kahu: Kahu) -> None:
        flow_kahu.triggers.add("t", "test-chain", query="Modality:CT")
        with pytest.raises(Conflict):
            flow_kahu.triggers.add("t", "test-chain", query="Modality:MR")
