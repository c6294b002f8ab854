"""A partner's connection to a coordinator: every request signed with the site's key, every
answer checked against the key the partner pinned when it joined. The partner only ever
connects out (HTTPS with the certificate verified by default, a client certificate if the
coordinator asks for one)."""

from __future__ import annotations

import json
import secrets
import ssl
import time
from dataclasses import dataclass
from typing import Any

import httpx

from kahu.errors import AuthenticationFailed, Conflict, InvalidInput, KahuError, PermissionDenied
from kahu.federation.identity import SiteIdentity, request_text, response_text, verify
from kahu.federation.peers import join_proof
from kahu.settings import FederationSettings

API = "/api/v1/federation"
HEADER_SITE = "X-Kahu-Site"
HEADER_TIME = "X-Kahu-Time"
HEADER_NONCE = "X-Kahu-Nonce"
HEADER_SIGNATURE = "X-Kahu-Signature"


class Unreachable(KahuError):
    """The coordinator did not answer (the agent tries again later)."""


class Refused(KahuError):
    """The coordinator answered with an error (``status`` and its reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


def tls_context(settings: FederationSettings) -> ssl.SSLContext:
    """The coordinator's certificate checked against the system's CAs and ``ca_file``
    (unless ``verify_tls`` is off), this site's client certificate shown if it has one."""
    context = ssl.create_default_context()
    if settings.ca_file is not None:
        context.load_verify_locations(cafile=settings.ca_file)
    if not settings.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if settings.client_cert is not None:
        context.load_cert_chain(settings.client_cert, settings.client_key)
    return context


def http_client(settings: FederationSettings, timeout: float) -> httpx.Client:
    return httpx.Client(verify=tls_context(settings), timeout=timeout, follow_redirects=False)


def signed_headers(
    identity: SiteIdentity, method: str, path: str, body: bytes, to_site: str
) -> dict[str, str]:
    at = str(int(time.time()))
    nonce = secrets.token_urlsafe(16)
    signature = identity.sign(request_text(method, path, at, nonce, body, to_site))
    return {
        HEADER_SITE: identity.site_id,
        HEADER_TIME: at,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature,
    }


@dataclass
class Coordinator:
    """Signed calls to one coordinator this site joined."""

    identity: SiteIdentity
    site_id: str
    public_key: str
    url: str
    http: httpx.Client

    def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> Any:
        """The JSON answer of a signed request, its signature checked; :class:`Unreachable`
        when there is none, :class:`Refused` for an error answer."""
        full = API + path
        headers = signed_headers(self.identity, method, full, body, self.site_id)
        headers["Content-Type"] = content_type
        try:
            response = self.http.request(
                method,
                self.url.rstrip("/") + full,
                content=body,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            raise Unreachable(f"{self.url}: {exc}") from None
        signature = response.headers.get(HEADER_SIGNATURE, "")
        text = response_text(
            headers[HEADER_NONCE], response.status_code, response.content, self.identity.site_id
        )
        try:
            verify(self.public_key, text, signature)
        except AuthenticationFailed:
            raise AuthenticationFailed(
                f"the answer from {self.url} is not signed by the coordinator this site joined"
            ) from None
        try:
            data = response.json() if response.content else {}
        except ValueError:
            data = {}
        if response.status_code >= 400:
            reason = data.get("detail") if isinstance(data, dict) else None
            raise Refused(response.status_code, str(reason or response.reason_phrase))
        return data


def join(
    identity: SiteIdentity, url: str, token: str, settings: FederationSettings
) -> dict[str, Any]:
    """Join the coordinator at ``url`` with its one-time ``token``: returns the coordinator's
    identity, checked to be the site that issued the token."""
    if not url.startswith(("https://", "http://")):
        raise InvalidInput(f"the coordinator's URL must be http(s), not {url!r}")
    body = json.dumps({"token": token, "site": identity.public()}).encode()
    path = API + "/join"
    headers = signed_headers(identity, "POST", path, body, "")
    headers["Content-Type"] = "application/json"
    with http_client(settings, 30.0) as http:
        try:
            response = http.post(url.rstrip("/") + path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Unreachable(f"{url}: {exc}") from None
    try:
        data = response.json()
    except ValueError:
        data = {}
    if response.status_code == 401:
        raise AuthenticationFailed(str(data.get("detail") or "the join token was refused"))
    if response.status_code == 409:
        raise Conflict(str(data.get("detail")))
    if response.status_code >= 400:
        raise PermissionDenied(f"{response.status_code}: {data.get('detail') or response.text}")
    coordinator = data.get("coordinator") or {}
    key = str(coordinator.get("public_key") or "")
    if data.get("proof") != join_proof(token, key, identity.site_id):
        raise AuthenticationFailed(f"{url} did not prove it issued this token")
    signature = response.headers.get(HEADER_SIGNATURE, "")
    verify(
        key,
        response_text(headers[HEADER_NONCE], 200, response.content, identity.site_id),
        signature,
    )
    return dict(coordinator)
