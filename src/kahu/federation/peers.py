"""Peering: invitations (one-time join tokens, kept as their SHA-256), the sites that joined
this one as partners, the coordinators this site joined, and revocation from either side."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update

from kahu.catalog.database import Database
from kahu.catalog.tables import utcnow
from kahu.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound
from kahu.federation.identity import site_id_of
from kahu.federation.tables import FedInvite, FedPeer

Role = Literal["partner", "coordinator"]
TOKEN_PREFIX = "kahu-join-"  # noqa: S105 - a prefix, not a secret
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInput(f"site name {name!r}: letters, digits, '.', '_' and '-' (at most 63)")
    return name


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def join_proof(token: str, coordinator_key: str, partner_id: str) -> str:
    """What a coordinator shows that it holds the invitation a partner's token came from: an
    HMAC keyed by the token's hash (which the coordinator keeps) over both sites' identities."""
    key = token_hash(token).encode()
    return hmac.new(key, f"{coordinator_key}\n{partner_id}".encode(), "sha256").hexdigest()


@dataclass(frozen=True, slots=True)
class Peer:
    site_id: str
    role: str
    name: str
    public_key: str
    url: str
    joined_at: datetime
    revoked_at: datetime | None
    revoked_reason: str
    last_seen_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, Any]:
        return {
            "site_id": self.site_id,
            "role": self.role,
            "name": self.name,
            "url": self.url,
            "joined_at": self.joined_at,
            "revoked_at": self.revoked_at,
            "revoked_reason": self.revoked_reason,
            "last_seen_at": self.last_seen_at,
        }


def _peer(p: FedPeer) -> Peer:
    return Peer(
        p.site_id,
        p.role,
        p.name,
        p.public_key,
        p.url,
        p.joined_at,
        p.revoked_at,
        p.revoked_reason,
        p.last_seen_at,
    )


class Peers:
    """The invitations and peers of this site."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def invite(self, name: str, *, created_by: str, hours: float) -> str:
        """A new join token for partner ``name`` (shown once: only its hash is kept)."""
        check_name(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        with self.db.write() as s:
            s.add(
                FedInvite(
                    name=name,
                    token_hash=token_hash(token),
                    created_by=created_by,
                    created_at=now,
                    expires_at=now + timedelta(hours=hours),
                )
            )
        return token

    def invites(self) -> list[dict[str, Any]]:
        with self.db.read() as s:
            return [
                {
                    "id": i.id,
                    "name": i.name,
                    "created_by": i.created_by,
                    "created_at": i.created_at,
                    "expires_at": i.expires_at,
                    "used_at": i.used_at,
                    "used_by": i.used_by,
                }
                for i in s.scalars(select(FedInvite).order_by(FedInvite.id))
            ]

    def accept(self, token: str, public_key: str) -> Peer:
        """The partner a valid, unused, unexpired ``token`` lets join (used up now)."""
        try:
            site_id = site_id_of(public_key)
        except ValueError:
            raise InvalidInput("the public key is not a site key") from None
        now = utcnow()
        with self.db.write() as s:
            invite = s.scalars(
                select(FedInvite).where(FedInvite.token_hash == token_hash(token))
            ).first()
            if invite is None:
                raise AuthenticationFailed("the join token is not known here")
            if invite.used_at is not None:
                raise AuthenticationFailed("the join token was used already")
            if invite.expires_at <= now:
                raise AuthenticationFailed("the join token has expired")
            existing = s.get(FedPeer, (site_id, "partner"))
            if existing is not None and existing.revoked_at is None:
                raise Conflict(f"site {site_id} is a partner already (as {existing.name})")
            taken = s.scalars(
                select(FedPeer).where(
                    FedPeer.role == "partner",
                    FedPeer.name == invite.name,
                    FedPeer.revoked_at.is_(None),
                )
            ).first()
            if taken is not None:
                raise Conflict(f"a partner named {invite.name} exists already")
            invite.used_at, invite.used_by = now, site_id
            if existing is not None:
                s.delete(existing)
                s.flush()
            peer = FedPeer(
                site_id=site_id,
                role="partner",
                name=invite.name,
                public_key=public_key,
                joined_at=now,
            )
            s.add(peer)
            s.flush()
            return _peer(peer)

    def add_coordinator(self, name: str, url: str, public_key: str) -> Peer:
        check_name(name)
        site_id = site_id_of(public_key)
        with self.db.write() as s:
            old = s.get(FedPeer, (site_id, "coordinator"))
            if old is not None:
                s.delete(old)
                s.flush()
            if self._named(s, name, "coordinator") is not None:
                raise Conflict(f"a coordinator named {name} exists already")
            peer = FedPeer(
                site_id=site_id, role="coordinator", name=name, public_key=public_key, url=url
            )
            s.add(peer)
            s.flush()
            return _peer(peer)

    @staticmethod
    def _named(s: Any, name: str, role: Role) -> FedPeer | None:
        found: FedPeer | None = s.scalars(
            select(FedPeer).where(
                FedPeer.role == role, FedPeer.name == name, FedPeer.revoked_at.is_(None)
            )
        ).first()
        return found

    def get(self, site_id: str, role: Role) -> Peer:
        with self.db.read() as s:
            p = s.get(FedPeer, (site_id, role))
            if p is None:
                raise NotFound(f"no {role} {site_id}")
            return _peer(p)

    def find(self, name_or_id: str, role: Role) -> Peer:
        """A peer by name (an active one) or by site id."""
        with self.db.read() as s:
            p = self._named(s, name_or_id, role) or s.get(FedPeer, (name_or_id, role))
            if p is None:
                raise NotFound(f"no {role} {name_or_id!r}")
            return _peer(p)

    def all(self, role: Role | None = None) -> list[Peer]:
        stmt = select(FedPeer).order_by(FedPeer.role, FedPeer.name)
        if role is not None:
            stmt = stmt.where(FedPeer.role == role)
        with self.db.read() as s:
            return [_peer(p) for p in s.scalars(stmt)]

    def revoke(self, site_id: str, role: Role, reason: str) -> bool:
        """End the peering (True when it was active)."""
        with self.db.write() as s:
            done = s.execute(
                update(FedPeer)
                .where(
                    FedPeer.site_id == site_id, FedPeer.role == role, FedPeer.revoked_at.is_(None)
                )
                .values(revoked_at=utcnow(), revoked_reason=reason[:500])
            )
            return bool(getattr(done, "rowcount", 0))

    def seen(self, site_id: str, role: Role) -> None:
        with self.db.write() as s:
            s.execute(
                update(FedPeer)
                .where(FedPeer.site_id == site_id, FedPeer.role == role)
                .values(last_seen_at=utcnow())
            )
