"""The planner: LLM proposals vetted by the router, schema checks, fallbacks; the responder."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PIL import Image

from sensorium import Agent, Evidence, ImageRef, Plan, Settings
from sensorium.agent import AgentPlanner, AgentResponder, Router
from sensorium.evals import builtin_suites, load_suite
from sensorium.evals.metrics import routing_metrics
from sensorium.evals.suite import RoutingRow
from sensorium.graphs import Decision, Vote
from sensorium.tools import ToolContext, expert
from sensorium.tools.registry import Registry

Scripted = Callable[..., object]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Agent:
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    return Agent(settings, chat_model=None)


@pytest.fixture(scope="module")
def image(agent: Agent) -> ImageRef:
    return agent.add_image(Image.new("RGB", (8, 8), (200, 30, 30)))


def planner_with(agent: Agent, reply: str, scripted: Scripted) -> AgentPlanner:
    return AgentPlanner(agent.registry, agent.router, scripted(lambda messages: reply))  # type: ignore[arg-type]


def tools_of(plan: Plan) -> list[str]:
    return [call.tool for call in plan.calls]


def test_a_reply_that_is_not_json_falls_back_to_the_router(
    agent: Agent, image: ImageRef, scripted: Scripted
) -> None:
    plan = planner_with(agent, "I think you should use colours", scripted).plan(
        "What colour is this?", [image], []
    )
    assert tools_of(plan) == ["colours"]
    assert plan.notes == ["LLM plan unusable (ValueError); the router decided"]


def test_an_unknown_tool_is_ignored_with_a_note(
    agent: Agent, image: ImageRef, scripted: Scripted
) -> None:
    plan = planner_with(agent, '{"tools": ["telepathy"]}', scripted).plan(
        "What colour is this?", [image], []
    )
    assert tools_of(plan) == ["colours"]
    assert plan.notes == ["LLM named unknown tool 'telepathy'; ignored"]


def test_an_implausible_pick_is_vetoed(agent: Agent, image: ImageRef, scripted: Scripted) -> None:
    plan = planner_with(agent, '{"tools": ["embed_image"]}', scripted).plan(
        "What colour is this?", [image], []
    )
    assert tools_of(plan) == ["colours"]
    assert plan.notes == ["LLM picked embed_image, which does not fit the request; ignored"]


def test_a_plausible_pick_is_kept_and_marked_as_the_llms(
    agent: Agent, image: ImageRef, scripted: Scripted
) -> None:
    plan = planner_with(agent, '{"tools": ["classify"]}', scripted).plan(
        "What animal is this?", [image], []
    )
    assert set(tools_of(plan)) == {"classify", "answer_question"}
    sources = {call.tool: call.source for call in plan.calls}
    assert sources == {"classify": "llm", "answer_question": "router"}
    assert plan.notes == []


def test_calls_carry_the_image_by_reference_and_the_question(agent: Agent, image: ImageRef) -> None:
    plan = agent.planner.plan("Is this a cat?", [image], [])
    for call in plan.calls:
        assert call.arguments["image"] == image
        assert call.arguments["question"] == "Is this a cat?"


def test_one_call_per_image(agent: Agent, image: ImageRef) -> None:
    other = agent.add_image(Image.new("RGB", (8, 8), (30, 30, 200)))
    plan = agent.planner.plan("What colour is this?", [image, other], [])
    assert [c.arguments["image"] for c in plan.calls] == [image, other]


def test_without_an_image_image_tools_are_dropped(agent: Agent) -> None:
    plan = agent.planner.plan("What colour is this?", [], [])
    assert plan.calls == []
    assert plan.notes == ["colours needs an image and none is attached"]
    reply = agent.responder.respond("What colour is this?", [], [], plan)
    assert reply == "I need an image to answer that: attach one (--image PATH)."


@expert(examples=["Measure the sharpness against a threshold"])
def sharpness(ctx: ToolContext, image: ImageRef, threshold: float) -> Evidence:
    """Say whether an image is sharper than a threshold.

    Args:
        image: the image
        threshold: the sharpness threshold, which no planner can guess
    """
    return Evidence(answer="sharp", confidence=0.5)


def test_a_call_failing_the_tool_schema_is_dropped_with_a_note(
    agent: Agent, image: ImageRef
) -> None:
    registry = Registry([*agent.registry, sharpness])
    router = Router(registry, agent.router.embed)
    plan = AgentPlanner(registry, router).plan(
        "Measure the sharpness against a threshold", [image], []
    )
    assert "sharpness" not in tools_of(plan)
    assert "dropped a call: tool 'sharpness': threshold: Field required" in plan.notes


def test_routing_accuracy_on_the_foundation_set(agent: Agent) -> None:
    rows = [r for r in load_suite(builtin_suites()["routing-foundation"]).rows]
    assert len(rows) >= 30 and all(isinstance(r, RoutingRow) for r in rows)
    pairs = [(r.expected_tools, agent.router.route(r.request)) for r in rows]  # type: ignore[attr-defined]
    assert routing_metrics(pairs).exact_accuracy >= 0.9


def decision(answer: str, confidence: float) -> Decision:
    vote = Vote(
        expert="classify", answer=answer, normalised=answer, confidence=confidence, weight=1
    )
    return Decision(
        answer=answer, confidence=confidence, agreement=1, abstained=False, votes=[vote]
    )


def test_the_responder_keeps_an_llm_reply_that_carries_the_answer(scripted: Scripted) -> None:
    responder = AgentResponder(scripted(lambda messages: "That is a cat!"))  # type: ignore[arg-type]
    assert responder.respond("What animal?", [decision("cat", 0.9)], [], Plan()) == "That is a cat!"


def test_the_responder_rejects_an_llm_reply_that_changes_the_answer(scripted: Scripted) -> None:
    responder = AgentResponder(scripted(lambda messages: "That is a lovely dog."))  # type: ignore[arg-type]
    plan = Plan(calls=[])
    reply = responder.respond("What animal?", [decision("cat", 0.9)], [], plan)
    assert "cat" in reply.lower() and "dog" not in reply.lower()


def test_a_search_request_retrieves_then_follows_up(agent: Agent, image: ImageRef) -> None:
    plan = agent.planner.plan("find my photos of cats and describe the second one", [], [])
    assert [(c.tool, c.arguments) for c in plan.calls] == [
        ("retrieve", {"question": "find my photos of cats and describe the second one"})
    ]
    assert plan.follow_up is not None
    assert (plan.follow_up.tools, plan.follow_up.positions) == (["caption"], [2])
    assert plan.follow_up.question == "describe the second one"


def test_a_search_uses_the_threads_image_only_when_pointed_at(
    agent: Agent, image: ImageRef
) -> None:
    unrelated = agent.planner.plan("show me pictures of dogs", [image], [])
    assert "image" not in unrelated.calls[0].arguments
    pointed = agent.planner.plan("which of my photos looks like this one?", [image], [])
    assert pointed.calls[0].arguments["image"] == image
