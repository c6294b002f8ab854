"""The search routes over HTTP: fields and their values."""

from __future__ import annotations

from tests.api.conftest import Api
from tests.conftest import sample_path


class TestRoutes:
    def test_fields_and_values_over_http(self, api: Api) -> None:
        api.kahu.ingestor.ingest(sample_path("CT_small.dcm").read_bytes())
        fields = api.client.get("/api/v1/fields", headers=api.headers()).json()
        assert {"name": "Modality", "type": "text", "series": 1} in fields
        values = api.client.get(
            "/api/v1/fields/modality/values", params={"prefix": "c"}, headers=api.headers()
        ).json()
        assert values == [{"value": "CT", "series": 1}]
        response = api.client.get("/api/v1/fields/Colour/values", headers=api.headers())
        assert response.status_code == 400
        assert "unknown field 'Colour'" in response.json()["detail"]
