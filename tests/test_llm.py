"""The local LLM backend: SmolLM2 through llama.cpp, behind LangChain's chat model interface."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.language_models import BaseChatModel

from sensorium import Agent, LLMSettings, ModelUnavailableError, PlannerSettings, Settings
from sensorium.agent import load_chat_model, smollm2_path
from sensorium.agent.grounding import grounding_sources, ungrounded_words
from sensorium.agent.responder import PACKAGED_LLM_FOR_TEXT
from sensorium.tools import ModelHost

pytestmark = pytest.mark.slow


def test_smollm2_ships_in_its_package() -> None:
    path = smollm2_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.stat().st_size > 50_000_000


def test_backend_none_means_no_model() -> None:
    assert load_chat_model(LLMSettings(backend="none"), ModelHost("cpu")) is None


def test_a_missing_model_file_is_one_clear_line(tmp_path: Path) -> None:
    settings = LLMSettings(backend="smollm2", model_path=tmp_path / "missing.gguf")
    with pytest.raises(ModelUnavailableError, match=r"LLM model file not found: .*missing\.gguf"):
        load_chat_model(settings, ModelHost("cpu"))


def test_a_corrupt_model_file_is_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ModelUnavailableError, match=r"cannot load LLM from .*bad\.gguf") as info:
        load_chat_model(LLMSettings(backend="smollm2", model_path=bad), ModelHost("cpu"))
    assert "\n" not in str(info.value)


def test_the_agent_degrades_to_the_router_when_the_llm_is_missing(
    settings: Settings, tmp_path: Path, red_image: Path
) -> None:
    settings.llm = LLMSettings(backend="smollm2", model_path=tmp_path / "missing.gguf")
    agent = Agent(settings, host=ModelHost("cpu"))
    assert agent.chat_model is None
    assert agent.warnings and "LLM model file not found" in agent.warnings[0]
    assert agent.ask("What colour is this?", [red_image]).answer == "red"


def test_smollm2_plans_by_calling_installed_tools(settings: Settings, chelsea: Path) -> None:
    """With `policy = "llm"` the packaged SmolLM2 plans through real tool calls."""
    settings.llm = LLMSettings(backend="smollm2")
    settings.planner = PlannerSettings(policy="llm", max_steps=1)  # one planning call a turn
    agent = Agent(settings)
    assert isinstance(agent.chat_model, BaseChatModel)
    assert agent.planner.source == "llm"
    calls = []
    for request in ["What colour is this?", "Describe this image", "Is this a dog?"]:
        result = agent.ask(request, [chelsea])
        assert result.reply
        calls += [call for call in result.plan.calls if call.source == "llm"]
    assert calls, "SmolLM2 made no tool call"
    ran = [call.tool for call in calls if call.error is None]
    assert ran and set(ran) <= set(agent.registry.names())


def test_a_full_turn_with_the_llm(settings: Settings, chelsea: Path) -> None:
    settings.llm = LLMSettings(backend="smollm2")
    result = Agent(settings).ask("What animal is this?", [chelsea])
    assert result.answer == "cat"
    assert "cat" in result.reply.lower()


def test_the_packaged_smollm2_rewords_only_under_the_check(
    settings: Settings, chelsea: Path
) -> None:
    """Whatever SmolLM2 writes, the reply adds nothing to the decision, and a question that
    needs no image is declined instead of answered (it got all such questions wrong)."""
    settings.llm = LLMSettings(backend="smollm2")
    agent = Agent(settings)
    assert agent.chat_model is not None and not agent.warnings
    for question in ["What animal is this?", "Describe this image.", "Quel animal est-ce ?"]:
        result = agent.ask(question, [chelsea])
        said = result.reply.rsplit(" (", 1)[0]  # the provenance is the template's own
        sources = grounding_sources(question, result.decisions, result.evidence)
        assert ungrounded_words(said, sources, [result.answer or ""]) == [], result.reply
    assert agent.ask("What is the capital of France?").reply == PACKAGED_LLM_FOR_TEXT
