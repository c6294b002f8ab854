"""DICOMweb through dicomweb-client (and raw HTTP where the client hides the bytes)."""

from __future__ import annotations

import io

import pydicom
import pytest
import requests
from PIL import Image
from requests.exceptions import HTTPError

from kahu.dicomweb.multipart import parse_media_type, split_related
from tests import synthetic
from tests.conftest import SYSTEM, sample_path
from tests.dicomweb.conftest import Web
from tests.dimse.test_store import CORPUS, corpus_file

CT = sample_path("CT_small.dcm")
CT_DS = pydicom.dcmread(CT)
STUDY, SERIES, SOP = (
    str(CT_DS.StudyInstanceUID),
    str(CT_DS.SeriesInstanceUID),
    str(CT_DS.SOPInstanceUID),
)


def _import(web: Web, *names: str) -> None:
    for name in names:
        assert web.kahu.ingestor.ingest(sample_path(name).read_bytes()).status == "stored"


def _parts(response: requests.Response) -> list[tuple[dict[str, str], bytes]]:
    media = parse_media_type(response.headers["content-type"])
    return split_related(response.content, media.params["boundary"])


class TestStow:
    def test_store_instances_with_the_client(self, web: Web) -> None:
        datasets = [pydicom.dcmread(io.BytesIO(d)) for d in synthetic.ct_series(3)]
        result = web.client.store_instances(datasets)
        assert len(result.ReferencedSOPSequence) == 3
        assert "FailedSOPSequence" not in result
        assert web.kahu.catalog.counts(SYSTEM).instances == 3
        url = result.ReferencedSOPSequence[0].RetrieveURL
        assert url.startswith(web.url + "/studies/")

    def test_partial_failure_reports_each_instance(self, web: Web) -> None:
        good = CT.read_bytes()
        bad = sample_path("MR_truncated.dcm").read_bytes()
        boundary = "b0undary"
        body = (
            b"".join(
                b"--"
                + boundary.encode()
                + b"\r\nContent-Type: application/dicom\r\n\r\n"
                + d
                + b"\r\n"
                for d in (good, bad, b"not dicom")
            )
            + b"--"
            + boundary.encode()
            + b"--\r\n"
        )
        response = web.post(
            "/studies",
            data=body,
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'
            },
        )
        assert response.status_code == 202
        assert response.headers["content-type"] == "application/dicom+json"
        result = pydicom.Dataset.from_json(response.json())
        assert [i.ReferencedSOPInstanceUID for i in result.ReferencedSOPSequence] == [SOP]
        failures = result.FailedSOPSequence
        assert [int(f.FailureReason) for f in failures] == [0xC000, 0xC000]
        assert "truncated" in failures[0][0x00000902].value
        assert web.kahu.catalog.counts(SYSTEM).instances == 1

    def test_instance_of_another_study_is_refused(self, web: Web) -> None:
        with pytest.raises(HTTPError) as info:
            web.client.store_instances([CT_DS], study_instance_uid="1.2.3.4")
        assert info.value.response.status_code == 409
        failed = pydicom.Dataset.from_json(info.value.response.json()).FailedSOPSequence[0]
        assert failed.FailureReason == 0xC122
        assert web.kahu.catalog.counts(SYSTEM).instances == 0

    @pytest.mark.parametrize(
        "content_type",
        [
            "application/dicom",
            'multipart/related; type="application/dicom+json"; boundary=x',
            "text/plain",
            "application/json",
        ],
    )
    def test_wrong_content_type_is_415(self, web: Web, content_type: str) -> None:
        response = web.post("/studies", data=b"x", headers={"Content-Type": content_type})
        assert response.status_code == 415
        assert "multipart/related" in response.json()["detail"]

    def test_truncated_multipart_is_400(self, web: Web) -> None:
        response = web.post(
            "/studies",
            data=b"--x\r\nContent-Type: application/dicom\r\n\r\nab",
            headers={"Content-Type": "multipart/related; type=application/dicom; boundary=x"},
        )
        assert response.status_code == 400
        assert "truncated" in response.json()["detail"]


class TestQido:
    @pytest.fixture(autouse=True)
    def _data(self, web: Web) -> None:
        _import(web, "CT_small.dcm", "MR_small.dcm", "rtdose.dcm")

    def test_search_studies_with_wildcard(self, web: Web) -> None:
        found = web.client.search_for_studies(search_filters={"PatientName": "compressed*"})
        names = sorted(str(pydicom.Dataset.from_json(f).PatientName) for f in found)
        assert names == ["CompressedSamples^CT1", "CompressedSamples^MR1"]
        first = pydicom.Dataset.from_json(found[0])
        assert first.RetrieveURL.startswith(web.url + "/studies/")
        assert first.InstanceAvailability == "ONLINE"

    def test_series_of_a_study_and_instances_of_a_series(self, web: Web) -> None:
        [series] = web.client.search_for_series(STUDY)
        assert pydicom.Dataset.from_json(series).Modality == "CT"
        [instance] = web.client.search_for_instances(STUDY, SERIES)
        assert pydicom.Dataset.from_json(instance).SOPInstanceUID == SOP

    def test_by_tag_with_date_range_limit_and_offset(self, web: Web) -> None:
        found = web.client.search_for_series(search_filters={"00080020": "20030101-20041231"})
        assert len(found) == 3
        page = web.client.search_for_series(limit=2, offset=2)
        assert len(page) == 1

    def test_includefield_from_instance_metadata(self, web: Web) -> None:
        [series] = web.client.search_for_series(
            search_filters={"Modality": "CT"}, fields=["SliceThickness", "Manufacturer"]
        )
        ds = pydicom.Dataset.from_json(series)
        assert ds.Manufacturer == "GE MEDICAL SYSTEMS"
        assert float(ds.SliceThickness) == 5.0

    def test_includefield_all(self, web: Web) -> None:
        found = web.get("/instances", params={"SOPInstanceUID": SOP, "includefield": "all"})
        ds = pydicom.Dataset.from_json(found.json()[0], bulk_data_uri_handler=lambda *a: b"")
        assert ds.KVP == 120
        assert ds.Manufacturer == "GE MEDICAL SYSTEMS"

    def test_a_search_query_narrows_studies_series_and_instances(self, web: Web) -> None:
        """``q``: the Lucene query of /api/v1/series (docs/search.md) beside DICOM keys."""
        q = {"q": "Manufacturer:ge* AND SliceThickness:[1 TO 10] AND NOT Modality:MR"}
        [study] = web.client.search_for_studies(search_filters=q)
        assert pydicom.Dataset.from_json(study).StudyInstanceUID == STUDY
        [series] = web.client.search_for_series(search_filters=q)
        assert pydicom.Dataset.from_json(series).SeriesInstanceUID == SERIES
        [instance] = web.client.search_for_instances(search_filters=q)
        assert pydicom.Dataset.from_json(instance).SOPInstanceUID == SOP
        both = {**q, "PatientName": "CompressedSamples^CT1"}
        assert len(web.client.search_for_series(search_filters=both)) == 1
        assert web.client.search_for_series(search_filters={**q, "Modality": "RTDOSE"}) == []
        everything = web.client.search_for_series(search_filters={"q": "*"})
        assert len(everything) == 3

    @pytest.mark.parametrize(
        ("q", "message"),
        [
            ("Modality:(CT", "syntax error"),
            ("Nonsense:1", "unknown field 'Nonsense'"),
            ("x" * 5000, "longer than"),
        ],
    )
    def test_a_bad_search_query_is_400(self, web: Web, q: str, message: str) -> None:
        response = web.get("/series", params={"q": q})
        assert response.status_code == 400
        assert message in response.json()["detail"]

    def test_fuzzy_matching_matches_name_parts(self, web: Web) -> None:
        found = web.client.search_for_studies(
            search_filters={"PatientName": "CT1"}, fuzzymatching=True
        )
        assert len(found) == 1
        assert web.client.search_for_studies(search_filters={"PatientName": "CT1"}) == []

    @pytest.mark.parametrize(
        "params",
        [
            {"limit": "-1"},
            {"limit": "abc"},
            {"offset": "-5"},
            {"Colour": "red"},
            {"StudyDate": "2004xx01"},
            {"StudyInstanceUID": "1.2.x"},
            {"fuzzymatching": "maybe"},
            {"SliceThickness": "5"},
            {"includefield": "NotAKeyword"},
            {"FFFFFFFF": "1"},
        ],
    )
    def test_hostile_parameters_are_400(self, web: Web, params: dict[str, str]) -> None:
        response = web.get("/studies", params=params)
        assert response.status_code == 400, response.text
        assert response.json()["detail"]

    def test_no_token_is_401(self, web: Web) -> None:
        assert requests.get(f"{web.url}/studies", timeout=30).status_code == 401


class TestWado:
    def test_retrieve_is_byte_identical_for_the_real_corpus(self, web: Web) -> None:
        files = {name: corpus_file(name) for name in CORPUS}
        for data in files.values():
            assert web.kahu.ingestor.ingest(data).status == "stored"
        for name, data in files.items():
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            response = web.get(
                f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
                f"/instances/{ds.SOPInstanceUID}"
            )
            assert response.status_code == 200, name
            [(headers, content)] = _parts(response)
            assert content == data, name
            assert headers["content-type"].startswith("application/dicom")

    def test_retrieve_series_with_the_client(self, web: Web) -> None:
        files = synthetic.ct_series(4)
        for data in files:
            web.kahu.ingestor.ingest(data)
        first = pydicom.dcmread(io.BytesIO(files[0]))
        got = web.client.retrieve_series(str(first.StudyInstanceUID), str(first.SeriesInstanceUID))
        assert sorted(int(d.InstanceNumber) for d in got) == [1, 2, 3, 4]
        assert got[0].PixelData == first.PixelData

    def test_specific_transfer_syntax_is_not_acceptable(self, web: Web) -> None:
        _import(web, "JPEG2000.dcm")
        ds = pydicom.dcmread(sample_path("JPEG2000.dcm"), stop_before_pixels=True)
        accept = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'
        response = web.get(f"/studies/{ds.StudyInstanceUID}", headers={"Accept": accept})
        assert response.status_code == 406
        assert "served as stored" in response.json()["detail"]

    def test_metadata_comes_from_the_catalog(self, web: Web) -> None:
        _import(web, "CT_small.dcm")
        assert web.kahu.metadata.idle()
        metadata = web.client.retrieve_series_metadata(STUDY, SERIES)
        [ds] = [
            pydicom.Dataset.from_json(m, bulk_data_uri_handler=lambda *a: b"") for m in metadata
        ]
        assert ds.PatientName == "CompressedSamples^CT1"
        raw = web.get(f"/studies/{STUDY}/series/{SERIES}/metadata").json()[0]
        assert raw["7FE00010"]["BulkDataURI"] == (
            f"{web.url}/studies/{STUDY}/series/{SERIES}/instances/{SOP}/frames"
        )
        study = web.client.retrieve_study_metadata(STUDY)
        assert len(study) == 1
        instance = web.client.retrieve_instance_metadata(STUDY, SERIES, SOP)
        assert instance["00080018"]["Value"] == [SOP]

    def test_metadata_of_a_500_instance_series(self, web: Web) -> None:
        files = synthetic.ct_series(500, size=8)
        for data in files:
            web.kahu.ingestor.ingest(data)
        first = pydicom.dcmread(io.BytesIO(files[0]))
        metadata = web.client.retrieve_series_metadata(
            str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
        )
        assert len(metadata) == 500

    def test_missing_metadata_is_filled_on_demand(self, web: Web) -> None:
        web.kahu.metadata.stop()  # no background indexing: the request must fill the gap
        _import(web, "MR_small.dcm")
        ds = pydicom.dcmread(sample_path("MR_small.dcm"), stop_before_pixels=True)
        metadata = web.client.retrieve_study_metadata(str(ds.StudyInstanceUID))
        assert metadata[0]["00100020"]["Value"] == ["4MR1"]

    def test_uncompressed_frames(self, web: Web) -> None:
        _import(web, "CT_small.dcm")
        [frame] = web.client.retrieve_instance_frames(STUDY, SERIES, SOP, frame_numbers=[1])
        assert frame == CT_DS.PixelData

    def test_multiframe_frames_and_big_endian(self, web: Web) -> None:
        name = "OBXXXX1A_expb_2frame.dcm"
        _import(web, name)
        ds = pydicom.dcmread(sample_path(name))
        path = (
            f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
            f"{ds.SOPInstanceUID}/frames/2"
        )
        [(_, content)] = _parts(web.get(path))
        assert content == ds.pixel_array[1].astype(ds.pixel_array.dtype.newbyteorder("<")).tobytes()
        assert web.get(path.replace("/frames/2", "/frames/3")).status_code == 404

    def test_compressed_frames_keep_their_encoding(self, web: Web) -> None:
        name = "MR_small_jp2klossless.dcm"
        _import(web, name)
        ds = pydicom.dcmread(sample_path(name))
        path = (
            f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
            f"{ds.SOPInstanceUID}/frames/1"
        )
        response = web.get(path, headers={"Accept": 'multipart/related; type="image/jp2"'})
        [(headers, content)] = _parts(response)
        assert headers["content-type"].startswith("image/jp2")
        assert content.rstrip(b"\0") == next(
            pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1)
        ).rstrip(b"\0")
        plain = web.get(
            path, headers={"Accept": 'multipart/related; type="application/octet-stream"'}
        )
        assert plain.status_code == 406

    def test_rendered_png_jpeg_and_thumbnail(self, web: Web) -> None:
        _import(web, "CT_small.dcm")
        png = web.client.retrieve_instance_rendered(STUDY, SERIES, SOP, media_types=("image/png",))
        image = Image.open(io.BytesIO(png))
        assert image.format == "PNG"
        assert image.size == (128, 128)
        jpeg = web.get(
            f"/studies/{STUDY}/series/{SERIES}/instances/{SOP}/rendered",
            params={"window": "40,400", "viewport": "64,64"},
            headers={"Accept": "image/jpeg"},
        )
        assert Image.open(io.BytesIO(jpeg.content)).size == (64, 64)
        thumb = web.get(f"/studies/{STUDY}/series/{SERIES}/thumbnail", params={"viewport": "32,32"})
        assert thumb.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(thumb.content)).size == (32, 32)
        bad = web.get(
            f"/studies/{STUDY}/series/{SERIES}/instances/{SOP}/rendered", params={"window": "a,b"}
        )
        assert bad.status_code == 400

    @pytest.mark.parametrize(
        ("name", "size"),
        [
            ("JPEG2000.dcm", (256, 1024)),
            ("SC_rgb_jpeg_dcmtk.dcm", (100, 100)),
            ("MR_small_jpeg_ls_lossless.dcm", (64, 64)),
            ("MR_small_RLE.dcm", (64, 64)),
            ("emri_small_jpeg_2k_lossless.dcm", (64, 64)),
        ],
    )
    def test_compressed_images_render(self, web: Web, name: str, size: tuple[int, int]) -> None:
        _import(web, name)
        ds = pydicom.dcmread(sample_path(name), stop_before_pixels=True)
        base = (
            f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
            f"{ds.SOPInstanceUID}"
        )
        frames = int(ds.get("NumberOfFrames") or 1)
        response = web.get(f"{base}/frames/{frames}/rendered")
        assert response.status_code == 200, response.text
        image = Image.open(io.BytesIO(response.content))
        assert image.size == size
        low, high = image.convert("L").getextrema()
        assert low < high  # an image, not a blank

    def test_rendering_without_pixels_is_406(self, web: Web) -> None:
        _import(web, "test-SR.dcm")
        ds = pydicom.dcmread(sample_path("test-SR.dcm"))
        response = web.get(
            f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/"
            f"instances/{ds.SOPInstanceUID}/rendered"
        )
        assert response.status_code == 406

    def test_bulkdata(self, web: Web) -> None:
        _import(web, "waveform_ecg.dcm")
        ds = pydicom.dcmread(sample_path("waveform_ecg.dcm"))
        web.kahu.metadata.ensure([str(ds.SOPInstanceUID)])
        metadata = web.client.retrieve_instance_metadata(
            str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)
        )
        uri = metadata["54000100"]["Value"][0]["54001010"]["BulkDataURI"]
        assert uri.startswith(web.url)

    @pytest.mark.parametrize(
        "path",
        [
            "/studies/1.2.3",
            "/studies/1.2.3/metadata",
            f"/studies/{STUDY}/series/1.2.3",
            f"/studies/{STUDY}/series/{SERIES}/instances/1.2.3/rendered",
        ],
    )
    def test_unknown_resources_are_404(self, web: Web, path: str) -> None:
        _import(web, "CT_small.dcm")
        assert web.get(path).status_code == 404

    def test_invalid_uid_in_path_is_400(self, web: Web) -> None:
        assert web.get("/studies/1.2.abc/metadata").status_code == 400
