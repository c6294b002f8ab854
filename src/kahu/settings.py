"""Kahu's settings, read from ``KAHU_*`` environment variables and passed in explicitly.

Nothing here is built at import time: ``create_app(settings)`` and the CLI construct a
:class:`Settings` and hand it down, so tests can run several instances side by side.

Environment variables use ``__`` for nested sections, e.g. ``KAHU_DICOM__PORT=11112``,
``KAHU_HTTP__PORT=8080``, ``KAHU_DATABASE_URL=postgresql+psycopg://...``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from kahu.dicom.uids import validate_ae_title


class HttpSettings(BaseModel):
    """The HTTP server (REST API, DICOMweb, web pages)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    #: The URL clients reach Kahu at (behind a proxy, or for clients that send a bare Host
    #: header); used in RetrieveURL and BulkDataURI. Empty: derived from each request.
    public_url: str = ""
    #: Browser sessions (POST /api/v1/auth/session) last this long.
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    #: Session cookies carry the Secure attribute (sent over HTTPS only; browsers treat
    #: http://localhost as secure too). Turn off only for plain HTTP on another host.
    secure_cookies: bool = True
    #: The viewer's volumes (series as NIfTI) are kept in ``<home>/cache/volumes`` up to
    #: this size; the least recently used go first.
    volume_cache_mb: int = Field(default=2048, ge=0)
    #: Serve HTTPS with this certificate (PEM, the chain after it) and key; unset: plain HTTP
    #: (put a TLS proxy in front, or set these, before the site is reached from elsewhere).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: Ask every client for a certificate signed by these CAs (mutual TLS, e.g. for a
    #: coordinator whose partners show client certificates); needs ``tls_cert``.
    tls_client_ca: Path | None = None

    @model_validator(mode="after")
    def _check_tls(self) -> HttpSettings:
        if (self.tls_key or self.tls_client_ca) and self.tls_cert is None:
            raise ValueError("tls_key and tls_client_ca need tls_cert")
        return self

    @field_validator("public_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/\s]+(/[^\s]*)?$", value):
            raise ValueError(f"public_url must be an http(s) URL, not {value!r}")
        return value.rstrip("/")


class DicomSettings(BaseModel):
    """The DIMSE server (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET)."""

    enabled: bool = True
    host: str = "0.0.0.0"  # noqa: S104 - a DICOM node must be reachable by the PACS
    port: int = Field(default=11112, ge=0, le=65535)
    ae_title: str = "KAHU"
    #: Calling AE titles allowed to associate; empty means any.
    accepted_calling_aets: list[str] = Field(default_factory=list)
    #: Called AE titles besides our own become dataset names unless this is False.
    called_aet_is_dataset: bool = True
    max_associations: int = Field(default=16, ge=1)
    #: Seconds without a new instance after which a series counts as complete.
    series_quiet_seconds: float = Field(default=10.0, gt=0)
    network_timeout: float = Field(default=60.0, gt=0)
    #: Serve associations that only store (and verify) with Kahu's own receive loop, several
    #: times cheaper per instance than pynetdicom's; False leaves every association to
    #: pynetdicom (query/retrieve associations always go there).
    storage_receiver: bool = True

    @field_validator("ae_title")
    @classmethod
    def _check_aet(cls, value: str) -> str:
        return validate_ae_title(value)

    @field_validator("accepted_calling_aets")
    @classmethod
    def _check_aets(cls, value: list[str]) -> list[str]:
        return [validate_ae_title(v) for v in value]


class ImportSettings(BaseModel):
    """Bounds on archives received by upload or import (zip bombs)."""

    max_archive_bytes: int = Field(default=20 * 1024**3, gt=0)
    max_member_bytes: int = Field(default=4 * 1024**3, gt=0)
    max_compression_ratio: float = Field(default=200.0, gt=1)
    max_members: int = Field(default=200_000, gt=0)


class ModelSettings(BaseModel):
    """``KAHU_MODELS__*``: bounds on a model archive or folder being installed."""

    max_bytes: int = Field(default=64 * 1024**3, gt=0)
    max_files: int = Field(default=200_000, gt=0)
    max_compression_ratio: float = Field(default=200.0, gt=1)


class SearchSettings(BaseModel):
    """``KAHU_SEARCH__*``."""

    #: Keep the searched fields of every series in memory (about 100 bytes a series) so that
    #: counts, facets and first pages take milliseconds at a million series; False leaves
    #: every search to SQL (same results, slower at scale).
    column_index: bool = True


class FlowSettings(BaseModel):
    """``KAHU_FLOW__*``: the workflow engine."""

    enabled: bool = True
    #: ``local`` processes on this machine, or ``ray`` (tasks on a Ray cluster)
    executor: Literal["local", "ray"] = "local"
    #: Ray cluster address (``ray://host:10001`` or ``auto``); empty starts a local cluster
    ray_address: str = ""
    #: CPUs and memory (MB) the scheduler may hand out; empty: what the machine has
    cpus: float | None = Field(default=None, gt=0)
    memory_mb: int | None = Field(default=None, gt=0)
    #: memory left to the server and the system when admitting a task
    reserve_memory_mb: int = Field(default=256, ge=0)
    #: a task waits while the home's disk has less free space than this
    min_free_disk_mb: int = Field(default=1024, ge=0)
    #: address space allowed beyond a task's declared memory (libraries, thread stacks)
    memory_slack_mb: int = Field(default=1024, ge=0)
    #: sandboxing of command operators: ``auto`` (bubblewrap where installed), ``required``
    #: (a run fails without it) or ``off``
    isolation: Literal["auto", "required", "off"] = "auto"
    #: container runtime for container operators (docker, podman, apptainer); empty: the
    #: first of them on the PATH
    container_runtime: str = ""
    #: seconds between looks for runs created by other processes (``kahu run``)
    poll_seconds: float = Field(default=1.0, gt=0)
    #: threads for internal operators (input fetching, storing results)
    internal_workers: int = Field(default=4, ge=1)
    #: run the series-thumbnails workflow on every series that arrives
    thumbnails_on_arrival: bool = True


class OidcSettings(BaseModel):
    """Single sign-on with an OpenID Connect provider (docs/operators.md, "Single sign-on").
    Off while ``issuer`` is empty."""

    #: the provider's issuer URL (its discovery document is ``<issuer>/.well-known/...``)
    issuer: str = ""
    client_id: str = ""
    #: the client secret, or a file holding it (kept out of the environment)
    client_secret_value: str = Field(default="", alias="client_secret", repr=False)
    client_secret_file: Path | None = None
    scopes: str = "openid profile email"
    #: where the provider sends the browser back; empty: public_url or the request's own
    #: origin + /api/v1/auth/oidc/callback (register this URL with the provider)
    redirect_url: str = ""
    username_claim: str = "preferred_username"
    groups_claim: str = "groups"
    #: members of these groups are Kahu administrators
    admin_groups: list[str] = Field(default_factory=list)
    #: group -> roles it gives, as "project:role" ({"radiology": ["oncology:scientist"]})
    group_roles: dict[str, list[str]] = Field(default_factory=dict)
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "PS256", "ES256"])
    timeout_s: float = Field(default=10.0, gt=0)

    model_config = {"populate_by_name": True}

    @field_validator("group_roles")
    @classmethod
    def _check_roles(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for group, grants in value.items():
            for grant in grants:
                project, sep, role = grant.partition(":")
                if not project or not sep or role not in ("viewer", "scientist", "manager"):
                    raise ValueError(
                        f"group {group!r}: {grant!r} is not 'project:viewer|scientist|manager'"
                    )
        return value

    def client_secret(self) -> str:
        if self.client_secret_file is not None:
            return self.client_secret_file.read_text().strip()
        return self.client_secret_value


class FederationSettings(BaseModel):
    """``KAHU_FEDERATION__*``: this site among others (docs/federation.md)."""

    #: the site's name as partners see it; empty: the machine's host name
    site_name: str = ""
    #: verify the coordinator's TLS certificate (https URLs); a CA bundle besides the system's
    verify_tls: bool = True
    ca_file: Path | None = None
    #: a client certificate (and its key) this site shows its coordinators, if they ask
    client_cert: Path | None = None
    client_key: Path | None = None
    #: how long a partner's request for work waits at the coordinator for something to do
    poll_wait_s: float = Field(default=20.0, gt=0, le=120)
    #: how long a join token stays valid
    invite_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    #: a partner not heard from for this long is reported unreachable in its runs
    site_timeout_s: float = Field(default=120.0, gt=0)
    #: the longest pause between tries of a report or output a coordinator did not take (the
    #: pause doubles from 2 s); five refusals of the same one end the work at this site
    retry_max_s: float = Field(default=15.0, gt=0, le=600)
    #: run the agent that fetches work from this site's coordinators (``kahu serve``)
    agent: bool = True

    @field_validator("site_name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if value and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", value):
            raise ValueError(f"site_name {value!r}: letters, digits, '.', '_' and '-'")
        return value


class Settings(BaseSettings):
    """All settings of one Kahu instance."""

    model_config = SettingsConfigDict(
        env_prefix="KAHU_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    home: Path = Path("kahu-home")
    #: SQLAlchemy URL; empty means SQLite at ``<home>/catalog.sqlite``.
    database_url: str = ""
    http: HttpSettings = Field(default_factory=HttpSettings)
    dicom: DicomSettings = Field(default_factory=DicomSettings)
    imports: ImportSettings = Field(default_factory=ImportSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    flow: FlowSettings = Field(default_factory=FlowSettings)
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    federation: FederationSettings = Field(default_factory=FederationSettings)
    #: fsspec URL of the object store's buckets; empty: ``<home>/objects``
    objects_url: str = ""
    #: fsync files and directories before acknowledging; only tests may turn it off.
    fsync: bool = True
    #: level of Kahu's log on standard error (``kahu serve``): DEBUG, INFO, WARNING, ERROR
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'catalog.sqlite').resolve()}"

    @property
    def blob_root(self) -> Path:
        return self.home / "blobs"

    @property
    def resolved_objects_url(self) -> str:
        return self.objects_url or str((self.home / "objects").resolve())

    @property
    def runs_root(self) -> Path:
        return self.home / "runs"

    @property
    def models_root(self) -> Path:
        return self.home / "models"

    @property
    def workflows_folder(self) -> Path:
        return self.home / "workflows"

    @property
    def cache_root(self) -> Path:
        return self.home / "cache"

    @property
    def admin_password_file(self) -> Path:
        return self.home / "admin-password.txt"
