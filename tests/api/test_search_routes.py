"""The search routes over HTTP: fields and their values."""

from __future__ import annotations

import pytest

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


class TestAggregations:
    def test_a_dashboard_in_one_call(self, api: Api) -> None:
        for name in ("CT_small.dcm", "MR_small.dcm", "rtdose.dcm"):
            api.kahu.ingestor.ingest(sample_path(name).read_bytes())
        body = {
            "q": "NOT Modality:RTDOSE",
            "facets": {
                "modality": {"type": "terms", "field": "Modality"},
                "sex": {"type": "terms", "field": "PatientSex"},
                "years": {"type": "date_histogram", "field": "StudyDate", "interval": "year"},
                "rows": {"type": "histogram", "field": "Rows", "interval": 100},
                "patients": {"type": "distinct", "of": "patients"},
            },
        }
        response = api.client.post("/api/v1/aggregations", json=body, headers=api.headers())
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["total"] == 2
        facets = result["facets"]
        assert facets["modality"]["buckets"] == [
            {"key": "CT", "count": 1},
            {"key": "MR", "count": 1},
        ]
        assert facets["modality"]["missing"] == 0
        assert facets["years"]["buckets"] == [{"key": "2004", "count": 2}]
        assert facets["rows"]["buckets"] == [{"key": 0, "count": 1}, {"key": 100, "count": 1}]
        assert facets["patients"]["count"] == 2

    @pytest.mark.parametrize(
        ("body", "status", "message"),
        [
            ({"q": "Modality:(CT"}, 400, "syntax error"),
            (
                {"facets": {"f": {"type": "histogram", "field": "Modality", "interval": 5}}},
                400,
                "needs a number field",
            ),
            (
                {"facets": {"f": {"type": "terms", "field": "Colour"}}},
                400,
                "unknown field 'Colour'",
            ),
            ({"facets": {"f": {"type": "histogram", "field": "Rows", "interval": 0}}}, 422, ""),
            ({"facets": {"f": {"type": "pie", "field": "Rows"}}}, 422, ""),
            (
                {"facets": {f"f{i}": {"type": "distinct", "of": "series"} for i in range(21)}},
                422,
                "",
            ),
            ({"q": "x" * 5000}, 422, ""),
        ],
    )
    def test_bad_requests_say_why(
        self, api: Api, body: dict[str, object], status: int, message: str
    ) -> None:
        response = api.client.post("/api/v1/aggregations", json=body, headers=api.headers())
        assert response.status_code == status, response.text
        assert message in str(response.json()["detail"])
