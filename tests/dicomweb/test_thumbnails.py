"""Every series has a thumbnail: images rendered (any photometric interpretation, multi-frame,
a segmentation's filled frame), everything else a typed placeholder naming what it is; real
files from pydicom's test data wherever they exist."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate

from kahu.catalog.records import InstanceRow
from kahu.catalog.thumbnails import make_thumbnail
from kahu.dicom.placeholder import BACKGROUND, placeholder, sop_class_name
from kahu.dicom.render import representative_frame
from tests import synthetic
from tests.conftest import sample_path
from tests.dicomweb.conftest import Web

IMAGES = [
    "CT_small.dcm",  # MONOCHROME2, signed
    "MR_small.dcm",
    "RG1_UNCI.dcm",  # MONOCHROME1 CR
    "eCT_Supplemental.dcm",  # enhanced CT, multi-frame
    "emri_small_jpeg_ls_lossless.dcm",  # multi-frame JPEG-LS
    "liver.dcm",  # a real SEG, multi-frame binary
    "examples_palette.dcm",  # PALETTE COLOR
    "SC_ybr_full_422_uncompressed.dcm",  # YBR_FULL_422
    "examples_rgb_color.dcm",
    "rtdose_rle.dcm",  # RT dose grid, RLE multi-frame
]
NO_IMAGE = ["test-SR.dcm", "reportsi.dcm", "rtplan.dcm", "waveform_ecg.dcm"]


def _thumbnail(web: Web, data: bytes, **params: str) -> Image.Image:
    result = web.kahu.ingestor.ingest(data)
    assert result.status == "stored", result
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    response = web.get(
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/thumbnail",
        headers={"Accept": "image/png"},
        params=params,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return Image.open(io.BytesIO(response.content))


def _is_placeholder(image: Image.Image) -> bool:
    return image.convert("RGB").getpixel((1, 1)) == BACKGROUND


class TestSeriesThumbnails:
    @pytest.mark.parametrize("name", IMAGES)
    def test_images_are_rendered(self, web: Web, name: str) -> None:
        image = _thumbnail(web, sample_path(name).read_bytes())
        assert max(image.size) <= 128  # fitted, never enlarged
        assert not _is_placeholder(image)
        low, high = image.convert("L").getextrema()
        assert low < high  # a picture, not a blank

    @pytest.mark.parametrize("name", NO_IMAGE)
    def test_what_has_no_image_gets_a_typed_placeholder(self, web: Web, name: str) -> None:
        image = _thumbnail(web, sample_path(name).read_bytes())
        assert image.size == (128, 128)
        assert _is_placeholder(image)

    def test_an_encapsulated_pdf_gets_a_placeholder(self, web: Web) -> None:
        image = _thumbnail(web, synthetic.encapsulated_pdf())
        assert _is_placeholder(image)

    def test_placeholders_name_their_type(self, web: Web) -> None:
        sr = _thumbnail(web, sample_path("test-SR.dcm").read_bytes())
        plan = _thumbnail(web, sample_path("rtplan.dcm").read_bytes())
        assert sr.tobytes() != plan.tobytes()

    def test_a_viewport_sizes_the_placeholder_too(self, web: Web) -> None:
        image = _thumbnail(web, sample_path("rtplan.dcm").read_bytes(), viewport="64,48")
        assert image.size == (64, 48)
        assert _is_placeholder(image)

    def test_the_instance_thumbnail_of_an_sr(self, web: Web) -> None:
        data = sample_path("test-SR.dcm").read_bytes()
        web.kahu.ingestor.ingest(data)
        ds = pydicom.dcmread(io.BytesIO(data))
        response = web.get(
            f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
            f"{ds.SOPInstanceUID}/thumbnail"
        )
        assert response.status_code == 200
        assert _is_placeholder(Image.open(io.BytesIO(response.content)))

    def test_a_multi_slice_ct_shows_its_middle_slice(self, web: Web) -> None:
        files, hu = synthetic.ct_volume(slices=9, size=64)
        results = web.kahu.ingestor.ingest_many(files)
        series = results[0].series_instance_uid
        ds = pydicom.dcmread(io.BytesIO(files[0]), stop_before_pixels=True)
        response = web.get(f"/studies/{ds.StudyInstanceUID}/series/{series}/thumbnail")
        assert response.status_code == 200
        image = np.asarray(Image.open(io.BytesIO(response.content)).convert("L"))
        # the bone sphere sits in the middle slices: the thumbnail shows bright bone
        assert image.max() == 255
        assert (hu[4] == 700).any()

    def test_jpeg_thumbnails(self, web: Web) -> None:
        data = sample_path("rtplan.dcm").read_bytes()
        web.kahu.ingestor.ingest(data)
        ds = pydicom.dcmread(io.BytesIO(data))
        response = web.get(
            f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/thumbnail",
            headers={"Accept": "image/jpeg"},
        )
        assert response.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(response.content)).format == "JPEG"

    def test_an_unacceptable_type_is_still_406(self, web: Web) -> None:
        data = sample_path("rtplan.dcm").read_bytes()
        web.kahu.ingestor.ingest(data)
        ds = pydicom.dcmread(io.BytesIO(data))
        response = web.get(
            f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/thumbnail",
            headers={"Accept": "application/dicom"},
        )
        assert response.status_code == 406


class TestMaking:
    def test_a_segmentation_shows_its_filled_frame(self) -> None:
        ds = pydicom.dcmread(sample_path("liver.dcm"))
        frame = representative_frame(ds)
        filled = np.count_nonzero(ds.pixel_array.reshape(int(ds.NumberOfFrames), -1), axis=1)
        assert filled[frame - 1] == filled.max() > 0

    def test_a_multi_frame_image_shows_its_middle_frame(self) -> None:
        ds = pydicom.dcmread(sample_path("emri_small_jpeg_ls_lossless.dcm"))
        assert representative_frame(ds) == int(ds.NumberOfFrames) // 2 + 1

    def test_an_undecodable_image_gets_a_placeholder(self) -> None:
        ds = pydicom.dcmread(sample_path("CT_small.dcm"))
        ds.PixelData = encapsulate([ds.PixelData])
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no decoder
        out = io.BytesIO()
        ds.save_as(out)
        row = _row(sop_class=str(ds.SOPClassUID))
        picture, shows = make_thumbnail([row], lambda _: out.getvalue(), lambda: "CT")
        assert shows == "placeholder"
        assert _is_placeholder(Image.open(io.BytesIO(picture)))

    def test_sop_class_names(self) -> None:
        assert sop_class_name("1.2.840.10008.5.1.4.1.1.88.33") == "Comprehensive SR"
        assert sop_class_name("1.2.840.10008.5.1.4.1.1.481.5") == "RT Plan"
        assert sop_class_name(synthetic.PRIVATE_CLASS) == "private class"
        assert sop_class_name("") == "unknown class"

    def test_placeholders_differ_by_modality_and_class(self) -> None:
        sr = placeholder("SR", "1.2.840.10008.5.1.4.1.1.88.33")
        doc = placeholder("DOC", synthetic.ENCAPSULATED_PDF)
        ecg = placeholder("ECG", "1.2.840.10008.5.1.4.1.1.9.1.1")
        assert len({sr, doc, ecg}) == 3


def _row(*, sop_class: str) -> InstanceRow:
    return InstanceRow(
        sop_instance_uid="1.2.3.4",
        sop_class_uid=sop_class,
        series_instance_uid="1.2.3",
        study_instance_uid="1.2",
        transfer_syntax_uid="1.2.840.10008.1.2.4.100",
        blob_key="x",
        size_bytes=1,
        sha256="",
        instance_number=1,
        number_of_frames=None,
        rows=128,
        columns=128,
    )
