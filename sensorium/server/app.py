"""The HTTP server: a FastAPI app over one `Agent`.

Routes: `/healthz`; the native API under `/api` (threads, turns with Server-Sent Events,
images, search, index, tools); the OpenAI-compatible `/v1/models` and `/v1/chat/completions`;
and the web chat at `/`. Every error is one line of JSON, `{"error": {"message", "type"}}`
(the OpenAI shape, so its clients show the message), never a traceback.
"""

from __future__ import annotations

import hmac
import logging
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sensorium.agent import Agent
from sensorium.server.threads import ThreadList
from sensorium.server.turns import TurnRunner
from sensorium.tools import ImageInputError, SensoriumError, UserError

log = logging.getLogger("sensorium.server")

# Open without a token even when one is set: a load balancer's probe, and the page that asks
# for the token.
PUBLIC_PATHS = frozenset({"/healthz", "/", "/favicon.ico"})


def error_response(status: int, message: str, kind: str = "invalid_request_error") -> JSONResponse:
    """The one error shape: a one-line message a person can act on."""
    first = " ".join(str(message).split()) or "error"
    return JSONResponse({"error": {"message": first, "type": kind}}, status_code=status)


def create_app(agent: Agent, *, token: str | None = None) -> FastAPI:
    """The server's app for `agent`, configured by `agent.settings.server`.

    Args:
        agent: the agent every request talks to (threads persist where its checkpointer does)
        token: bearer token every API request must carry (None: no token asked)
    """
    from sensorium.server.native import NotFound, native_routes
    from sensorium.server.openai_compat import openai_routes

    settings = agent.settings.server
    app = FastAPI(
        title="Sensorium",
        summary="A multimodal agent: experts answer, fusion decides, you see the evidence.",
        version=_version(),
        # FastAPI's /docs and /redoc pages load their scripts from a CDN; the server promises
        # to work offline, so only the schema is served.
        docs_url=None,
        redoc_url=None,
    )
    threads = ThreadList(agent.settings.threads_path)
    app.state.runner = TurnRunner(agent, threads, settings)
    app.state.agent = agent
    app.include_router(native_routes())
    app.include_router(openai_routes())

    @app.get("/healthz", tags=["server"])
    def healthz() -> dict[str, Any]:
        """Ready: the agent is built and answers."""
        return {
            "status": "ok",
            "profile": agent.settings.profile,
            "tools": agent.registry.names(),
            "llm": type(agent.chat_model).__name__ if agent.chat_model else None,
            "turns_in_flight": app.state.runner.in_flight,
            # Forward passes shared across conversations: items > batches means they were.
            "batching": agent.host.batching_counts(),
        }

    page = files("sensorium.server").joinpath("web/index.html").read_text("utf-8")

    @app.get("/", include_in_schema=False)
    def web_chat() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return error_response(404, str(exc), "not_found_error")

    @app.exception_handler(UserError)
    @app.exception_handler(ImageInputError)
    async def bad_input(request: Request, exc: Exception) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(SensoriumError)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        return error_response(503, str(exc), "server_error")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problem = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in problem.get("loc", ()) if part != "body")
        return error_response(400, f"{where or 'request'}: {problem.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, _TooLarge):  # a body without Content-Length ran over
            return error_response(413, str(exc.__cause__))
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request %s %s failed", request.method, request.url.path)
        return error_response(
            500, f"internal error ({type(exc).__name__}); see the server log", "server_error"
        )

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(BodyLimit, max_mb=settings.max_request_mb)
    if token:
        app.add_middleware(BearerToken, token=token)
    return app


class BearerToken:
    """Every request but `PUBLIC_PATHS` carries `Authorization: Bearer <token>`."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token = app, token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not hmac.compare_digest(given, b"Bearer " + self.token):
            response = error_response(
                401,
                "missing or wrong API token; send 'Authorization: Bearer <token>'",
                "authentication_error",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class BodyLimit:
    """Refuse request bodies over `max_mb` (413) before they are read into memory."""

    def __init__(self, app: ASGIApp, max_mb: float) -> None:
        self.app, self.max_mb = app, max_mb
        self.max_bytes = int(max_mb * 1024 * 1024)
        self.message = f"request body over the {max_mb:g} MB limit ([server] max_request_mb)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge(self.message)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response: Response = error_response(413, self.message)
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sensorium")
    except PackageNotFoundError:
        return "0"
