"""C-FIND, C-MOVE and C-GET over real associations (pynetdicom, findscu, movescu, getscu)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from kahu.core import Kahu
from kahu.dicom.structure import body_offset
from kahu.dimse.nodes import Node
from tests import synthetic
from tests.conftest import SYSTEM, dcmtk_tool, sample_path
from tests.dimse import scu

NAMES = ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "test-SR.dcm"]


#: the calling AE titles of the tests' SCUs (pynetdicom's and dcmtk's defaults): nodes of
#: the default project, so that they may query and retrieve
CALLERS = ("TESTSCU", "FINDSCU", "MOVESCU", "GETSCU", "GETTER")


def register_callers(kahu: Kahu) -> None:
    for aet in CALLERS:
        kahu.nodes.add(Node(aet.lower(), aet, "127.0.0.1", 1))


@pytest.fixture
def filled(running_kahu: Kahu) -> Kahu:
    register_callers(running_kahu)
    assert scu.store(running_kahu.dicom.port, [sample_path(n).read_bytes() for n in NAMES]) == [
        0
    ] * len(NAMES)
    series = synthetic.ct_series(4, patient_id="SYN-Q", description="chest low dose")
    assert scu.store(running_kahu.dicom.port, series) == [0] * 4
    return running_kahu


def _query(level: str, **keys: object) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def _findscu(port: int, *args: str) -> str:
    out = subprocess.run(
        [dcmtk_tool("findscu"), "-aec", "KAHU", "127.0.0.1", str(port), *args],
        capture_output=True,
        timeout=60,
        check=True,
    )
    return out.stdout.decode(errors="replace") + out.stderr.decode(errors="replace")


class TestFind:
    def test_study_level_with_wildcard_name(self, filled: Kahu) -> None:
        found, status = scu.find(
            filled.dicom.port,
            _query(
                "STUDY",
                PatientName="compressed*",
                StudyInstanceUID="",
                ModalitiesInStudy="",
                NumberOfStudyRelatedInstances="",
            ),
        )
        assert status == 0
        assert sorted(str(d.PatientName) for d in found) == [
            "CompressedSamples^CT1",
            "CompressedSamples^MR1",
        ]
        assert {d["ModalitiesInStudy"].value for d in found} == {"CT", "MR"}

    def test_series_level_by_modality_and_date_range(self, filled: Kahu) -> None:
        found, _ = scu.find(
            filled.dicom.port,
            _query(
                "SERIES",
                Modality="CT",
                StudyDate="20040101-20241231",
                SeriesInstanceUID="",
                SeriesDescription="",
                NumberOfSeriesRelatedInstances="",
            ),
        )
        assert sorted(int(d.NumberOfSeriesRelatedInstances) for d in found) == [1, 4]

    def test_image_level_lists_instances(self, filled: Kahu) -> None:
        [series] = [r for r in filled.catalog.list_series(SYSTEM)[0] if r.patient_id == "SYN-Q"]
        found, _ = scu.find(
            filled.dicom.port,
            _query(
                "IMAGE",
                StudyInstanceUID=series.study_instance_uid,
                SeriesInstanceUID=series.series_instance_uid,
                SOPInstanceUID="",
                InstanceNumber="",
            ),
        )
        assert sorted(int(d.InstanceNumber) for d in found) == [1, 2, 3, 4]

    def test_patient_root_patient_level(self, filled: Kahu) -> None:
        found, _ = scu.find(
            filled.dicom.port,
            _query("PATIENT", PatientID="SYN*", PatientName="", NumberOfPatientRelatedStudies=""),
            patient_root=True,
        )
        assert [(d.PatientID, int(d.NumberOfPatientRelatedStudies)) for d in found] == [
            ("SYN-Q", 1)
        ]

    def test_study_root_refuses_patient_level(self, filled: Kahu) -> None:
        found, status = scu.find(filled.dicom.port, _query("PATIENT", PatientID=""))
        assert found == []
        assert status == 0xA900

    def test_bad_range_is_a_failure_not_a_crash(self, filled: Kahu) -> None:
        found, status = scu.find(filled.dicom.port, _query("STUDY", StudyDate="2004xx-"))
        assert found == []
        assert status == 0xA900

    def test_findscu_study_root(self, filled: Kahu, dcmtk: None) -> None:
        out = _findscu(
            filled.dicom.port,
            "-S",
            "-k",
            "QueryRetrieveLevel=STUDY",
            "-k",
            "PatientID=1CT1",
            "-k",
            "StudyInstanceUID",
            "-k",
            "StudyDate",
        )
        assert "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322" in out
        assert "20040119" in out
        assert "4MR1" not in out

    def test_findscu_patient_root_list_matching(self, filled: Kahu, dcmtk: None) -> None:
        out = _findscu(
            filled.dicom.port,
            "-P",
            "-k",
            "QueryRetrieveLevel=PATIENT",
            "-k",
            "PatientID=1CT1\\4MR1",
            "-k",
            "PatientName",
        )
        assert "CompressedSamples^CT1" in out
        assert "CompressedSamples^MR1" in out
        assert "SYN-Q" not in out


@pytest.fixture
def destination(make_settings) -> Iterator[Kahu]:  # type: ignore[no-untyped-def]
    """A second Kahu instance, listening: the C-MOVE destination."""
    other = Kahu(make_settings(ae_title="DEST"))
    other.start()
    yield other
    other.stop()


def _bodies(kahu: Kahu) -> dict[str, bytes]:
    out = {}
    for row in kahu.catalog.instances(SYSTEM):
        data = kahu.store.get(row.blob_key)
        out[row.sop_instance_uid] = data[body_offset(data) :]
    return out


class TestMove:
    def test_move_study_to_a_registered_node(self, filled: Kahu, destination: Kahu) -> None:
        filled.nodes.add(Node("dest", "DEST", "127.0.0.1", destination.dicom.port))
        [series] = [r for r in filled.catalog.list_series(SYSTEM)[0] if r.patient_id == "SYN-Q"]
        status = scu.move(
            filled.dicom.port, _query("STUDY", StudyInstanceUID=series.study_instance_uid), "DEST"
        )
        assert status.Status == 0
        assert status.NumberOfCompletedSuboperations == 4
        source = _bodies(filled)
        moved = _bodies(destination)
        assert len(moved) == 4
        assert all(source[uid] == body for uid, body in moved.items())

    def test_moved_real_files_arrive_with_identical_data_sets(
        self, running_kahu: Kahu, destination: Kahu
    ) -> None:
        from tests.dimse.test_store import CORPUS, corpus_file

        files = [corpus_file(n) for n in CORPUS]
        assert scu.store(running_kahu.dicom.port, files) == [0] * len(files)
        register_callers(running_kahu)
        running_kahu.nodes.add(Node("dest", "DEST", "127.0.0.1", destination.dicom.port))
        studies = {r.study_instance_uid for r in running_kahu.catalog.instances(SYSTEM)}
        for study in studies:
            status = scu.move(
                running_kahu.dicom.port, _query("STUDY", StudyInstanceUID=study), "DEST"
            )
            assert status.Status == 0, study
        source, moved = _bodies(running_kahu), _bodies(destination)
        assert moved.keys() == source.keys()
        changed = [uid for uid in source if moved[uid] != source[uid]]
        assert changed == []

    def test_move_to_unknown_destination_fails(self, filled: Kahu) -> None:
        status = scu.move(filled.dicom.port, _query("STUDY", PatientID="1CT1"), "NOBODY")
        assert status.Status == 0xA801

    @pytest.mark.parametrize(
        "query",
        [
            {"QueryRetrieveLevel": "PATIENT", "PatientID": "SYN-Q"},  # not in Study Root
            {"QueryRetrieveLevel": "STUDY", "StudyDate": "2004xx-"},  # a bad range
            {"QueryRetrieveLevel": "NONSENSE"},
        ],
    )
    def test_a_bad_identifier_fails_and_sends_nothing(
        self, filled: Kahu, destination: Kahu, query: dict[str, str]
    ) -> None:
        filled.nodes.add(Node("dest", "DEST", "127.0.0.1", destination.dicom.port))
        identifier = Dataset()
        for key, value in query.items():
            setattr(identifier, key, value)
        status = scu.move(filled.dicom.port, identifier, "DEST")
        assert status.Status == 0xC513  # a failure, never "Success with nothing moved"
        assert destination.catalog.instances(SYSTEM) == []
        [record] = filled.audit.query(action="retrieve")
        assert record.status == 0xC513

    def test_movescu(self, filled: Kahu, destination: Kahu, dcmtk: None) -> None:
        filled.nodes.add(Node("dest", "DEST", "127.0.0.1", destination.dicom.port))
        subprocess.run(
            [
                dcmtk_tool("movescu"),
                "-S",
                "-aec",
                "KAHU",
                "-aem",
                "DEST",
                "-k",
                "QueryRetrieveLevel=SERIES",
                "-k",
                "PatientID=4MR1",
                "-k",
                "StudyInstanceUID=1.3.6.1.4.1.5962.1.2.4.20040826185059.5457",
                "-k",
                "SeriesInstanceUID",
                "127.0.0.1",
                str(filled.dicom.port),
            ],
            check=True,
            timeout=60,
            capture_output=True,
        )
        [row] = destination.catalog.instances(SYSTEM)
        assert row.sop_instance_uid == str(
            pydicom.dcmread(sample_path("MR_small.dcm"), stop_before_pixels=True).SOPInstanceUID
        )


class TestGet:
    def test_a_bad_identifier_fails(self, filled: Kahu) -> None:
        from pynetdicom import build_context
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as Get

        identifier = Dataset()
        identifier.QueryRetrieveLevel = "STUDY"
        identifier.StudyDate = "2004xx-"
        assoc = scu.associate(filled.dicom.port, [build_context(Get)])
        assert assoc.is_established
        try:
            statuses = [int(s.Status) for s, _ in assoc.send_c_get(identifier, Get) if s]
        finally:
            assoc.release()
        assert statuses == [0xC413]

    def test_getscu_retrieves_series_unchanged(
        self, filled: Kahu, dcmtk: None, tmp_path: Path
    ) -> None:
        tmp_path = tmp_path / "received"
        tmp_path.mkdir()
        [series] = [r for r in filled.catalog.list_series(SYSTEM)[0] if r.patient_id == "SYN-Q"]
        subprocess.run(
            [
                dcmtk_tool("getscu"),
                "-S",
                "-aec",
                "KAHU",
                "-od",
                str(tmp_path),
                "-k",
                "QueryRetrieveLevel=SERIES",
                "-k",
                f"StudyInstanceUID={series.study_instance_uid}",
                "-k",
                f"SeriesInstanceUID={series.series_instance_uid}",
                "127.0.0.1",
                str(filled.dicom.port),
            ],
            check=True,
            timeout=60,
            capture_output=True,
        )
        received = sorted(tmp_path.iterdir())
        assert len(received) == 4
        source = _bodies(filled)
        for path in received:
            data = path.read_bytes()
            uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
            assert data[body_offset(data) :] == source[uid]  # the stored bytes, as stored

    def test_get_converts_when_the_stored_transfer_syntax_is_not_accepted(
        self, filled: Kahu
    ) -> None:
        from pydicom.uid import ImplicitVRLittleEndian
        from pynetdicom import AE, build_role, evt
        from pynetdicom.sop_class import CTImageStorage, StudyRootQueryRetrieveInformationModelGet

        [series] = [r for r in filled.catalog.list_series(SYSTEM)[0] if r.patient_id == "SYN-Q"]
        stored = filled.catalog.instances(SYSTEM, series_uid=series.series_instance_uid)
        assert {r.transfer_syntax_uid for r in stored} != {ImplicitVRLittleEndian}
        received: list[tuple[str, str]] = []

        def on_store(event: evt.Event) -> int:
            received.append((event.context.transfer_syntax, event.dataset.SOPInstanceUID))
            return 0

        ae = AE(ae_title="GETTER")
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        ae.add_requested_context(CTImageStorage, [ImplicitVRLittleEndian])
        assoc = ae.associate(
            "127.0.0.1",
            filled.dicom.port,
            ae_title="KAHU",
            ext_neg=[build_role(CTImageStorage, scp_role=True)],
            evt_handlers=[(evt.EVT_C_STORE, on_store)],
        )
        assert assoc.is_established
        query = _query("SERIES", SeriesInstanceUID=series.series_instance_uid)
        query.StudyInstanceUID = series.study_instance_uid
        statuses = [
            s.Status
            for s, _ in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet)
            if s
        ]
        assoc.release()
        assert statuses[-1] == 0
        assert sorted(received) == sorted(
            (ImplicitVRLittleEndian, r.sop_instance_uid) for r in stored
        )
