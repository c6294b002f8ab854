"""The common path end to end, as the issue names it: log in, search, filter by a facet, make
a dataset, launch the example segmentation workflow on it, watch it finish, open the series
and the viewer, see the overlay, draw a segmentation, and find the new SEG. Screenshots of
each page go to test-artifacts/ui/journey-*.png."""

from __future__ import annotations

import io
import re

from PIL import Image, ImageChops
from playwright.sync_api import Page, expect

from tests.synthetic import ct_series, ct_volume
from tests.ui.conftest import PASSWORD, Site


def test_the_common_path(page: Page, site: Site) -> None:
    kahu = site.kahu
    for patient in ("JOURNEY-1", "JOURNEY-2"):
        kahu.ingestor.ingest_many(ct_volume(slices=10, size=24, patient_id=patient)[0])
    kahu.ingestor.ingest_many(ct_series(2, 8, patient_id="OTHER"))  # a scout-like decoy
    kahu.accounts.create_user("sam", PASSWORD)
    kahu.projects.set_member("default", "sam", "scientist")

    page.goto(site.url + "/")
    page.get_by_label("User name").fill("sam")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator('[data-count="series"]')).to_have_text("3")
    site.shot(page, "journey-home")

    page.get_by_role("link", name="Explore").click()
    total = page.locator("[data-total]")
    page.get_by_label(re.compile("^Query")).fill("SeriesDescription:*volume*")
    page.get_by_role("button", name="Search").click()
    expect(total).to_have_text("2")
    page.get_by_label(re.compile("^Query")).fill("")
    page.get_by_role("button", name="Search").click()
    expect(total).to_have_text("3")
    page.locator('[data-field="Modality"] a.include', has_text="CT").click()
    expect(page.locator(".chip")).to_have_text(re.compile("Modality: CT"))
    page.get_by_label(re.compile("^Query")).fill("SeriesDescription:*volume*")
    page.get_by_role("button", name="Search").click()
    expect(total).to_have_text("2")
    page.get_by_label("Name").fill("journey")
    page.get_by_role("button", name="Save the query").click()
    expect(page.get_by_role("status")).to_have_text("Dataset journey saved.")
    site.shot(page, "journey-explore")

    page.get_by_role("link", name="Workflows").click()
    page.get_by_role("link", name=re.compile("threshold", re.IGNORECASE)).click()
    page.get_by_label("Dataset").select_option("journey")
    page.get_by_role("button", name="Start").click()
    row = page.locator("tr[data-run]").first
    expect(row.locator("[data-state]")).to_have_text("succeeded", timeout=120_000)
    site.shot(page, "journey-runs")
    # the run's page: each series of the cohort with its tasks done, then each task
    row.locator("td a").first.click()
    series_rows = page.locator("tr[data-progress]")
    expect(series_rows).to_have_count(2)
    for index in range(2):
        expect(series_rows.nth(index)).to_contain_text("succeeded")
        expect(series_rows.nth(index)).to_contain_text(re.compile(r"(\d+) of \1"))
    site.shot(page, "journey-run")

    page.get_by_role("link", name="Explore").click()
    page.get_by_label(re.compile("^Query")).fill("PatientID:JOURNEY-1 AND Modality:CT")
    page.get_by_role("button", name="Search").click()
    expect(total).to_have_text("1")
    page.locator("tr[data-series] td a").first.click()  # the series page
    expect(page.get_by_role("heading", name="Lineage")).to_be_visible()
    expect(page.locator("text=Results derived from it")).to_be_visible()
    page.get_by_label("Filter").fill("PatientID")
    expect(page.locator("#metadata tbody tr:visible")).to_have_count(1)
    site.shot(page, "journey-series")

    page.get_by_role("link", name="Open in the viewer").click()
    page.wait_for_function(
        "window.kahuViewer && (window.kahuViewer.ready || window.kahuViewer.error)"
    )
    assert page.evaluate("window.kahuViewer.error") is None
    canvas = page.locator("#viewer-canvas")
    with_overlay = Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")
    page.locator("[data-overlay-toggle='0']").uncheck()
    page.wait_for_timeout(300)
    without = Image.open(io.BytesIO(canvas.screenshot())).convert("RGB")
    assert ImageChops.difference(with_overlay, without).getbbox() is not None
    page.locator("[data-overlay-toggle='0']").check()
    # the workflow's structured report: its measurements beside the image
    report = page.locator("[data-report]")
    expect(report.locator("caption")).to_contain_text("Threshold volumes")
    expect(report.locator("tbody tr", has_text="Volume").first).to_contain_text("ml")
    site.shot(page, "journey-viewer")

    page.get_by_role("button", name="Axial").click()
    page.get_by_role("button", name="Draw").click()
    box = canvas.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for step in range(15):
        page.mouse.move(x + step * 2, y + step)
    page.mouse.up()
    page.get_by_role("button", name="Save as a segmentation").click()
    expect(page.get_by_role("status")).to_contain_text("Saved as segmentation series")
    seg_uid = page.evaluate("window.kahuViewer.saved")
    site.shot(page, "journey-drawn")

    page.goto(site.url + "/explore?q=Modality:SEG")
    expect(page.locator(f'tr[data-series="{seg_uid}"]')).to_have_count(1)
    expect(total).to_have_text("3")  # the workflow's two SEGs and the drawing
    site.shot(page, "journey-found")
