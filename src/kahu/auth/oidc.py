"""Single sign-on with OpenID Connect (Keycloak, Entra ID, Authentik, any standard provider).

The authorization code flow with PKCE (S256), through Authlib's OAuth 2 client and joserfc:

1. :meth:`OidcLogin.start` reads the provider's discovery document, makes a state, a nonce
   and a PKCE verifier, keeps them for ten minutes, and gives the URL to send the browser to;
2. :meth:`OidcLogin.finish` takes the code the provider sends back (the state must be one
   it made, once, for this browser), exchanges it with the verifier and the client secret,
   checks the ID token (signature by the provider's published keys, issuer, audience,
   expiry, nonce) and maps its claims to a Kahu user: the user name claim, administrators by
   group, project roles by group (:class:`~kahu.settings.OidcSettings`).

A user who signs on is created on first sign-on (with no usable password) and their
administrator flag and the roles the mapping names are set from the groups at each sign-on
(a group taken away by the provider takes the role away).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from kahu.auth.projects import Projects, at_least, validate_role
from kahu.auth.users import Accounts, UserPublic
from kahu.errors import AuthenticationFailed, InvalidInput, KahuError
from kahu.settings import OidcSettings

#: how long a started sign-on may take
PENDING_S = 600.0
#: discovery documents and keys are read again after this long
CACHE_S = 300.0


class ProviderUnavailable(KahuError):
    """The identity provider could not be reached or answered nonsense (HTTP 502)."""

    http_status = 502


@dataclass(frozen=True, slots=True)
class _Pending:
    nonce: str
    verifier: str
    browser: str  # the value of the browser's binding cookie
    created: float
    next_url: str


class OidcLogin:
    def __init__(self, settings: OidcSettings, accounts: Accounts, projects: Projects) -> None:
        self.settings = settings
        self.accounts = accounts
        self.projects = projects
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._discovery: tuple[float, dict[str, Any]] | None = None
        self._keys: tuple[float, KeySet] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.settings.issuer and self.settings.client_id)

    # -- the provider ---------------------------------------------------------------------------

    def _get(self, url: str) -> dict[str, Any]:
        try:
            response = httpx.get(url, timeout=self.settings.timeout_s, follow_redirects=False)
            response.raise_for_status()
            data = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise ProviderUnavailable(f"the identity provider did not answer {url}: {exc}") from exc
        if not isinstance(data, dict):
            raise ProviderUnavailable(f"the identity provider answered {url} with no object")
        return data

    def discovery(self) -> dict[str, Any]:
        cached = self._discovery
        if cached is None or time.monotonic() - cached[0] > CACHE_S:
            issuer = self.settings.issuer.rstrip("/")
            document = self._get(f"{issuer}/.well-known/openid-configuration")
            if str(document.get("issuer", "")).rstrip("/") != issuer:
                raise ProviderUnavailable(
                    f"the discovery document names issuer {document.get('issuer')!r}, "
                    f"not {issuer!r}"
                )
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(document.get(key), str):
                    raise ProviderUnavailable(f"the discovery document has no {key}")
            cached = self._discovery = (time.monotonic(), document)
        return cached[1]

    def _key_set(self, refresh: bool = False) -> KeySet:
        cached = self._keys
        if refresh or cached is None or time.monotonic() - cached[0] > CACHE_S:
            keys = KeySet.import_key_set(self._get(self.discovery()["jwks_uri"]))  # type: ignore[arg-type]
            cached = self._keys = (time.monotonic(), keys)
        return cached[1]

    def _client(self, redirect_uri: str) -> OAuth2Client:
        return OAuth2Client(
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret(),
            scope=self.settings.scopes,
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
            timeout=self.settings.timeout_s,
        )

    # -- the flow ------------------------------------------------------------------------------

    def start(self, redirect_uri: str, browser: str, next_url: str = "/") -> str:
        """The provider's authorization URL for a new sign-on bound to ``browser`` (a random
        value the caller sets as a cookie)."""
        if not self.enabled:
            raise InvalidInput("single sign-on is not configured (KAHU_OIDC__ISSUER)")
        endpoint = self.discovery()["authorization_endpoint"]
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)
        with self._client(redirect_uri) as client:
            url, _ = client.create_authorization_url(
                endpoint, state=state, code_verifier=verifier, nonce=nonce
            )
        now = time.monotonic()
        with self._lock:
            for key in [k for k, p in self._pending.items() if now - p.created > PENDING_S]:
                del self._pending[key]
            self._pending[state] = _Pending(nonce, verifier, browser, now, _local(next_url))
        return str(url)

    def finish(
        self, redirect_uri: str, browser: str, state: str, code: str
    ) -> tuple[UserPublic, str]:
        """The signed-on user and the page to go back to; AuthenticationFailed for a state
        that is unknown, used, expired or made for another browser, or a bad token."""
        with self._lock:
            pending = self._pending.pop(state, None)
        if pending is None or time.monotonic() - pending.created > PENDING_S:
            raise AuthenticationFailed("this sign-on was not started here or took too long")
        if not secrets.compare_digest(pending.browser, browser):
            raise AuthenticationFailed("this sign-on was started in another browser")
        token_endpoint = self.discovery()["token_endpoint"]
        try:
            with self._client(redirect_uri) as client:
                token = client.fetch_token(
                    token_endpoint, code=code, code_verifier=pending.verifier, state=state
                )
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"the token endpoint could not be reached: {exc}") from exc
        except Exception as exc:  # an OAuth error answer (invalid_grant, ...)
            raise AuthenticationFailed(f"the identity provider refused the code: {exc}") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise AuthenticationFailed("the identity provider sent no ID token")
        claims = self.verify(id_token, pending.nonce)
        return self.sign_on(claims), pending.next_url

    def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims once its signature, issuer, audience, expiry and nonce are
        checked (the provider's keys are read again once for a key id not known yet)."""
        try:
            try:
                decoded = jwt.decode(id_token, self._key_set(), algorithms=self.settings.algorithms)
            except JoseError:
                decoded = jwt.decode(
                    id_token, self._key_set(refresh=True), algorithms=self.settings.algorithms
                )
            registry = jwt.JWTClaimsRegistry(
                leeway=60,
                iss={"essential": True, "value": self.discovery()["issuer"]},
                aud={"essential": True, "value": self.settings.client_id},
                exp={"essential": True},
                nonce={"essential": True, "value": nonce},
            )
            registry.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise AuthenticationFailed(f"the ID token is not valid: {exc}") from exc
        return dict(decoded.claims)

    # -- claims -> Kahu ------------------------------------------------------------------------

    def sign_on(self, claims: dict[str, Any]) -> UserPublic:
        """The Kahu user of these claims, created or updated by the mapping."""
        settings = self.settings
        name = claims.get(settings.username_claim)
        if not isinstance(name, str) or not name:
            raise AuthenticationFailed(f"the ID token has no {settings.username_claim} claim")
        groups = claims.get(settings.groups_claim) or []
        if isinstance(groups, str):
            groups = [groups]
        groups = {str(g) for g in groups}
        is_admin = bool(groups & set(settings.admin_groups))
        user = self.accounts.ensure_external_user(name, is_admin=is_admin)
        wanted: dict[str, str] = {}
        for group, grants in settings.group_roles.items():
            if group not in groups:
                continue
            for grant in grants:
                project, _, role = grant.partition(":")
                role = validate_role(role or "viewer")
                if project not in wanted or at_least(role, wanted[project]):  # type: ignore[arg-type]
                    wanted[project] = role
        mapped = {g.partition(":")[0] for grants in settings.group_roles.values() for g in grants}
        held = self.projects.roles_of(name)
        for project in sorted(mapped):
            if project in wanted and held.get(project) != wanted[project]:
                self.projects.set_member(project, name, wanted[project])
            elif project not in wanted and project in held:
                self.projects.remove_member(project, name)
        return user


def _local(url: str) -> str:
    """Only a path on this site may be gone back to (no open redirect)."""
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else "/"
