from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import uvicorn
from dicomweb_client.api import DICOMwebClient

from kahu.app import create_app
from kahu.core import Kahu
from tests.conftest import free_port


@dataclass
class Web:
    kahu: Kahu
    url: str
    token: str
    client: DICOMwebClient

    def get(self, path: str, **kwargs: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return requests.get(f"{self.url}{path}", headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return requests.post(f"{self.url}{path}", headers=headers, timeout=60, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def web(make_settings) -> Iterator[Web]:  # type: ignore[no-untyped-def]
    """Kahu behind a real uvicorn server on loopback, and an authenticated dicomweb-client."""
    port = free_port()
    settings = make_settings(enabled=False)
    settings.http.public_url = f"http://127.0.0.1:{port}"
    kahu = Kahu(settings)
    kahu.accounts.create_user("reader", "a long enough password")
    kahu.projects.set_member("default", "reader", "scientist")
    token, _ = kahu.accounts.create_token("reader")
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, kahu), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    url = f"http://127.0.0.1:{port}/dicomweb"
    yield Web(kahu, url, token, DICOMwebClient(url=url, session=session))
    session.close()
    server.should_exit = True
    thread.join(timeout=30)
    kahu.stop()
