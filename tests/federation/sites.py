"""Real Kahu sites for the federation tests and benchmark: each a `kahu serve` process on
127.0.0.1 with its own home, port and data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kahu.actions import Actor
from kahu.actions import federation as actions
from kahu.core import Kahu
from kahu.settings import DicomSettings, FederationSettings, FlowSettings, HttpSettings, Settings
from tests import synthetic
from tests.conftest import free_port, wait_for_port
from tests.federation.proxy import RecordingProxy

CLI = Actor.cli()


@dataclass
class Site:
    name: str
    home: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    series: tuple[str, ...] = ()
    studies: tuple[str, ...] = ()
    #: more federation and HTTP settings (TLS files), for the process and for open()
    federation: dict[str, Any] = field(default_factory=dict)
    http: dict[str, Any] = field(default_factory=dict)

    def settings(self) -> Settings:
        return Settings(
            home=self.home,
            fsync=False,
            dicom=DicomSettings(enabled=False),
            flow=FlowSettings(thumbnails_on_arrival=False),
            http=HttpSettings(port=self.port, **self.http),
            federation=FederationSettings(
                site_name=self.name, poll_wait_s=5, retry_max_s=0.5, **self.federation
            ),
        )

    def open(self) -> Kahu:
        return Kahu(self.settings())

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KAHU_FSYNC": "false",
            "KAHU_FLOW__THUMBNAILS_ON_ARRIVAL": "false",
            "KAHU_FEDERATION__SITE_NAME": self.name,
            "KAHU_FEDERATION__POLL_WAIT_S": "5",
            "KAHU_FEDERATION__RETRY_MAX_S": "0.5",
            **{f"KAHU_FEDERATION__{k.upper()}": str(v) for k, v in self.federation.items()},
            **{f"KAHU_HTTP__{k.upper()}": str(v) for k, v in self.http.items()},
        }

    def start(self) -> None:
        args = [
            sys.executable,
            "-m",
            "kahu",
            "serve",
            "--home",
            str(self.home),
            "--port",
            str(self.port),
            "--dicom-port",
            str(free_port()),
        ]
        self.process = subprocess.Popen(
            args, env=self.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        assert wait_for_port(self.port), f"site {self.name} did not start"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=60)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def seed(site: Site, count: int) -> None:
    """``count`` one-slice CT series in dataset ``<name>-cohort``."""
    with site.open() as kahu:
        series, studies = [], []
        for index in range(count):
            results = kahu.ingestor.ingest_many(
                synthetic.ct_series(1, 16, patient_id=f"{site.name.upper()}{index}")
            )
            series.append(results[0].series_instance_uid)
            studies.append(results[0].study_instance_uid)
        kahu.curation.create_dataset(f"{site.name}-cohort", series=series)
        kahu.curation.create_dataset(f"{site.name}-other", series=series[:1])
    site.series, site.studies = tuple(series), tuple(studies)


def join(coordinator: Site, partner: Site, proxy: RecordingProxy) -> None:
    with coordinator.open() as kahu:
        token = actions.invite(kahu, CLI, partner.name).result["token"]
    with partner.open() as kahu:
        actions.join(kahu, CLI, proxy.url, token, "hub")
