from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from kahu.app import create_app
from kahu.core import Kahu


@dataclass
class Api:
    client: TestClient
    kahu: Kahu
    admin_token: str
    user_token: str
    admin_password: str

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin_token}"}


@pytest.fixture
def api(make_settings) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    settings = make_settings(enabled=False)
    kahu = Kahu(settings)
    password = kahu.accounts.ensure_admin(settings.admin_password_file)
    assert password
    admin_token, _ = kahu.accounts.create_token("admin")
    kahu.accounts.create_user("alice", "correct horse battery")
    user_token, _ = kahu.accounts.create_token("alice")
    with TestClient(create_app(settings, kahu)) as client:
        yield Api(client, kahu, admin_token, user_token, password)
    kahu.stop()
