"""A small OpenID Connect provider for the single sign-on tests, run as its own process
(``python -m tests.oidc_provider --port P --config FILE``): discovery, an authorization
endpoint with a login form, a token endpoint (authorization code, client secret, PKCE S256
checked with Authlib's RFC 7636 helper), RS256 ID tokens signed with joserfc, and the JWKS.

The config file (read at every request, so a test can change a user's groups) holds
``{"issuer", "client_id", "client_secret", "redirect_uris": [...], "users": {name:
{"password", "groups": [...]}}}``.
"""

from __future__ import annotations

import argparse
import html
import json
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import uvicorn
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

KEY = RSAKey.generate_key(2048, parameters={"kid": "test-key", "use": "sig", "alg": "RS256"})
CODES: dict[str, dict[str, Any]] = {}
CONFIG_PATH = Path()


def config() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CONFIG_PATH.read_text())
    return data


async def discovery(_request: Request) -> JSONResponse:
    issuer = config()["issuer"]
    return JSONResponse(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "jwks_uri": f"{issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        }
    )


async def jwks(_request: Request) -> JSONResponse:
    return JSONResponse(KeySet([KEY]).as_dict(private=False))


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def authorize(request: Request) -> Response:
    cfg = config()
    params = dict(request.query_params) if request.method == "GET" else dict(await request.form())
    if params.get("client_id") != cfg["client_id"]:
        return _error("unauthorized_client")
    if params.get("redirect_uri") not in cfg["redirect_uris"]:
        return _error("invalid_request: redirect_uri")
    if params.get("response_type") != "code" or params.get("code_challenge_method") != "S256":
        return _error("invalid_request: code flow with PKCE S256 only")
    if request.method == "GET":  # the login form, the request carried along
        fields = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
        )
        return HTMLResponse(
            f'<form method="post" action="/authorize">{fields}'
            '<input name="username"><input name="password" type="password"></form>'
        )
    user = cfg["users"].get(params.get("username", ""))
    if user is None or user["password"] != params.get("password"):
        return HTMLResponse("wrong user name or password", status_code=401)
    code = secrets.token_urlsafe(24)
    CODES[code] = {**params, "at": time.time()}
    query = urlencode({"code": code, "state": params.get("state", "")})
    return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=302)


async def token(request: Request) -> JSONResponse:
    cfg = config()
    form = dict(await request.form())
    client_id, secret = form.get("client_id"), form.get("client_secret")
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("basic "):
        import base64
        from urllib.parse import unquote

        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        client_id, secret = unquote(user), unquote(password)
    if client_id != cfg["client_id"] or secret != cfg["client_secret"]:
        return _error("invalid_client", 401)
    if form.get("grant_type") != "authorization_code":
        return _error("unsupported_grant_type")
    issued = CODES.pop(str(form.get("code")), None)  # a code works once
    if issued is None or time.time() - issued["at"] > 60:
        return _error("invalid_grant")
    if form.get("redirect_uri") != issued["redirect_uri"]:
        return _error("invalid_grant: redirect_uri")
    verifier = str(form.get("code_verifier") or "")
    if create_s256_code_challenge(verifier) != issued["code_challenge"]:
        return _error("invalid_grant: PKCE verifier")
    name = issued["username"]
    now = int(time.time())
    claims = {
        "iss": cfg["issuer"],
        "sub": f"user-{name}",
        "aud": cfg["client_id"],
        "iat": now,
        "exp": now + 300,
        "nonce": issued.get("nonce"),
        "preferred_username": name,
        "groups": cfg["users"][name]["groups"],
    }
    id_token = jwt.encode({"alg": "RS256", "kid": "test-key"}, claims, KEY)
    return JSONResponse(
        {
            "access_token": secrets.token_urlsafe(16),
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": id_token,
        }
    )


app = Starlette(
    routes=[
        Route("/.well-known/openid-configuration", discovery),
        Route("/jwks", jwks),
        Route("/authorize", authorize, methods=["GET", "POST"]),
        Route("/token", token, methods=["POST"]),
    ]
)


def main() -> None:
    global CONFIG_PATH
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args()
    CONFIG_PATH = args.config
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
