from __future__ import annotations

from dataclasses import dataclass

from fastapi.testclient import TestClient

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
