"""C-ECHO and C-STORE over real associations: pynetdicom and dcmtk's storescu/echoscu."""

from __future__ import annotations

import io
import logging
import subprocess
import threading
from collections.abc import Iterator

import pydicom
import pytest
from pydicom.uid import generate_uid

from kahu.core import Kahu
from kahu.dicom.structure import body_offset
from tests import synthetic
from tests.conftest import SYSTEM, dataset_counts, dcmtk_tool, sample_path
from tests.dimse import scu

#: Real files covering the storage classes and transfer syntaxes the issue names.
CORPUS = [
    "CT_small.dcm",
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "JPEG2000.dcm",
    "MR_small_jp2klossless.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "JPEG-lossy.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "rtdose.dcm",
    "rtplan.dcm",
    "test-SR.dcm",
    "waveform_ecg.dcm",
    "image_dfl.dcm",
    "liver.dcm",
    "emri_small.dcm",
    "eCT_Supplemental.dcm",
    "OBXXXX1A_rle_2frame.dcm",
    "examples_ybr_color.dcm",
    "693_J2KR.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm",
]
SYNTHETIC = {
    "encapsulated PDF": synthetic.encapsulated_pdf,
    "key object selection": synthetic.key_object,
    "presentation state": synthetic.presentation_state,
    "private SOP class": synthetic.private_class,
}


#: Variants of one SOP instance in other transfer syntaxes; renamed so each is a new instance.
VARIANTS = {
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
}


@pytest.fixture(params=["kahu receiver", "pynetdicom"])
def running_kahu(request: pytest.FixtureRequest, make_settings) -> Iterator[Kahu]:  # type: ignore[no-untyped-def]
    """Each test here runs through both receive paths: Kahu's loop and pynetdicom's."""
    instance = Kahu(make_settings(storage_receiver=request.param == "kahu receiver"))
    instance.start()
    yield instance
    instance.stop()


def corpus_file(name: str) -> bytes:
    if name not in VARIANTS:
        return sample_path(name).read_bytes()
    ds = pydicom.dcmread(sample_path(name))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def _body(data: bytes) -> bytes:
    return data[body_offset(data) :]


def _stored(kahu: Kahu, sop_uid: str) -> bytes:
    [row] = kahu.catalog.instances(SYSTEM, sop_uid=sop_uid)
    return kahu.store.get(row.blob_key)


class TestEcho:
    def test_pynetdicom_echo(self, running_kahu: Kahu) -> None:
        assert scu.echo(running_kahu.dicom.port) == 0

    def test_echoscu(self, running_kahu: Kahu, dcmtk: None) -> None:
        subprocess.run(
            [dcmtk_tool("echoscu"), "-aec", "KAHU", "127.0.0.1", str(running_kahu.dicom.port)],
            check=True,
            timeout=30,
        )


class TestStore:
    def test_real_corpus_is_stored_with_identical_data_sets(self, running_kahu: Kahu) -> None:
        files = [corpus_file(n) for n in CORPUS]
        statuses = scu.store(running_kahu.dicom.port, files)
        assert statuses == [0] * len(files)
        assert running_kahu.catalog.counts(SYSTEM).instances == len(CORPUS)
        for name, data in zip(CORPUS, files, strict=True):
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            stored = _stored(running_kahu, str(ds.SOPInstanceUID))
            assert _body(stored) == _body(data), name
            meta = pydicom.dcmread(
                running_kahu.store.local_path(  # type: ignore[arg-type]
                    running_kahu.catalog.instances(SYSTEM, sop_uid=str(ds.SOPInstanceUID))[
                        0
                    ].blob_key
                )
            )
            assert meta.file_meta.TransferSyntaxUID == ds.file_meta.TransferSyntaxUID, name

    @pytest.mark.parametrize("kind", list(SYNTHETIC))
    def test_other_storage_classes_are_accepted(self, running_kahu: Kahu, kind: str) -> None:
        data = SYNTHETIC[kind]()
        assert scu.store(running_kahu.dicom.port, [data]) == [0]
        sop = str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID)
        assert _body(_stored(running_kahu, sop)) == _body(data)

    def test_storescu_to_an_ae_title_fills_that_dataset(
        self, running_kahu: Kahu, dcmtk: None
    ) -> None:
        names = ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm", "test-SR.dcm", "waveform_ecg.dcm"]
        subprocess.run(
            [
                dcmtk_tool("storescu"),
                "-aet",
                "MODALITY",
                "-aec",
                "STUDY1",
                "127.0.0.1",
                str(running_kahu.dicom.port),
                *(str(sample_path(n)) for n in names),
            ],
            check=True,
            timeout=60,
            capture_output=True,
        )
        assert dataset_counts(running_kahu) == [("STUDY1", "ae", 5)]
        rows, total = running_kahu.catalog.list_series(SYSTEM, dataset="STUDY1")
        assert total == 5
        assert {r.modality for r in rows} == {"CT", "MR", "RTDOSE", "SR", "ECG"}

    def test_storescu_sends_jpeg2000_without_transcoding(
        self, running_kahu: Kahu, dcmtk: None
    ) -> None:
        path = sample_path("MR_small_jp2klossless.dcm")
        subprocess.run(
            [dcmtk_tool("storescu"), "-xv", "127.0.0.1", str(running_kahu.dicom.port), str(path)],
            check=True,
            timeout=60,
            capture_output=True,
        )
        sent = pydicom.dcmread(path)
        stored = pydicom.dcmread(io.BytesIO(_stored(running_kahu, str(sent.SOPInstanceUID))))
        assert stored.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
        assert stored.PixelData == sent.PixelData

    def test_storescu_in_small_pdus_stores_the_data_set_as_sent(
        self, running_kahu: Kahu, dcmtk: None
    ) -> None:
        data = synthetic.ct_series(1, size=128)[0]  # 32 kB of pixels: eight 4 kB PDUs at least
        path = running_kahu.settings.home / "small-pdus.dcm"
        path.write_bytes(data)
        subprocess.run(
            [
                dcmtk_tool("storescu"),
                "--max-send-pdu",
                "4096",
                "127.0.0.1",
                str(running_kahu.dicom.port),
                path,
            ],
            check=True,
            timeout=60,
            capture_output=True,
        )
        uid = str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID)
        assert _body(_stored(running_kahu, uid)) == _body(data)

    def test_own_ae_title_adds_no_dataset(self, running_kahu: Kahu) -> None:
        scu.store(running_kahu.dicom.port, [sample_path("CT_small.dcm").read_bytes()])
        assert dataset_counts(running_kahu) == []

    def test_store_twice_answers_success_and_keeps_one(self, running_kahu: Kahu) -> None:
        data = sample_path("CT_small.dcm").read_bytes()
        assert scu.store(running_kahu.dicom.port, [data, data]) == [0, 0]
        assert running_kahu.catalog.counts(SYSTEM).instances == 1

    def test_invalid_uid_gets_a_failure_status_and_stores_nothing(self, running_kahu: Kahu) -> None:
        ds = pydicom.dcmread(sample_path("CT_small.dcm"))
        ds.SeriesInstanceUID = "1.2.840.abc"
        status = scu.store(running_kahu.dicom.port, [synthetic.to_bytes(ds)])
        assert status == [0xC000]
        assert running_kahu.catalog.counts(SYSTEM).instances == 0
        assert list(running_kahu.store.keys()) == []

    def test_eight_concurrent_associations(self, running_kahu: Kahu) -> None:
        series = [synthetic.ct_series(10, patient_id=f"P{i}") for i in range(8)]
        results: dict[int, list[int]] = {}

        def send(index: int) -> None:
            results[index] = scu.store(
                running_kahu.dicom.port, series[index], called=f"CONC{index}"
            )

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert all(results[i] == [0] * 10 for i in range(8))
        counts = running_kahu.catalog.counts(SYSTEM)
        assert (counts.patients, counts.series, counts.instances) == (8, 8, 80)
        assert len(dataset_counts(running_kahu)) == 8


class TestCallingAeTitles:
    def test_unlisted_calling_ae_title_is_rejected(self, make_settings, caplog) -> None:  # type: ignore[no-untyped-def]
        caplog.set_level(logging.INFO, logger="kahu.dimse")
        kahu = Kahu(make_settings(accepted_calling_aets=["PACS"]))
        kahu.start()
        try:
            data = [synthetic.ct_series(1)[0]]
            from pynetdicom import build_context
            from pynetdicom.sop_class import Verification

            assoc = scu.associate(
                kahu.dicom.port, [build_context(Verification)], calling="INTRUDER"
            )
            assert assoc.is_rejected
            assoc.dul.socket.close()
            assert scu.store(kahu.dicom.port, data, calling="PACS") == [0]
        finally:
            kahu.stop()
        # one line per association and outcome, from Kahu (pynetdicom's per-message log is off)
        lines = [r.getMessage() for r in caplog.records if r.name == "kahu.dimse.handlers"]
        assert any(m.startswith("association rejected: INTRUDER at 127.0.0.1") for m in lines)
        assert any(m.startswith("association accepted: PACS") for m in lines)
        assert any(m.startswith("association released: PACS") for m in lines)


def test_generate_uid_is_valid() -> None:
    from kahu.dicom.uids import is_valid_uid

    assert is_valid_uid(generate_uid())
