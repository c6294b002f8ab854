"""Users and API tokens. Passwords are scrypt-hashed; tokens are stored as SHA-256 digests."""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select, update

from kahu.auth.passwords import generate_password, hash_password, verify_password
from kahu.auth.tables import ApiToken, User
from kahu.catalog.database import Database
from kahu.catalog.tables import utcnow
from kahu.errors import AuthenticationFailed, Conflict, InvalidInput, NotFound

TOKEN_PREFIX = "kahu_"  # noqa: S105 - a marker, not a secret
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 12


@dataclass(frozen=True, slots=True)
class UserPublic:
    name: str
    is_admin: bool
    disabled: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class TokenPublic:
    id: int
    user: str
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user_public(user: User) -> UserPublic:
    return UserPublic(user.name, user.is_admin, user.disabled, user.created_at)


def _token_public(token: ApiToken, user: str) -> TokenPublic:
    return TokenPublic(
        token.id,
        user,
        token.name,
        token.prefix,
        token.created_at,
        token.expires_at,
        token.revoked_at,
        token.last_used_at,
    )


class Accounts:
    """User and token management over the catalog database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- users --------------------------------------------------------------------------------

    def create_user(self, name: str, password: str, *, is_admin: bool = False) -> UserPublic:
        if not _NAME_RE.match(name):
            raise InvalidInput(f"invalid user name {name!r}: letters, digits, . _ @ -")
        if len(password) < MIN_PASSWORD:
            raise InvalidInput(f"password must have at least {MIN_PASSWORD} characters")
        with self.db.write() as s:
            if s.scalar(select(User.id).where(User.name == name)) is not None:
                raise Conflict(f"user {name!r} exists")
            user = User(
                name=name,
                password_hash=hash_password(password),
                is_admin=is_admin,
                disabled=False,
                created_at=utcnow(),
            )
            s.add(user)
            s.flush()
            return _user_public(user)

    def find(self, name: str) -> UserPublic | None:
        """The user called ``name``, None when there is none."""
        with self.db.read() as s:
            row = s.scalar(select(User).where(User.name == name))
            return None if row is None else _user_public(row)

    def list_users(self) -> list[UserPublic]:
        with self.db.read() as s:
            return [_user_public(u) for u in s.scalars(select(User).order_by(User.name))]

    def ensure_external_user(self, name: str, *, is_admin: bool) -> UserPublic:
        """The user an identity provider vouches for: created on first sign-on with no
        usable password (a random one nobody knows), their administrator flag set as the
        provider's groups say; a disabled user stays disabled (AuthenticationFailed)."""
        if not _NAME_RE.match(name):
            raise AuthenticationFailed(f"the identity provider's user name {name!r} is not usable")
        with self.db.write() as s:
            row = s.scalar(select(User).where(User.name == name))
            if row is None:
                row = User(
                    name=name,
                    password_hash=hash_password(secrets.token_urlsafe(32)),
                    is_admin=is_admin,
                    disabled=False,
                    created_at=utcnow(),
                )
                s.add(row)
                s.flush()
            elif row.disabled:
                raise AuthenticationFailed("user disabled")
            else:
                row.is_admin = is_admin
            return _user_public(row)

    def set_password(self, name: str, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise InvalidInput(f"password must have at least {MIN_PASSWORD} characters")
        with self.db.write() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                raise NotFound(f"no user {name!r}")
            user.password_hash = hash_password(password)

    def set_disabled(self, name: str, disabled: bool) -> None:
        with self.db.write() as s:
            user = s.scalar(select(User).where(User.name == name))
            if user is None:
                raise NotFound(f"no user {name!r}")
            user.disabled = disabled

    def authenticate_password(self, name: str, password: str) -> UserPublic:
        with self.db.read() as s:
            user = s.scalar(select(User).where(User.name == name))
        # hash even for unknown users so timing does not reveal which names exist
        stored = user.password_hash if user else hash_password("unknown-user-placeholder")
        if not verify_password(password, stored) or user is None or user.disabled:
            raise AuthenticationFailed("wrong user name or password")
        return _user_public(user)

    def ensure_admin(self, password_file: Path) -> str | None:
        """On first start, create ``admin`` with a random password written to a 0600 file.

        Returns the password when one was created, ``None`` when users already exist.
        """
        with self.db.read() as s:
            if (s.scalar(select(func.count(User.id))) or 0) > 0:
                return None
        password = generate_password()
        self.create_user("admin", password, is_admin=True)
        password_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        os.chmod(password_file, 0o600)
        return password

    # -- tokens -------------------------------------------------------------------------------

    def create_token(
        self, user: str, *, name: str = "", expires_in: timedelta | None = None
    ) -> tuple[str, TokenPublic]:
        """Create an API token; the secret is returned once and stored only as a digest."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = utcnow()
        with self.db.write() as s:
            user_row = s.scalar(select(User).where(User.name == user))
            if user_row is None:
                raise NotFound(f"no user {user!r}")
            token = ApiToken(
                user_pk=user_row.id,
                name=name,
                token_hash=_digest(secret),
                prefix=secret[: len(TOKEN_PREFIX) + 6],
                created_at=now,
                expires_at=now + expires_in if expires_in else None,
            )
            s.add(token)
            s.flush()
            return secret, _token_public(token, user)

    def list_tokens(self, user: str | None = None) -> list[TokenPublic]:
        stmt = select(ApiToken, User.name).join(User, User.id == ApiToken.user_pk)
        if user is not None:
            stmt = stmt.where(User.name == user)
        with self.db.read() as s:
            return [_token_public(t, u) for t, u in s.execute(stmt.order_by(ApiToken.id)).all()]

    def revoke_token(self, token_id: int, *, user: str | None = None) -> None:
        with self.db.write() as s:
            stmt = (
                select(ApiToken)
                .join(User, User.id == ApiToken.user_pk)
                .where(ApiToken.id == token_id)
            )
            if user is not None:
                stmt = stmt.where(User.name == user)
            token = s.scalar(stmt)
            if token is None:
                raise NotFound(f"no token {token_id}")
            token.revoked_at = token.revoked_at or utcnow()

    def revoke_secret(self, secret: str) -> None:
        """Revoke the token whose secret this is (a session ending)."""
        with self.db.write() as s:
            s.execute(
                update(ApiToken)
                .where(ApiToken.token_hash == _digest(secret), ApiToken.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )

    def authenticate_token(self, secret: str) -> UserPublic:
        return self.token_use(secret)[0]

    def token_use(self, secret: str) -> tuple[UserPublic, int, bool]:
        """The token's user, the token's id, and whether this is its first use in a minute
        (then its ``last_used_at`` moved: the audit log records such uses)."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 128:
            raise AuthenticationFailed("invalid token")
        now = utcnow()
        with self.db.read() as s:
            row = s.execute(
                select(ApiToken, User)
                .join(User, User.id == ApiToken.user_pk)
                .where(ApiToken.token_hash == _digest(secret))
            ).first()
        if row is None:
            raise AuthenticationFailed("invalid token")
        token, user = row
        if token.revoked_at is not None:
            raise AuthenticationFailed("token revoked")
        if token.expires_at is not None and token.expires_at <= now:
            raise AuthenticationFailed("token expired")
        if user.disabled:
            raise AuthenticationFailed("user disabled")
        fresh = token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1)
        if fresh:
            with self.db.write() as s:
                s.execute(update(ApiToken).where(ApiToken.id == token.id).values(last_used_at=now))
        return _user_public(user), int(token.id), fresh
