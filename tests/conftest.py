"""Shared fixtures: real test files, settings in a temporary home, both catalog backends."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom.data
import pytest
from fastapi.testclient import TestClient

from kahu.app import create_app
from kahu.catalog.scope import SeriesScope
from kahu.core import Kahu
from kahu.settings import DicomSettings, Settings
from tests.api.conftest import Api
from tests.postgres import PostgresCluster

#: every series, for tests that look at the catalog as the system does
SYSTEM = SeriesScope.system("tests")

TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"

# runs of its own on every arriving series would disturb what tests count (servers started
# as processes inherit it); tests/flow/test_thumbnails.py switches it on
os.environ.setdefault("KAHU_FLOW__THUMBNAILS_ON_ARRIVAL", "false")


def sample_path(name: str) -> Path:
    """A file from pydicom's bundled test files or from pydicom-data."""
    path = TEST_FILES / name
    if path.exists():
        return path
    return Path(pydicom.data.get_testdata_file(name, read=False))  # type: ignore[arg-type]


def dataset_counts(kahu: Kahu) -> list[tuple[str, str, int]]:
    """(name, origin, series count) of every dataset."""
    return [(d.name, d.origin, d.series_count) for d in kahu.curation.datasets()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60) -> bool:
    """Whether something listens on ``port`` on loopback within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return ""
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    return cluster.new_database()


@pytest.fixture
def make_settings(tmp_path: Path) -> Iterator[object]:
    counter = iter(range(1000))

    def make(database_url: str = "", **dicom: object) -> Settings:
        home = tmp_path / f"home{next(counter)}"
        return Settings(
            home=home,
            database_url=database_url,
            dicom=DicomSettings(
                port=free_port(), host="127.0.0.1", series_quiet_seconds=0.3, **dicom
            ),  # type: ignore[arg-type]
        )

    return make


@pytest.fixture
def kahu(make_settings, database_url: str) -> Iterator[Kahu]:  # type: ignore[no-untyped-def]
    """A Kahu instance on each backend, DIMSE server not started."""
    instance = Kahu(make_settings(database_url))
    yield instance
    instance.stop()


@pytest.fixture
def sqlite_kahu(make_settings) -> Iterator[Kahu]:  # type: ignore[no-untyped-def]
    instance = Kahu(make_settings())
    yield instance
    instance.stop()


@pytest.fixture
def running_kahu(make_settings) -> Iterator[Kahu]:  # type: ignore[no-untyped-def]
    """SQLite-backed Kahu with its DIMSE server listening on a free loopback port."""
    instance = Kahu(make_settings())
    instance.start()
    yield instance
    instance.stop()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("KAHU_TEST", "1")


def dcmtk_tool(name: str) -> str:
    """dcmtk's own program: pynetdicom installs apps of the same names (getscu, findscu, ...)
    into the virtual environment, which come first on PATH once it is activated."""
    for folder in ("/usr/bin", "/usr/local/bin"):
        if (Path(folder) / name).is_file():
            return str(Path(folder) / name)
    return name


@pytest.fixture(scope="session")
def dcmtk() -> None:
    if shutil.which("storescu") is None:
        pytest.fail("dcmtk is not installed: run `make test`, which installs it")


@pytest.fixture
def api(make_settings) -> Iterator[Api]:  # type: ignore[no-untyped-def]
    settings = make_settings(enabled=False)
    kahu = Kahu(settings)
    password = kahu.accounts.ensure_admin(settings.admin_password_file)
    assert password
    admin_token, _ = kahu.accounts.create_token("admin")
    kahu.accounts.create_user("alice", "correct horse battery")
    kahu.projects.set_member("default", "alice", "scientist")
    user_token, _ = kahu.accounts.create_token("alice")
    with TestClient(create_app(settings, kahu)) as client:
        yield Api(client, kahu, admin_token, user_token, password)
    kahu.stop()
