from __future__ import annotations

import pydicom
import pytest

from kahu.dicom.structure import body_offset, check_complete
from kahu.errors import InvalidDicom
from tests.conftest import sample_path

WHOLE = [
    "CT_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "JPEG2000.dcm",
    "SC_rgb_jpeg.dcm",
    "UN_sequence.dcm",
    "rtplan.dcm",
    "test-SR.dcm",
    "liver.dcm",
    "emri_small_jpeg_2k_lossless.dcm",
    "waveform_ecg.dcm",
]


def _ts(path: object) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


class TestCompleteness:
    @pytest.mark.parametrize("name", WHOLE)
    def test_whole_files_pass(self, name: str) -> None:
        data = sample_path(name).read_bytes()
        check_complete(data, body_offset(data), _ts(sample_path(name)))

    @pytest.mark.parametrize("name", WHOLE)
    def test_cut_files_fail(self, name: str) -> None:
        data = sample_path(name).read_bytes()
        with pytest.raises(InvalidDicom, match="truncated"):
            check_complete(data[:-3], body_offset(data), _ts(sample_path(name)))

    @pytest.mark.parametrize(
        "name",
        ["MR_truncated.dcm", "rtplan_truncated.dcm", "emri_small_jpeg_2k_lossless_too_short.dcm"],
    )
    def test_known_truncated_files_fail(self, name: str) -> None:
        data = sample_path(name).read_bytes()
        with pytest.raises(InvalidDicom):
            check_complete(data, body_offset(data), _ts(sample_path(name)))


class TestFileMetaHeader:
    @pytest.mark.parametrize("aet", [None, "MODALITY", "ODD"])
    def test_pydicom_reads_the_header_we_write(self, aet: str | None) -> None:
        from kahu.dicom.part10 import IMPLEMENTATION_CLASS_UID, file_meta_header

        body = sample_path("CT_small.dcm").read_bytes()
        body = body[body_offset(body) :]
        data = file_meta_header("1.2.840.10008.5.1.4.1.1.2", "1.2.3.45", "1.2.840.10008.1.2.1", aet)
        ds = pydicom.dcmread(__import__("io").BytesIO(data + body))
        meta = ds.file_meta
        assert meta.MediaStorageSOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
        assert meta.MediaStorageSOPInstanceUID == "1.2.3.45"
        assert meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
        assert meta.FileMetaInformationGroupLength == body_offset(data + body) - 144
        assert meta.get("SourceApplicationEntityTitle") == aet
        assert ds.PatientName == "CompressedSamples^CT1"
