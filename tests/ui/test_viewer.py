"""The viewer in Chromium: a CT and the SEG a workflow derived from it, drawn as an overlay
(the canvas' pixels change when it is hidden)."""

from __future__ import annotations

import io
import re

from PIL import Image, ImageChops
from playwright.sync_api import Page, expect

from kahu.flow.cohort import RunInput
from kahu.flow.launch import launch
from tests.conftest import SYSTEM
from tests.synthetic import ct_volume
from tests.ui.conftest import PASSWORD, Site


def _segmented(site: Site) -> str:
    kahu = site.kahu
    files, _ = ct_volume(slices=12, size=32)
    [report] = kahu.ingestor.ingest_many(files)[:1]
    ct = report.series_instance_uid
    assert ct is not None
    [run] = launch(
        kahu.catalog, kahu.workflows, kahu.flow, "ct-threshold-segmentation", {},
        RunInput(series_uids=(ct,)), audit=kahu.audit, path="test",
    )  # fmt: skip
    assert kahu.flow.wait_idle(run, 120) == "succeeded"
    kahu.accounts.create_user("vic", PASSWORD)
    kahu.projects.set_member("default", "vic", "viewer")
    return ct


def _canvas(page: Page) -> Image.Image:
    return Image.open(io.BytesIO(page.locator("#viewer-canvas").screenshot())).convert("RGB")


def test_the_viewer_draws_the_segmentation_over_the_image(page: Page, site: Site) -> None:
    ct = _segmented(site)
    page.goto(f"{site.url}/viewer/{ct}")
    page.get_by_label("User name").fill("vic")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(f"/viewer/{re.escape(ct)}$"))
    page.wait_for_function(
        "window.kahuViewer && (window.kahuViewer.ready || window.kahuViewer.error)"
    )
    assert page.evaluate("window.kahuViewer.error") is None
    expect(page.locator(".legend li")).to_have_count(2)  # bone and soft tissue
    page.get_by_role("button", name="Bone").click()
    page.wait_for_timeout(300)
    with_overlay = _canvas(page)
    site.shot(page, "viewer")
    page.locator("[data-overlay-toggle='0']").uncheck()
    page.wait_for_timeout(300)
    without = _canvas(page)
    difference = ImageChops.difference(with_overlay, without).getbbox()
    assert difference is not None, "hiding the segmentation changed nothing on the canvas"
    # the image itself is drawn: the canvas is not one colour
    assert len(without.getcolors(1 << 20) or []) > 10


def test_a_drawing_is_saved_as_a_seg_of_the_series(page: Page, site: Site) -> None:
    ct = _segmented(site)
    site.kahu.projects.set_member("default", "vic", "scientist")
    page.goto(f"{site.url}/viewer/{ct}")
    page.get_by_label("User name").fill("vic")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_function(
        "window.kahuViewer && (window.kahuViewer.ready || window.kahuViewer.error)"
    )
    page.get_by_role("button", name="Axial").click()
    page.get_by_role("button", name="Draw").click()
    page.get_by_label("Label").fill("spot")
    box = page.locator("#viewer-canvas").bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x - 20, y - 20)
    page.mouse.down()
    for step in range(20):
        page.mouse.move(x - 20 + step * 2, y - 20 + step * 2)
    page.mouse.up()
    page.get_by_role("button", name="Save as a segmentation").click()
    status = page.get_by_role("status")
    expect(status).to_contain_text("Saved as segmentation series", timeout=30_000)
    site.shot(page, "viewer-drawn")
    seg_uid = page.evaluate("window.kahuViewer.saved")
    row = site.kahu.catalog.get_series(SYSTEM, seg_uid)
    assert row.modality == "SEG"
    results = [r["series_uid"] for r in site.kahu.lineage.of(ct)["results"]]
    assert seg_uid in results
    import pydicom

    [instance] = site.kahu.catalog.instances(SYSTEM, series_uid=seg_uid)
    seg = pydicom.dcmread(io.BytesIO(site.kahu.store.get(instance.blob_key)))
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == ct
    assert seg.SegmentSequence[0].SegmentLabel == "spot"
    # Explore finds it
    page.goto(f"{site.url}/explore?q=Modality:SEG")
    expect(page.locator(f'tr[data-series="{seg_uid}"]')).to_have_count(1)


def test_the_viewer_works_from_the_keyboard(page: Page, site: Site) -> None:
    """Slices, the cross and drawing without a mouse: focus moves with Tab, keys do the rest."""
    ct = _segmented(site)
    site.kahu.projects.set_member("default", "vic", "scientist")
    page.goto(f"{site.url}/viewer/{ct}")
    page.get_by_label("User name").fill("vic")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_function(
        "window.kahuViewer && (window.kahuViewer.ready || window.kahuViewer.error)"
    )

    def press(button: str) -> None:
        page.get_by_role("button", name=button, exact=True).focus()
        page.keyboard.press("Enter")

    press("Axial")
    press("Draw")
    canvas = page.locator("#viewer-canvas")
    canvas.focus()
    status = page.get_by_role("status")
    before = page.evaluate(
        "Array.from(window.kahuViewer.nv.frac2vox(window.kahuViewer.nv.scene.crosshairPos))"
    )
    page.keyboard.press("PageUp")
    page.keyboard.press("PageUp")
    expect(status).to_contain_text(f"Slice {before[2] + 3} of 12")
    for key in ("Enter", "ArrowRight", "Enter", "ArrowDown", " "):
        page.keyboard.press(key)
    assert page.evaluate("window.kahuViewer.painted") == 3
    press("Save as a segmentation")
    expect(status).to_contain_text("Saved as segmentation series", timeout=30_000)
    seg_uid = page.evaluate("window.kahuViewer.saved")
    import pydicom

    [instance] = site.kahu.catalog.instances(SYSTEM, series_uid=seg_uid)
    seg = pydicom.dcmread(io.BytesIO(site.kahu.store.get(instance.blob_key)))
    # three voxels painted on one slice: one frame of the SEG, three pixels set
    assert int(seg.pixel_array.sum()) == 3
