"""``create_app(settings)``: the HTTP application; its lifespan runs the DIMSE server too."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kahu import __version__
from kahu.api import (
    admin,
    curation,
    federation,
    flow,
    models,
    objects,
    projects,
    routes,
    search,
    volumes,
)
from kahu.api.deps import CurrentUser, KahuDep
from kahu.auth.throttle import TooManyAttempts
from kahu.core import Kahu
from kahu.dicomweb import router as dicomweb
from kahu.errors import (
    InvalidParameters,
    KahuError,
)
from kahu.settings import Settings
from kahu.web import pages

log = logging.getLogger(__name__)


def _error_response(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, KahuError)
    status = exc.http_status
    if status == 500:
        log.error("request failed: %s", exc)
        return JSONResponse({"detail": "internal error"}, status_code=500)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, TooManyAttempts):
        headers = {"Retry-After": str(exc.retry_after)}
    body: dict[str, object] = {"detail": str(exc)}
    if isinstance(exc, InvalidParameters):
        body["errors"] = exc.errors
    return JSONResponse(body, status_code=status, headers=headers)


class AuditOutcome:
    """Fills in the status of a request's audit record (written by the authentication
    dependency before the route ran) when the response starts."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        started = False

        async def finish(status: int) -> None:
            record = scope.get("state", {}).get("audit_id")
            if record is not None:
                kahu: Kahu = scope["app"].state.kahu
                await run_in_threadpool(kahu.audit.finish, record, status)

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                await finish(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            if not started:  # the server's error handler answers 500 outside this middleware
                await finish(500)
            raise


def create_app(settings: Settings, kahu: Kahu | None = None) -> FastAPI:
    """Build the app. Pass ``kahu`` to share an instance (tests, CLI); else one is made."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        instance = kahu or Kahu(settings)
        app.state.kahu = instance
        instance.start()
        try:
            yield
        finally:
            if kahu is None:
                instance.stop()

    app = FastAPI(
        title="Kahu",
        version=__version__,
        description="Imaging AI on a hospital's own data. Every route except /health needs a "
        "bearer token (`kahu tokens create --user NAME` or POST /api/v1/auth/login).",
        lifespan=lifespan,
        # the schema and its pages need a caller too, and the pages load Swagger UI from
        # Kahu's own static files (npm, `make ui`), never from a CDN
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    if kahu is not None:
        app.state.kahu = kahu
    app.add_exception_handler(KahuError, _error_response)
    app.add_exception_handler(pages.LoginRequired, pages.login_redirect)
    app.add_middleware(AuditOutcome)

    @app.get("/health", tags=["health"], summary="Liveness (no authentication)")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_schema(_user: CurrentUser) -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def api_docs(request: Request, kahu: KahuDep) -> HTMLResponse:
        pages.session(request, kahu)  # a browser session, else the login page
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="Kahu API",
            swagger_js_url="/static/vendor/swagger-ui-bundle.js",
            swagger_css_url="/static/vendor/swagger-ui.css",
            swagger_favicon_url="/static/vendor/favicon-32x32.png",
        )

    app.include_router(routes.router, tags=["catalog"])
    app.include_router(search.router, tags=["search"])
    app.include_router(volumes.router, tags=["catalog"])
    app.include_router(curation.router, tags=["curation"])
    app.include_router(flow.router, tags=["workflows"])
    app.include_router(objects.router, tags=["objects"])
    app.include_router(models.router, tags=["models"])
    app.include_router(projects.router, tags=["projects"])
    app.include_router(admin.router, tags=["accounts"])
    app.include_router(federation.router, tags=["federation"])
    app.include_router(dicomweb.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=pages.STATIC), name="static")
    return app
