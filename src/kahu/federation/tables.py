"""The tables of federation: this site's peers, the invitations it handed out, the federated
runs it coordinates (with each site's part and what each sent), the work it does for its
coordinators, the policy its administrator set per coordinator, and the egress ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kahu.catalog.tables import Base, UTCDateTime, utcnow


class FedInvite(Base):
    """A one-time join token for a partner-to-be (its SHA-256 only; the token is shown once)."""

    __tablename__ = "fed_invites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    used_by: Mapped[str] = mapped_column(String(64), default="")


class FedPeer(Base):
    """Another site: a partner that joined this one (``role`` partner) or a coordinator this
    site joined (``role`` coordinator). Each is known by its public key; nothing secret of it
    is kept here."""

    __tablename__ = "fed_peers"

    site_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[str] = mapped_column(String(128))
    #: a coordinator's URL (partners are never called: connections are outbound only)
    url: Mapped[str] = mapped_column(String(512), default="")
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str] = mapped_column(Text, default="")
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class FedPolicy(Base):
    """What this site allows one coordinator (:class:`kahu.federation.policy.Policy`)."""

    __tablename__ = "fed_policies"

    coordinator: Mapped[str] = mapped_column(String(64), primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_by: Mapped[str] = mapped_column(String(128), default="")
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FedRun(Base):
    """A federated run this site coordinates: one workflow at several sites, aggregated."""

    __tablename__ = "fed_runs"

    id: Mapped[str] = mapped_column(String(96), primary_key=True)
    workflow: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    project: Mapped[str] = mapped_column(String(64), default="default")
    created_by: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    #: running, aggregating, done, failed
    state: Mapped[str] = mapped_column(String(16), index=True)
    timeout_s: Mapped[float] = mapped_column(Float, default=3600.0)
    aggregate_run: Mapped[str] = mapped_column(String(96), default="")
    error: Mapped[str] = mapped_column(Text, default="")
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class FedSiteRun(Base):
    """One site's part of a federated run, as the coordinator knows it."""

    __tablename__ = "fed_site_runs"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    fed_run: Mapped[str] = mapped_column(ForeignKey("fed_runs.id", ondelete="CASCADE"), index=True)
    site_id: Mapped[str] = mapped_column(String(64), index=True)
    site_name: Mapped[str] = mapped_column(String(64))
    dataset: Mapped[str] = mapped_column(String(128))
    #: queued, delivered, waiting_approval, refused, running, done, failed, unreachable
    state: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text, default="")
    progress: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    #: when the site last fetched this work, and whether it reported on it since
    picked_up_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FedOutput(Base):
    """An output a site sent for its part of a federated run (kept in the object store)."""

    __tablename__ = "fed_outputs"

    site_run: Mapped[str] = mapped_column(
        ForeignKey("fed_site_runs.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(512))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class FedJob(Base):
    """Work a coordinator asked of this site, and how far it got. ``reported`` is the last
    state the coordinator acknowledged: the agent repeats what it has not."""

    __tablename__ = "fed_jobs"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    coordinator: Mapped[str] = mapped_column(String(64), index=True)
    fed_run: Mapped[str] = mapped_column(String(96))
    workflow: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dataset: Mapped[str] = mapped_column(String(128))
    requested_by: Mapped[str] = mapped_column(String(128), default="")
    #: waiting_approval, approved, refused, running, done, failed
    state: Mapped[str] = mapped_column(String(24), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    reported: Mapped[str] = mapped_column(String(64), default="")
    approved_by: Mapped[str] = mapped_column(String(128), default="")
    local_run: Mapped[str] = mapped_column(String(96), default="")
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class EgressEntry(Base):
    """One release of bytes to another site: append-only, each entry hashing the one before
    (:mod:`kahu.federation.egress`)."""

    __tablename__ = "egress_ledger"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    partner: Mapped[str] = mapped_column(String(64), index=True)
    partner_id: Mapped[str] = mapped_column(String(64))
    run: Mapped[str] = mapped_column(String(128), index=True)
    local_run: Mapped[str] = mapped_column(String(96))
    task: Mapped[str] = mapped_column(String(64))
    output: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    policy: Mapped[str] = mapped_column(Text)
    approved_by: Mapped[str] = mapped_column(String(128))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    #: set once the partner acknowledged the bytes (the only change an entry takes)
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)
