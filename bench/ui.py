"""The Explore page with 100,000 series, measured in the browser: the first meaningful render
(navigation until the results table and the facets are on screen) and a facet click until
the updated results are shown. Headless Chromium (Debian's) driven by Playwright against Kahu
served by uvicorn; the series are the IDC index's (as :mod:`bench.search`).

Targets: first render < 1 s, facet click to updated results < 500 ms (p50).
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from tests.ui.conftest import CHROMIUM_ARGS

from bench.search import _rows, parquet_path, series_of
from kahu.app import create_app
from kahu.core import Kahu
from kahu.settings import Settings

PASSWORD = "a long enough password"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(count: int = 100_000, runs: int = 10, parquet: Path | None = None) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    rows = _rows(parquet or parquet_path(), count)
    with tempfile.TemporaryDirectory(prefix="kahu-bench-ui-") as home:
        settings = Settings(home=Path(home))
        settings.dicom.enabled = False
        kahu = Kahu(settings)
        for offset in range(0, len(rows), 5000):
            kahu.catalog.add_series([series_of(r) for r in rows[offset : offset + 5000]])
        kahu.accounts.create_user("bench", PASSWORD)
        kahu.projects.set_member("default", "bench", "viewer")
        assert kahu.search_index is not None
        kahu.search_index.current()
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings, kahu), host="127.0.0.1", port=port, log_level="warning"
            )
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://localhost:{port}"
        first: list[float] = []
        click: list[float] = []
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.goto(url + "/login")
                page.fill("#username", "bench")
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(url + "/")
                for _ in range(runs + 1):
                    start = time.perf_counter()
                    page.goto(url + "/explore")
                    page.wait_for_selector("tr[data-series]")
                    page.wait_for_selector('[data-field="Modality"] a.include')
                    first.append(time.perf_counter() - start)
                    before = page.inner_text("[data-total]")
                    link = page.locator('[data-field="Modality"] a.include').nth(1)
                    start = time.perf_counter()
                    link.click()
                    page.wait_for_function(
                        "(before) => { const t = document.querySelector('[data-total]');"
                        " return t && t.textContent !== before }",
                        arg=before,
                    )
                    click.append(time.perf_counter() - start)
                browser.close()
        finally:
            server.should_exit = True
            thread.join(10)
            kahu.stop()
    first, click = first[1:], click[1:]  # the first visit warms the caches
    return {
        "series": len(rows),
        "first render p50 ms": round(statistics.median(first) * 1000, 1),
        "first render max ms": round(max(first) * 1000, 1),
        "facet click p50 ms": round(statistics.median(click) * 1000, 1),
        "facet click max ms": round(max(click) * 1000, 1),
    }


def run(count: int = 100_000, runs: int = 10, parquet: Path | None = None) -> list[dict[str, Any]]:
    figures = measure(count, runs, parquet)
    return [
        {"measure": "first meaningful render", "target": "< 1000 ms",
         "p50 ms": figures["first render p50 ms"], "max ms": figures["first render max ms"],
         "series": figures["series"]},
        {"measure": "facet click to updated results", "target": "< 500 ms",
         "p50 ms": figures["facet click p50 ms"], "max ms": figures["facet click max ms"],
         "series": figures["series"]},
    ]  # fmt: skip
