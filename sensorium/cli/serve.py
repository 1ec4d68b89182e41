"""`sensorium serve`: the HTTP server (native API, OpenAI-compatible endpoint, web chat)."""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Annotated

import typer

from sensorium.cli.app import ConfigOption, DebugOption, NoLlmOption, Options, app, err
from sensorium.tools import UserError

TOKEN_VARIABLE = "SENSORIUM_API_TOKEN"


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Interface to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="Port (default 8000).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token", help=f"Bearer token API requests must carry (or ${TOKEN_VARIABLE})."
        ),
    ] = None,
    no_llm: NoLlmOption = False,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """Serve the agent over HTTP: a native API, an OpenAI-compatible API, and a web chat."""
    import uvicorn

    from sensorium.cli.session import open_agent
    from sensorium.config import load_settings
    from sensorium.server import create_app

    settings = load_settings(config or Options.config).server
    host = host or settings.host
    port = port or settings.port
    token = token or os.environ.get(TOKEN_VARIABLE) or settings.token
    if not is_loopback(host) and not token:
        raise UserError(
            f"refusing to listen on {host} without a token: anyone who can reach it could use "
            f"the agent; set {TOKEN_VARIABLE} or pass --token (or listen on 127.0.0.1)"
        )
    agent = open_agent(config or Options.config, no_llm=no_llm)
    server_app = create_app(agent, token=token)
    err.print(f"Sensorium on http://{host}:{port}/ (API schema: /openapi.json)", highlight=False)
    # SIGTERM and Ctrl-C: stop accepting, let in-flight turns finish for up to 10 s, exit.
    uvicorn.run(
        server_app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=10,
    )
    server_app.state.runner.pool.shutdown(wait=False, cancel_futures=True)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.1, ::1, localhost and other names that resolve only to loopback."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
