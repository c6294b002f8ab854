"""The package's public surface is small and deliberate."""

from __future__ import annotations

import kahu


def test_all_is_exactly_the_public_api() -> None:
    assert kahu.__all__ == ["Kahu", "Settings", "__version__", "create_app"]
    for name in kahu.__all__:
        assert getattr(kahu, name) is not None


def test_settings_are_passed_in_never_read_at_import(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("KAHU_HTTP__PORT", "9999")
    assert kahu.Settings().http.port == 9999
    settings = kahu.Settings(home=tmp_path, http={"port": 1234})
    app = kahu.create_app(settings)
    assert app.title == "Kahu"
    assert settings.http.port == 1234
