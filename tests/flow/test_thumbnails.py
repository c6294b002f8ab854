"""Thumbnails on arrival: every completed series gets a run of series-thumbnails (the
built-in rule), whose PNG WADO-RS then serves; series without pixels get the typed placeholder."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from kahu.app import create_app
from kahu.catalog.thumbnails import thumbnail_key
from kahu.core import Kahu
from kahu.dicom.placeholder import BACKGROUND
from kahu.errors import NotFound
from tests.conftest import SYSTEM
from tests.flow.conftest import flow_settings, start_kahu
from tests.synthetic import ct_volume, encapsulated_pdf


@pytest.fixture
def thumbnail_kahu(make_settings: Any) -> Iterator[Kahu]:
    instance = start_kahu(flow_settings(make_settings, thumbnails_on_arrival=True))
    yield instance
    instance.stop()


def _finished_runs(kahu: Kahu, count: int) -> list[Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        runs = kahu.runs.runs()
        if len(runs) >= count and all(r.state == "succeeded" for r in runs):
            return runs
        time.sleep(0.1)
    raise AssertionError(f"runs did not finish: {kahu.runs.runs()}")


def test_arriving_series_get_thumbnails_served_by_wado(thumbnail_kahu: Kahu) -> None:
    files, _ = ct_volume(slices=6, size=300)
    [ct] = {r.series_instance_uid for r in thumbnail_kahu.ingestor.ingest_many(files)}
    [pdf] = thumbnail_kahu.ingestor.ingest_many([encapsulated_pdf()])
    assert ct is not None
    assert pdf.series_instance_uid is not None
    runs = _finished_runs(thumbnail_kahu, 2)
    assert {r.workflow for r in runs} == {"series-thumbnails"}
    assert {r.trigger for r in runs} == {"rule:builtin:thumbnails-on-arrival"}

    png = thumbnail_kahu.store.get(thumbnail_key(ct))
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert max(image.size) == 128
    # a PDF has no pixels: its thumbnail is the typed placeholder, stored alike
    placeholder = Image.open(
        io.BytesIO(thumbnail_kahu.store.get(thumbnail_key(pdf.series_instance_uid)))
    )
    assert placeholder.size == (128, 128)
    assert placeholder.convert("RGB").getpixel((1, 1)) == BACKGROUND

    settings = thumbnail_kahu.settings
    thumbnail_kahu.accounts.ensure_admin(settings.admin_password_file)
    token, _ = thumbnail_kahu.accounts.create_token("admin")
    study = thumbnail_kahu.catalog.get_series(SYSTEM, ct).document["StudyInstanceUID"]
    with TestClient(create_app(settings, thumbnail_kahu)) as client:
        served = client.get(
            f"/dicomweb/studies/{study}/series/{ct}/thumbnail",
            headers={"Authorization": f"Bearer {token}", "Accept": "image/png"},
        )
    assert served.status_code == 200
    assert served.content == png

    thumbnail_kahu.ingestor.delete_series(ct)
    with pytest.raises(NotFound):
        thumbnail_kahu.store.get(thumbnail_key(ct))
