"""The web interface in a real browser: Kahu served by uvicorn on a loopback port, driven by
Playwright in Debian's headless Chromium (``make test`` installs it; no browser download).
Screenshots of each page go to ``test-artifacts/ui/``."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from kahu.app import create_app
from kahu.core import Kahu
from tests.conftest import free_port, wait_for_port

ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "ui"
PASSWORD = "a long enough password"
#: as the machine's own check starts it: no sandbox as root, no calls home
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("Chromium is not installed: run `make test`, which installs it")
    return {**browser_type_launch_args, "executable_path": chromium, "args": CHROMIUM_ARGS}


@dataclass
class Site:
    url: str
    kahu: Kahu

    def shot(self, page: Any, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def site(make_settings) -> Iterator[Site]:  # type: ignore[no-untyped-def]
    settings = make_settings(enabled=False)
    kahu = Kahu(settings)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, kahu), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_for_port(port, 30)
        yield Site(f"http://localhost:{port}", kahu)
    finally:
        server.should_exit = True
        thread.join(10)
        kahu.stop()
