"""Shared fixtures: isolated data folders, example images, scripted chat models, the CLI."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import Field
from tiny_models import (
    build_blip_caption,
    build_blip_vqa,
    build_clip,
    build_llava,
    build_owlvit,
    build_siglip,
    build_vilt_vqa,
)

from sensorium import LLMSettings, Settings
from sensorium.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_IMAGES = REPO / "examples" / "images"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cache of derived data (label embeddings) for the whole run, CLI subprocesses too:
    encoding the 1000 label prompts takes seconds per fresh cache."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_cache: Path
) -> Iterator[None]:
    """No test reads or writes the user's folders, and nothing may reach a model hub."""
    monkeypatch.setenv("SENSORIUM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    for name in list(os.environ):
        if name.startswith("SENSORIUM_") and name != "SENSORIUM_DATA_DIR":
            monkeypatch.delenv(name)
    monkeypatch.setenv("SENSORIUM_CACHE_DIR", str(shared_cache))
    yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Lite settings in a temporary data folder, without an LLM."""
    return Settings(data_dir=tmp_path / "data", llm=LLMSettings(backend="none"))


@pytest.fixture
def chelsea() -> Path:
    """scikit-image's photo of Chelsea the cat, shipped in examples/."""
    return EXAMPLE_IMAGES / "chelsea.jpg"


@pytest.fixture
def red_image() -> Path:
    """A plain red 64x64 PNG."""
    return EXAMPLE_IMAGES / "red.png"


class ScriptedChatModel(BaseChatModel):
    """A tool-calling chat model whose reply a Python function of the messages computes: a
    text, or an `AIMessage` (with `tool_calls`). It records what it was asked and bound."""

    script: Callable[[list[BaseMessage]], str | AIMessage]
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    bound_tools: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        self.bound_tools = [convert_to_openai_tool(tool) for tool in tools]
        return self

    def _generate(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> ChatResult:
        self.calls.append(messages)
        reply = self.script(messages)
        message = reply if isinstance(reply, AIMessage) else AIMessage(content=reply)
        return ChatResult(generations=[ChatGeneration(message=message)])


def call(name: str, **args: Any) -> dict[str, Any]:
    """A tool call for a scripted reply, e.g. `call("caption", image="1")`."""
    return {"name": name, "args": args, "id": f"call_{uuid.uuid4().hex[:8]}", "type": "tool_call"}


@pytest.fixture
def scripted() -> Callable[[Callable[[list[BaseMessage]], str | AIMessage]], ScriptedChatModel]:
    """Make a scripted chat model: `scripted(lambda messages: AIMessage("", tool_calls=...))`."""

    def make(script: Callable[[list[BaseMessage]], str | AIMessage]) -> ScriptedChatModel:
        return ScriptedChatModel(script=script, calls=[])

    return make


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    """Run the CLI in this process (fast); returns exit code, stdout, stderr."""

    def run(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["sensorium", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random checkpoints, one folder per role, built once per test run."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {
        "clip": build_clip(root / "clip"),
        "siglip": build_siglip(root / "siglip"),
        "blip_caption": build_blip_caption(root / "blip-caption"),
        "blip_vqa": build_blip_vqa(root / "blip-vqa"),
        "vilt_vqa": build_vilt_vqa(root / "vilt-vqa"),
        "detector": build_owlvit(root / "owlvit"),
        "vlm": build_llava(root / "llava"),
    }
