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


def test_workflow_modules_import_lightly() -> None:
    """A task process (a forked worker, a Ray worker) imports the workflow's module: the
    operator factories must not drag in the database, the DICOM network or the imaging
    libraries (they load inside the operators that use them)."""
    import subprocess
    import sys

    import kahu.operators

    names = ", ".join(kahu.operators.__all__)
    code = (
        f"from kahu.operators import {names}\n"
        "import sys\n"
        "heavy = {'sqlalchemy', 'pynetdicom', 'highdicom', 'SimpleITK', 'fastapi', 'fsspec'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
