from __future__ import annotations

import pytest

from kahu.dicom import values


class TestDates:
    @pytest.mark.parametrize(
        ("raw", "iso"),
        [("20200131", "2020-01-31"), ("2020.01.31", "2020-01-31"), (" 19991231 ", "1999-12-31")],
    )
    def test_da_to_iso(self, raw: str, iso: str) -> None:
        assert values.parse_da(raw) == iso

    @pytest.mark.parametrize("raw", ["2020013", "20201301", "20200230", "abcdefgh", ""])
    def test_invalid_da_is_refused(self, raw: str) -> None:
        with pytest.raises(ValueError):
            values.parse_da(raw)


class TestTimes:
    @pytest.mark.parametrize(
        ("raw", "iso"),
        [
            ("101530", "10:15:30"),
            ("101530.25", "10:15:30.25"),
            ("1015", "10:15"),
            ("10", "10"),
            ("10:15:30", "10:15:30"),
        ],
    )
    def test_tm_keeps_given_precision(self, raw: str, iso: str) -> None:
        assert values.parse_tm(raw) == iso

    @pytest.mark.parametrize("raw", ["2460", "25", "1099", "ab"])
    def test_invalid_tm_is_refused(self, raw: str) -> None:
        with pytest.raises(ValueError):
            values.parse_tm(raw)


class TestDateTimes:
    def test_dt_with_offset_is_converted_to_utc(self) -> None:
        assert values.parse_dt("20200101101010.123+0100") == "2020-01-01T09:10:10.123000Z"

    def test_dt_with_negative_offset_crosses_midnight(self) -> None:
        assert values.parse_dt("20201231230000-0500") == "2021-01-01T04:00:00Z"

    def test_dt_without_offset_uses_default_timezone(self) -> None:
        tz = values.parse_offset("+0200")
        assert values.parse_dt("20200601120000", tz) == "2020-06-01T10:00:00Z"

    def test_dt_without_any_offset_stays_local(self) -> None:
        assert values.parse_dt("202006011200") == "2020-06-01T12:00:00"

    def test_truncated_dt_defaults_missing_components(self) -> None:
        assert values.parse_dt("2020") == "2020-01-01T00:00:00"

    @pytest.mark.parametrize("raw", ["2020-01-01", "20201301", "20200101+01"])
    def test_invalid_dt_is_refused(self, raw: str) -> None:
        with pytest.raises(ValueError):
            values.parse_dt(raw)


class TestNumbers:
    @pytest.mark.parametrize(("raw", "years"), [("045Y", 45.0), ("006M", 0.5), ("003D", 0.0082)])
    def test_age_string_to_years(self, raw: str, years: float) -> None:
        assert values.parse_as(raw) == pytest.approx(years, abs=1e-4)

    @pytest.mark.parametrize("raw", ["45Y", "045X", "ABCD", "045"])
    def test_invalid_age_is_refused(self, raw: str) -> None:
        with pytest.raises(ValueError):
            values.parse_as(raw)

    def test_ds_and_is(self) -> None:
        assert values.parse_ds(" 1.5e2 ") == 150.0
        assert values.parse_is("+12") == 12
        for bad in ("1.5", "x"):
            with pytest.raises(ValueError):
                values.parse_is(bad)
        for bad in ("nan", "inf", "abc"):
            with pytest.raises(ValueError):
                values.parse_ds(bad)
