from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def dcmtk() -> None:
    if shutil.which("storescu") is None:
        pytest.fail("dcmtk is not installed: run `make test`, which installs it")
