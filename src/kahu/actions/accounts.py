"""Account actions: create, disable and enable users; revoke API tokens."""

from __future__ import annotations

from kahu.actions import Actor, Done, perform
from kahu.core import Kahu


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
