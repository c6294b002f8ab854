"""Browser sessions: a cookie instead of a bearer header, with CSRF protection.

A session is an API token named ``session`` (stored hashed, listed and revoked like any
token) carried in the ``kahu_session`` cookie: HttpOnly (scripts cannot read it), Secure,
SameSite=Strict (other sites' pages do not send it). A request that changes something (any
method but GET, HEAD and OPTIONS) must also carry ``X-CSRF-Token``: a value derived from the
session secret, handed to the page at login and in the readable ``kahu_csrf`` cookie. A page
of another origin can neither read it nor compute it, so it cannot make the browser change
anything on the user's behalf.
"""

from __future__ import annotations

import hashlib
import hmac

SESSION_COOKIE = "kahu_session"
CSRF_COOKIE = "kahu_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(session_secret: str) -> str:
    """The CSRF token of a session (a keyed digest of its secret: nothing to store)."""
    return hmac.new(session_secret.encode(), b"kahu-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_secret: str, header: str | None) -> bool:
    return header is not None and hmac.compare_digest(csrf_token(session_secret), header)
