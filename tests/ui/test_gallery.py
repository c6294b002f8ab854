"""The gallery in Chromium: every series shows a picture, images and the typed placeholders
of what has none (SR, RT plan, PDF), and none is a broken image."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests import synthetic
from tests.conftest import sample_path
from tests.ui.conftest import PASSWORD, Site

#: CT, MR, SEG (real multi-frame), SR, RTPLAN from pydicom's test data; a PDF built in code
FILES = ["CT_small.dcm", "MR_small.dcm", "liver.dcm", "test-SR.dcm", "rtplan.dcm"]


def test_the_gallery_shows_every_series(page: Page, site: Site) -> None:
    kahu = site.kahu
    for name in FILES:
        assert kahu.ingestor.ingest(sample_path(name).read_bytes()).status == "stored"
    assert kahu.ingestor.ingest(synthetic.encapsulated_pdf()).status == "stored"
    kahu.accounts.create_user("uma", PASSWORD)
    kahu.projects.set_member("default", "uma", "scientist")

    page.goto(site.url + "/explore?view=gallery")
    page.get_by_label("User name").fill("uma")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/explore\?view=gallery$"))
    images = page.locator(".gallery img")
    expect(images).to_have_count(len(FILES) + 1)
    page.wait_for_function(
        "Array.from(document.querySelectorAll('.gallery img')).every(i => i.complete)"
    )
    broken = page.evaluate(
        "Array.from(document.querySelectorAll('.gallery img'))"
        ".filter(i => i.naturalWidth === 0).map(i => i.alt)"
    )
    assert broken == []
    sizes = page.evaluate(
        "Array.from(document.querySelectorAll('.gallery img')).map(i => i.naturalWidth)"
    )
    assert all(0 < size <= 128 for size in sizes)
    site.shot(page, "gallery-every-series")
