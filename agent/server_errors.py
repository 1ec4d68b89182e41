"""One line for each way an LLM server can fail: unreachable, too slow, or an HTTP error."""

from __future__ import annotations

import json
from contextlib import suppress
from urllib.parse import urlparse

import httpx


def redacted(url: str) -> str:
    """`url` without a password (the message ends up in plan notes and logs)."""
    parts = urlparse(url)
    if parts.password is None:
        return url
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{parts.username}:***@{parts.hostname}{port}").geturl()


def describe_server_failure(url: str, exc: BaseException, *, ollama: bool = False) -> str | None:
    """One line naming `url` and what went wrong; None when `exc` is no transport or HTTP
    failure (a bad reply, a bug) and should propagate as it is."""
    chain = exception_chain(exc)
    status = status_of(exc)
    if status is not None:
        hint = _status_hint(status, ollama)
        return f"LLM server at {url} answered HTTP {status}{_detail(exc)}{hint}"
    timeout = next((type(e).__name__ for e in chain if is_timeout(e)), None)
    if timeout:
        return (
            f"LLM server at {url} did not answer in time ({timeout}); "
            "check the server or raise llm.timeout_s"
        )
    transport = next((e for e in chain if is_transport(e)), None)
    if transport is not None:
        name = next((type(e).__name__ for e in chain if type(e).__name__ == "ConnectError"), None)
        return (
            f"LLM server at {url} is unreachable ({name or type(transport).__name__}); "
            "start the server or fix llm.base_url"
        )
    return None


def exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an API error (openai's and ollama's carry `status_code`)."""
    for error in exception_chain(exc):
        status = getattr(error, "status_code", None)
        if isinstance(status, int) and status >= 400:
            return status
    return None


def _detail(exc: BaseException) -> str:
    """The server's own short explanation, when it gave one."""
    for error in exception_chain(exc):
        text = _explanation(getattr(error, "body", None))  # openai's errors
        text = text or _explanation(getattr(error, "error", None))  # ollama.ResponseError
        if text:
            return f" ({text.splitlines()[0][:120]})"
    return ""


def _explanation(body: object) -> str | None:
    """The message in an error body: a dict, JSON text, or plain text."""
    if isinstance(body, str) and body.strip().startswith("{"):
        with suppress(ValueError):
            body = json.loads(body)
    if isinstance(body, dict):
        body = body.get("message") or body.get("detail") or body.get("error")
    return body.strip() if isinstance(body, str) and body.strip() else None


def _status_hint(status: int, ollama: bool) -> str:
    if status in (401, 403):
        return "; check the API key (the variable named by llm.api_key_env)"
    if status == 404 and ollama:
        return "; check llm.model (`ollama pull` it first) and llm.base_url"
    if status == 404:
        return "; check llm.base_url (OpenAI-compatible servers usually end in /v1) and llm.model"
    return ""


def is_timeout(error: BaseException) -> bool:
    name = type(error).__name__
    return isinstance(error, TimeoutError) or name.endswith(("Timeout", "TimeoutError"))


def is_transport(error: BaseException) -> bool:
    # openai ships its own httpx fork, so match httpx's error family by name too.
    name = type(error).__name__
    return (
        isinstance(error, httpx.TransportError | ConnectionError)
        or name in {"APIConnectionError", "ConnectError", "TransportError", "ReadError"}
        or name.endswith("ProtocolError")
    )
