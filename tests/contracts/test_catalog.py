"""The catalog and ingest contract: every backend (SQLite, PostgreSQL) passes the same tests."""

from __future__ import annotations

import io
import threading
from typing import Any

import pydicom
import pytest

from kahu.catalog.dicom_query import Level
from kahu.core import Kahu
from kahu.errors import NotFound
from kahu.events import InstanceStored
from tests import synthetic
from tests.conftest import SYSTEM, dataset_counts, sample_path


def _ingest(kahu: Kahu, name: str, dataset: str | None = None) -> str:
    result = kahu.ingestor.ingest(sample_path(name).read_bytes(), dataset=dataset)
    assert result.status == "stored", result.reason
    assert result.series_instance_uid
    return result.series_instance_uid


class TestIngest:
    def test_stored_instance_is_retrievable_byte_identical(self, kahu: Kahu) -> None:
        data = sample_path("CT_small.dcm").read_bytes()
        result = kahu.ingestor.ingest(data)
        assert result.status == "stored"
        [row] = kahu.catalog.instances(SYSTEM, sop_uid=result.sop_instance_uid)
        assert kahu.store.get(row.blob_key) == data
        assert row.size_bytes == len(data)

    def test_store_twice_is_idempotent(self, kahu: Kahu) -> None:
        data = sample_path("MR_small.dcm").read_bytes()
        assert kahu.ingestor.ingest(data).status == "stored"
        assert kahu.ingestor.ingest(data).status == "duplicate"
        counts = kahu.catalog.counts(SYSTEM)
        assert (counts.series, counts.instances) == (1, 1)
        series = kahu.catalog.list_series(SYSTEM)[0][0]
        assert series.instance_count == 1
        assert series.size_bytes == len(data)

    def test_same_uid_with_other_content_keeps_the_stored_one(self, kahu: Kahu) -> None:
        data = sample_path("MR_small.dcm").read_bytes()
        kahu.ingestor.ingest(data)
        ds = pydicom.dcmread(sample_path("MR_small.dcm"))
        ds.PatientName = "Changed^Name"
        changed = synthetic.to_bytes(ds)
        result = kahu.ingestor.ingest(changed)
        assert result.status == "duplicate"
        assert "kept the stored copy" in (result.reason or "")
        [row] = kahu.catalog.instances(SYSTEM, sop_uid=result.sop_instance_uid)
        assert kahu.store.get(row.blob_key) == data

    def test_series_groups_instances_and_counts_them(self, kahu: Kahu) -> None:
        files = synthetic.ct_series(5)
        for data in files:
            assert kahu.ingestor.ingest(data).status == "stored"
        rows, total = kahu.catalog.list_series(SYSTEM)
        assert total == 1
        assert rows[0].instance_count == 5
        assert rows[0].size_bytes == sum(len(f) for f in files)
        assert len(kahu.catalog.instances(SYSTEM, series_uid=rows[0].series_instance_uid)) == 5

    def test_called_ae_title_names_a_dataset(self, kahu: Kahu) -> None:
        uid = _ingest(kahu, "CT_small.dcm", dataset="STUDY1")
        _ingest(kahu, "MR_small.dcm")
        assert dataset_counts(kahu) == [("STUDY1", "ae", 1)]
        rows, total = kahu.catalog.list_series(SYSTEM, dataset="STUDY1")
        assert total == 1
        assert rows[0].series_instance_uid == uid
        assert kahu.catalog.get_series(SYSTEM, uid).full_document()["dataset"] == ["STUDY1"]

    def test_duplicate_sent_to_another_ae_joins_that_dataset(self, kahu: Kahu) -> None:
        uid = _ingest(kahu, "CT_small.dcm", dataset="A")
        data = sample_path("CT_small.dcm").read_bytes()
        assert kahu.ingestor.ingest(data, dataset="B").status == "duplicate"
        assert kahu.catalog.get_series(SYSTEM, uid).datasets == ["A", "B"]

    def test_document_has_metadata_and_derived_fields(self, kahu: Kahu) -> None:
        uid = _ingest(kahu, "CT_small.dcm")
        doc = kahu.catalog.get_series(SYSTEM, uid).full_document()
        assert doc["Modality"] == "CT"
        assert doc["StudyDate"] == "2004-01-19"
        assert doc["instance_count"] == 1
        assert doc["size_bytes"] > 0
        assert doc["received_at"].endswith("Z")

    @pytest.mark.parametrize(
        ("data", "reason"),
        [
            (b"", "empty"),
            (b"hello, not dicom at all" * 10, "not a DICOM"),
            (sample_path("MR_truncated.dcm").read_bytes(), "truncated"),
            (sample_path("CT_small.dcm").read_bytes()[:-100], "truncated"),
        ],
    )
    def test_bad_input_is_rejected_with_a_reason(
        self, kahu: Kahu, data: bytes, reason: str
    ) -> None:
        kept = _ingest(kahu, "MR_small.dcm")
        result = kahu.ingestor.ingest(data)
        assert result.status == "rejected"
        assert reason in (result.reason or "")
        assert [r.series_instance_uid for r in kahu.catalog.list_series(SYSTEM)[0]] == [kept]

    @pytest.mark.parametrize("keyword", ["SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"])
    def test_missing_or_invalid_uid_is_rejected_before_any_path_is_built(
        self, kahu: Kahu, keyword: str
    ) -> None:
        ds = pydicom.dcmread(sample_path("CT_small.dcm"))
        del ds[keyword]
        assert "missing" in (kahu.ingestor.ingest(synthetic.to_bytes(ds)).reason or "")
        ds = pydicom.dcmread(sample_path("CT_small.dcm"))
        ds[keyword].value = "../../../etc/passwd"
        if keyword == "SOPInstanceUID":
            ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3"
        result = kahu.ingestor.ingest(synthetic.to_bytes(ds))
        assert result.status == "rejected"
        assert f"invalid {keyword}" in (result.reason or "")
        assert list(kahu.store.keys()) == []

    def test_out_of_vr_values_are_stored_and_flagged(self, kahu: Kahu) -> None:
        uid = _ingest(kahu, "badVR.dcm")
        assert kahu.catalog.get_series(SYSTEM, uid).document["_invalid"] == {"NumberOfFrames": "1A"}

    def test_bare_dataset_without_file_meta_is_wrapped(self, kahu: Kahu) -> None:
        uid = _ingest(kahu, "rtstruct.dcm")
        [row] = kahu.catalog.instances(SYSTEM, series_uid=uid)
        stored = kahu.store.get(row.blob_key)
        assert stored[128:132] == b"DICM"
        assert stored.endswith(sample_path("rtstruct.dcm").read_bytes())
        assert pydicom.dcmread(kahu.store.local_path(row.blob_key)).Modality == "RTSTRUCT"

    def test_instance_stored_event_is_published(self, kahu: Kahu) -> None:
        seen: list[InstanceStored] = []
        kahu.events.subscribe(InstanceStored, seen.append)
        _ingest(kahu, "CT_small.dcm", dataset="X")
        assert len(seen) == 1
        assert seen[0].new_series
        assert seen[0].dataset == "X"

    def test_concurrent_ingest_of_one_series(self, kahu: Kahu) -> None:
        files = synthetic.ct_series(24)
        results: list[str] = []

        def work(chunk: list[bytes]) -> None:
            for data in chunk:
                results.append(kahu.ingestor.ingest(data).status)

        threads = [threading.Thread(target=work, args=(files[i::8],)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results.count("stored") == 24
        rows, total = kahu.catalog.list_series(SYSTEM)
        assert total == 1
        assert rows[0].instance_count == 24


class TestIngestMany:
    def test_batch_reports_each_file_in_order(self, kahu: Kahu) -> None:
        stored_before = sample_path("MR_small.dcm").read_bytes()
        kahu.ingestor.ingest(stored_before)
        series = synthetic.ct_series(3)
        batch = [series[0], b"junk", stored_before, series[1], series[0], series[2]]
        results = kahu.ingestor.ingest_many(batch, dataset="BATCH")
        assert [r.status for r in results] == [
            "stored",
            "rejected",
            "duplicate",
            "stored",
            "duplicate",
            "stored",
        ]
        rows, total = kahu.catalog.list_series(SYSTEM, dataset="BATCH")
        assert total == 2  # the new series and the MR one sent again to this AE
        [ct] = [r for r in rows if r.modality == "CT"]
        assert ct.instance_count == 3
        assert ct.size_bytes == sum(len(d) for d in series)

    def test_storage_failure_leaves_nothing_behind(
        self, kahu: Kahu, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from kahu.errors import StorageError

        def fail(_data: object) -> None:
            raise StorageError("disk full")

        monkeypatch.setattr(kahu.store, "stage", fail)
        with pytest.raises(StorageError):
            kahu.ingestor.ingest_many(synthetic.ct_series(2))
        assert kahu.catalog.counts(SYSTEM).instances == 0

    def test_catalog_failure_removes_the_new_files(
        self, kahu: Kahu, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def fail(*_args: object, **_kwargs: object) -> None:
            raise RuntimeError("database went away")

        monkeypatch.setattr(kahu.catalog, "add_instances", fail)
        with pytest.raises(RuntimeError):
            kahu.ingestor.ingest_many(synthetic.ct_series(2))
        assert list(kahu.store.keys()) == []
        assert _staging_leftovers(kahu) == []

    def test_failed_commit_after_publishing_removes_the_files(
        self, kahu: Kahu, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        original = kahu.catalog.add_instances

        def commit_fails(*args: Any, before_commit: Any, **kwargs: Any) -> Any:
            def publish_then_fail(outcomes: Any) -> None:
                before_commit(outcomes)
                assert len(list(kahu.store.keys())) == 2  # the files were in place
                raise RuntimeError("commit failed")

            return original(*args, before_commit=publish_then_fail, **kwargs)

        monkeypatch.setattr(kahu.catalog, "add_instances", commit_fails)
        with pytest.raises(RuntimeError):
            kahu.ingestor.ingest_many(synthetic.ct_series(2))
        assert list(kahu.store.keys()) == []
        assert kahu.catalog.counts(SYSTEM).instances == 0
        assert _staging_leftovers(kahu) == []

    def test_rejected_and_duplicate_instances_leave_no_staged_files(self, kahu: Kahu) -> None:
        series = synthetic.ct_series(2)
        kahu.ingestor.ingest_many(series)
        results = kahu.ingestor.ingest_many([*series, b"not dicom", series[0][:500]])
        assert [r.status for r in results] == ["duplicate", "duplicate", "rejected", "rejected"]
        assert len(list(kahu.store.keys())) == 2
        assert _staging_leftovers(kahu) == []

    def test_racing_copies_of_one_instance_keep_the_file_the_catalog_describes(
        self, kahu: Kahu
    ) -> None:
        import hashlib

        for _ in range(10):
            first = synthetic.ct_series(1)[0]
            ds = pydicom.dcmread(io.BytesIO(first))
            ds.SeriesDescription = "another encoding of the same instance"
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            copies = [first, buffer.getvalue()]
            start = threading.Barrier(2)
            statuses: list[str] = []

            def send(data: bytes, start: threading.Barrier, statuses: list[str]) -> None:
                start.wait()
                statuses.append(kahu.ingestor.ingest(data).status)

            threads = [threading.Thread(target=send, args=(c, start, statuses)) for c in copies]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert sorted(statuses) == ["duplicate", "stored"]
            [row] = kahu.catalog.instances(SYSTEM, sop_uid=ds.SOPInstanceUID)
            assert hashlib.sha256(kahu.store.get(row.blob_key)).hexdigest() == row.sha256

    def test_an_instance_uid_sent_again_in_another_series_is_refused(self, kahu: Kahu) -> None:
        first, other = synthetic.ct_series(1), synthetic.ct_series(2)
        kahu.ingestor.ingest(first[0])
        kahu.ingestor.ingest(other[1])  # the other series is known from here on
        for series_is_known in (False, True):
            ds = pydicom.dcmread(io.BytesIO(first[0]))
            if series_is_known:
                ds.SeriesInstanceUID = pydicom.dcmread(io.BytesIO(other[0])).SeriesInstanceUID
            else:
                ds.SeriesInstanceUID = pydicom.uid.generate_uid()
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            result = kahu.ingestor.ingest(buffer.getvalue())
            assert result.status == "rejected"
            assert "already stored in series" in (result.reason or "")
        counts = kahu.catalog.counts(SYSTEM)
        assert (counts.series, counts.instances) == (2, 2)  # no empty series was made
        assert _staging_leftovers(kahu) == []

    def test_a_duplicate_keeps_the_first_copy_byte_for_byte(self, kahu: Kahu) -> None:
        first = synthetic.ct_series(1)[0]
        kahu.ingestor.ingest(first)
        ds = pydicom.dcmread(io.BytesIO(first))
        ds.SeriesDescription = "changed"
        again = io.BytesIO()
        ds.save_as(again, enforce_file_format=True)
        assert kahu.ingestor.ingest(again.getvalue()).status == "duplicate"
        [key] = kahu.store.keys()
        assert kahu.store.get(key) == first


class TestDelete:
    def test_delete_series_removes_rows_and_files(self, kahu: Kahu) -> None:
        keep = _ingest(kahu, "MR_small.dcm")
        files = synthetic.ct_series(3)
        uid = ""
        for data in files:
            uid = kahu.ingestor.ingest(data, dataset="D").series_instance_uid or ""
        keys = [r.blob_key for r in kahu.catalog.instances(SYSTEM, series_uid=uid)]
        assert kahu.ingestor.delete_series(uid) == 3
        assert not any(kahu.store.exists(k) for k in keys)
        with pytest.raises(NotFound):
            kahu.catalog.get_series(SYSTEM, uid)
        counts = kahu.catalog.counts(SYSTEM)
        assert (counts.patients, counts.studies, counts.series, counts.instances) == (1, 1, 1, 1)
        assert kahu.catalog.get_series(SYSTEM, keep)
        assert dataset_counts(kahu) == [("D", "ae", 0)]

    def test_delete_unknown_series_is_not_found(self, kahu: Kahu) -> None:
        with pytest.raises(NotFound):
            kahu.ingestor.delete_series("1.2.3.4")


class TestDicomQuery:
    @pytest.fixture
    def filled(self, kahu: Kahu) -> Kahu:
        for name in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "test-SR.dcm"):
            _ingest(kahu, name)
        return kahu

    def _uids(self, kahu: Kahu, level: Level, **filters: str) -> set[str]:
        key = {
            "PATIENT": "PatientID",
            "STUDY": "StudyInstanceUID",
            "SERIES": "Modality",
            "IMAGE": "SOPInstanceUID",
        }[level.value]
        return {r[key] for r in kahu.query.search(SYSTEM, level, filters)}

    def test_single_value_and_universal(self, filled: Kahu) -> None:
        assert self._uids(filled, Level.SERIES, Modality="CT") == {"CT"}
        assert self._uids(filled, Level.SERIES, Modality="") == {"CT", "MR", "RTDOSE", "SR"}

    def test_wildcards_on_names_are_case_insensitive(self, filled: Kahu) -> None:
        rows = filled.query.search(SYSTEM, Level.PATIENT, {"PatientName": "compressed*"})
        assert {r["PatientID"] for r in rows} == {"1CT1", "4MR1"}
        rows = filled.query.search(SYSTEM, Level.PATIENT, {"PatientName": "CompressedSamples^?T1"})
        assert {r["PatientID"] for r in rows} == {"1CT1"}

    def test_date_ranges(self, filled: Kahu) -> None:
        rows = filled.query.search(SYSTEM, Level.STUDY, {"StudyDate": "20040101-20041231"})
        assert {r["StudyDate"] for r in rows} == {"20040119", "20040826"}
        rows = filled.query.search(SYSTEM, Level.STUDY, {"StudyDate": "20040501-"})
        assert {r["StudyDate"] for r in rows} == {"20040826"}
        rows = filled.query.search(SYSTEM, Level.STUDY, {"StudyDate": "-20040201"})
        assert {r["StudyDate"] for r in rows} == {"20030805", "20040119"}

    def test_uid_list_matching(self, filled: Kahu) -> None:
        studies = [r["StudyInstanceUID"] for r in filled.query.search(SYSTEM, Level.STUDY, {})]
        rows = filled.query.search(
            SYSTEM, Level.STUDY, {"StudyInstanceUID": "\\".join(studies[:2])}
        )
        assert {r["StudyInstanceUID"] for r in rows} == set(studies[:2])

    def test_list_matching_on_text(self, filled: Kahu) -> None:
        rows = filled.query.search(SYSTEM, Level.PATIENT, {"PatientID": "1CT1\\4MR1"})
        assert {r["PatientID"] for r in rows} == {"1CT1", "4MR1"}
        rows = filled.query.search(SYSTEM, Level.SERIES, {"Modality": "CT\\SR"})
        assert {r["Modality"] for r in rows} == {"CT", "SR"}

    def test_wildcard_characters_in_data_do_not_leak(self, filled: Kahu) -> None:
        assert filled.query.search(SYSTEM, Level.PATIENT, {"PatientID": "1CT%"}) == []
        assert filled.query.search(SYSTEM, Level.PATIENT, {"PatientID": "1CT_"}) == []

    def test_derived_study_attributes(self, filled: Kahu) -> None:
        [row] = filled.query.search(SYSTEM, Level.STUDY, {"PatientID": "1CT1"})
        assert row["ModalitiesInStudy"] == ["CT"]
        assert row["NumberOfStudyRelatedInstances"] == 1
        rows = filled.query.search(SYSTEM, Level.STUDY, {"ModalitiesInStudy": "MR"})
        assert [r["PatientID"] for r in rows] == ["4MR1"]

    def test_invalid_query_values_are_refused(self, filled: Kahu) -> None:
        from kahu.errors import InvalidInput

        with pytest.raises(InvalidInput):
            filled.query.search(SYSTEM, Level.STUDY, {"StudyDate": "2004xx01"})
        with pytest.raises(InvalidInput):
            filled.query.search(SYSTEM, Level.STUDY, {"StudyInstanceUID": "1.2.x"})


class TestCharacterSets:
    @pytest.mark.parametrize(
        "name",
        [
            "chrFren.dcm",
            "chrGerm.dcm",
            "chrGreek.dcm",
            "chrArab.dcm",
            "chrH31.dcm",
            "chrH32.dcm",
            "chrI2.dcm",
            "chrJapMulti.dcm",
            "chrKoreanMulti.dcm",
            "chrRuss.dcm",
            "chrX1.dcm",
        ],
    )
    def test_names_are_decoded_with_their_character_set(self, kahu: Kahu, name: str) -> None:
        from pathlib import Path

        import pydicom.data

        path = Path(pydicom.data.__file__).parent / "charset_files" / name
        expected = str(pydicom.dcmread(path).PatientName)
        result = kahu.ingestor.ingest(path.read_bytes())
        assert result.status == "stored", result.reason
        [row] = kahu.query.search(SYSTEM, Level.PATIENT, {"PatientID": ""})
        assert row["PatientName"] == expected
        doc = kahu.catalog.get_series(SYSTEM, result.series_instance_uid or "").document
        assert doc["PatientName"] == expected


def _staging_leftovers(kahu: Kahu) -> list[str]:
    return [p.name for p in (kahu.settings.blob_root / ".tmp").iterdir()]
