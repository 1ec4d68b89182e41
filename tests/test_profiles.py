"""Profiles: `lite` runs the packaged models, `standard` the transformers experts in the same
roles. The standard path runs end to end on tiny random checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sensorium import Agent, LLMSettings, Settings
from sensorium.tools import Registry
from sensorium.tools.clip_experts import ClipJointEncoder
from sensorium.tools.encoder import LiteJointEncoder
from sensorium.tools.hf_models import StandardModels
from sensorium.tools.profiles import in_profile

STANDARD = [
    "blip_answer",
    "blip_caption",
    "clip_answer",
    "clip_classify",
    "clip_embed",
    "vilt_answer",
]


def standard_settings(tmp_path: Path, tiny: dict[str, Path]) -> Settings:
    models = {role: str(tiny[role]) for role in ("clip", "blip_caption", "blip_vqa", "vilt_vqa")}
    return Settings(
        profile="standard",
        data_dir=tmp_path / "data",
        llm=LLMSettings(backend="none"),
        models=models,  # type: ignore[arg-type]
    )


def test_each_profile_discovers_its_experts() -> None:
    lite = Registry.discover().names()
    standard = Registry.discover(profile="standard").names()
    assert "classify" in lite and not set(lite) & set(STANDARD)
    assert set(STANDARD) <= set(standard)
    assert not {"classify", "answer_question", "caption", "embed_image"} & set(standard)
    assert {"colours", "retrieve"} <= set(standard)
    mixed = Registry.discover(["classify", "vilt_answer"]).names()  # named: any profile
    assert mixed == ["classify", "vilt_answer"]


def test_the_router_names_the_profiles_experts(tmp_path: Path, tiny: dict[str, Path]) -> None:
    agent = Agent(standard_settings(tmp_path, tiny), chat_model=None)
    assert agent.router.route("What animal is this?") == [
        "clip_classify",
        "vilt_answer",
        "blip_answer",
    ]
    assert agent.router.route("Describe this photo") == ["blip_caption"]
    assert agent.router.route("What colour is the car?") == ["colours", "vilt_answer"]


def test_lite_routing_labels_read_as_each_profiles_experts() -> None:
    assert in_profile(["classify", "answer_question"], "standard") == [
        "clip_classify",
        "vilt_answer",
        "blip_answer",
    ]
    both = in_profile(["answer_question", "colours", "retrieve"], "standard")
    assert both == ["vilt_answer", "blip_answer", "colours", "retrieve"]  # no repeats
    assert in_profile(["caption", "my_plugin"], "lite") == ["caption", "my_plugin"]


def test_a_standard_turn_runs_on_tiny_checkpoints(
    tmp_path: Path, tiny: dict[str, Path], chelsea: Path
) -> None:
    agent = Agent(standard_settings(tmp_path, tiny), chat_model=None)
    result = agent.ask("What animal is this?", [chelsea])
    experts = {e.expert: e for e in result.evidence}
    assert set(experts) == {"clip_classify", "vilt_answer", "blip_answer"}
    assert all(e.error is None for e in experts.values()), [e.error for e in experts.values()]
    assert experts["vilt_answer"].payload["model"] == str(tiny["vilt_vqa"])
    assert result.decisions and result.reply


def test_search_uses_the_profiles_joint_space(
    tmp_path: Path, tiny: dict[str, Path], chelsea: Path
) -> None:
    agent = Agent(standard_settings(tmp_path, tiny), chat_model=None)
    assert isinstance(agent.encoder, ClipJointEncoder)
    report = agent.index([chelsea.parent])
    assert report.added == 3
    hits = agent.search("a cat", k=3)
    assert len(hits) == 3 and agent.open_index().count() == 3
    found = agent.ask("find my photos of cats")
    assert next(e for e in found.evidence if e.expert == "retrieve").error is None
    lite = Agent(
        Settings(data_dir=tmp_path / "data", llm=LLMSettings(backend="none")), chat_model=None
    )
    assert isinstance(lite.encoder, LiteJointEncoder)
    assert lite.open_index().count() == 0  # a separate collection per encoder


def test_a_missing_checkpoint_fails_the_expert_not_the_turn(tmp_path: Path, chelsea: Path) -> None:
    settings = Settings(
        profile="standard",
        data_dir=tmp_path / "data",
        llm=LLMSettings(backend="none"),
        models={"vilt_vqa": str(tmp_path / "nowhere")},  # type: ignore[arg-type]
        tools=["vilt_answer"],
    )
    result = Agent(settings, chat_model=None).ask("What is this?", [chelsea])
    (evidence,) = result.evidence
    assert "ViLT VQA model" in (evidence.error or "") and "nowhere" in (evidence.error or "")
    assert result.abstained and "failed" in result.reply


def test_tools_list_shows_the_standard_models_and_device(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("tools", "list", "--profile", "standard", "--json")
    assert result.code == 0, result.err
    listed = {t["name"]: t for t in json.loads(result.out)}
    assert set(STANDARD) <= set(listed)
    assert listed["clip_classify"]["model"] == "openai/clip-vit-base-patch32"
    assert listed["vilt_answer"]["model"] == "dandelin/vilt-b32-finetuned-vqa"
    assert listed["blip_caption"]["device"] == "cpu"
    assert listed["colours"]["model"] is None
    shown = cli("tools", "list", "--profile", "standard")
    assert shown.code == 0 and "vilt_answer" in shown.out


@pytest.mark.parametrize("profile", ["huge"])
def test_an_unknown_profile_is_refused(cli, profile: str) -> None:  # type: ignore[no-untyped-def]
    result = cli("tools", "list", "--profile", profile)
    assert result.code == 1 and "invalid setting profile" in result.err


def test_the_vqa_suites_run_the_new_senses_on_the_standard_profile(
    tmp_path: Path, tiny: dict[str, Path]
) -> None:
    from test_eval_run import VQA_ROWS
    from test_eval_suite import write_suite

    from sensorium.evals import load_suite, run_suite

    roles = ("clip", "blip_caption", "blip_vqa", "vilt_vqa", "detector", "vlm")
    settings = standard_settings(tmp_path, tiny).model_copy(
        update={"models": StandardModels(**{role: str(tiny[role]) for role in roles})}
    )
    rows = [
        *VQA_ROWS,
        VQA_ROWS[0] | {"id": "q5", "question": "How many cats are there?", "answers": ["1"]},
    ]
    suite = load_suite(write_suite(tmp_path / "suite", rows))
    outcome = run_suite(suite, settings, out=tmp_path / "runs", chat_model=None)
    assert outcome.results.errors == 0
    assert {"detect", "vlm_answer", "vilt_answer"} <= set(outcome.results.metrics)
    assert outcome.results.counts["detect"] == outcome.results.counts["vlm_answer"] == len(rows)
