"""Account actions: create, disable and enable users; set passwords; create and revoke API
tokens."""

from __future__ import annotations

from datetime import timedelta

from kahu.actions import Actor, Done, perform
from kahu.core import Kahu
from kahu.errors import AuthenticationFailed, PermissionDenied


def create_user(kahu: Kahu, actor: Actor, name: str, password: str, *, admin: bool) -> Done:
    user = perform(
        kahu,
        actor,
        "user.create",
        "admin",
        lambda: kahu.accounts.create_user(name, password, is_admin=admin),
        detail={"user": name, "admin": admin},
    )
    return Done(f"User {name} created.", user)


def set_disabled(kahu: Kahu, actor: Actor, name: str, disabled: bool) -> Done:
    """Disable (or enable again) a user: a disabled user's tokens and sessions stop working."""
    what = "disable" if disabled else "enable"
    perform(
        kahu,
        actor,
        f"user.{what}",
        "admin",
        lambda: kahu.accounts.set_disabled(name, disabled),
        detail={"user": name},
    )
    return Done(f"User {name} {what}d.")


def set_password(
    kahu: Kahu, actor: Actor, name: str, password: str, *, current: str | None = None
) -> Done:
    """Set ``name``'s password: administrators for anyone, a user for themselves. With
    ``current`` (a user changing their own) that password is checked first; wrong guesses
    count like failed logins (a stolen token alone cannot change it)."""

    def change() -> None:
        if current is not None:
            keys = (f"user:{name}", f"address:{actor.client}")
            kahu.login_throttle.check(*keys)
            try:
                kahu.accounts.authenticate_password(name, current)
            except AuthenticationFailed:
                kahu.login_throttle.failed(*keys)
                raise PermissionDenied("the current password is wrong") from None
        kahu.accounts.set_password(name, password)

    perform(
        kahu,
        actor,
        "password.change",
        "anyone" if name == actor.user.name else "admin",
        change,
        detail={"user": name},
    )
    return Done(f"Password of {name} changed.")


def create_token(
    kahu: Kahu, actor: Actor, user: str, name: str = "", expires_in: timedelta | None = None
) -> Done:
    """A new API token of ``user`` (administrators for anyone, a user for themselves); the
    result is (secret, its public record): the secret is shown this once."""
    made = perform(
        kahu,
        actor,
        "token.create",
        "anyone" if user == actor.user.name else "admin",
        lambda: kahu.accounts.create_token(user, name=name, expires_in=expires_in),
        detail={"user": user, "name": name},
    )
    return Done(f"Token {made[1].id} for {user} created.", made)


def revoke_token(kahu: Kahu, actor: Actor, token_id: int) -> Done:
    """Administrators revoke any token, others only their own (another's is not found)."""
    owner = None if actor.user.is_admin else actor.user.name
    perform(
        kahu,
        actor,
        "token.revoke",
        "anyone",
        lambda: kahu.accounts.revoke_token(token_id, user=owner),
        detail={"token_id": token_id},
    )
    return Done(f"Token {token_id} revoked.")
