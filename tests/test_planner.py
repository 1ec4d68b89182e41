"""The router as a tool-calling chat model (the planner without an LLM), and the responder."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from PIL import Image

from sensorium import Agent, Evidence, ImageRef, Plan, Settings
from sensorium.agent import AgentResponder, Router, RouterChatModel
from sensorium.agent.router_model import MEMORY_KEY
from sensorium.evals import builtin_suites, load_suite
from sensorium.evals.metrics import routing_metrics
from sensorium.evals.suite import RoutingRow
from sensorium.graphs import Decision, ImageMemory, Vote
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


def router_of(agent: Agent) -> RouterChatModel:
    return RouterChatModel(router=agent.router, registry=agent.registry)


def move(
    model: RouterChatModel, request: str, memory: ImageMemory, *after: AIMessage | ToolMessage
) -> AIMessage:
    system = SystemMessage("memory", additional_kwargs={MEMORY_KEY: memory.model_dump(mode="json")})
    return model.next_move([system, HumanMessage(request), *after])


def tools_of(message: AIMessage) -> list[str]:
    return [call["name"] for call in message.tool_calls]


def test_calls_carry_the_image_by_reference_and_the_question(agent: Agent, image: ImageRef) -> None:
    memory = ImageMemory(gallery=[image], attached=[image])
    message = move(router_of(agent), "Is this a cat?", memory)
    assert tools_of(message) == ["classify", "answer_question"]
    for call in message.tool_calls:
        assert call["args"] == {"image": image.sha256, "question": "Is this a cat?"}


def test_one_call_per_image(agent: Agent, image: ImageRef) -> None:
    other = agent.add_image(Image.new("RGB", (8, 8), (30, 30, 200)))
    memory = ImageMemory(gallery=[image, other], attached=[image, other])
    message = move(router_of(agent), "What colour is this?", memory)
    assert [c["args"]["image"] for c in message.tool_calls] == [image.sha256, other.sha256]


def test_without_an_image_the_router_asks_for_one(agent: Agent) -> None:
    message = move(router_of(agent), "What colour is this?", ImageMemory())
    assert message.tool_calls == [] and message.response_metadata["final"] == "needs_image"
    result = agent.ask("What colour is this?")
    assert result.reply == "I need an image to answer that: attach one (--image PATH)."


def test_the_router_only_calls_the_tools_bound_to_it(agent: Agent, image: ImageRef) -> None:
    memory = ImageMemory(gallery=[image], attached=[image])
    bound = router_of(agent).bind_tools([{"type": "function", "function": {"name": "classify"}}])
    assert tools_of(move(bound, "Is this a cat?", memory)) == ["classify"]


def test_after_its_step_the_router_is_done(agent: Agent, image: ImageRef) -> None:
    memory = ImageMemory(gallery=[image], attached=[image])
    model = router_of(agent)
    first = move(model, "Is this a cat?", memory)
    answered = [ToolMessage("yes", tool_call_id=c["id"]) for c in first.tool_calls]
    final = move(model, "Is this a cat?", memory, first, *answered)
    assert final.tool_calls == [] and final.response_metadata["final"] == "done"


@expert(examples=["Measure the sharpness against a threshold"])
def sharpness(ctx: ToolContext, image: ImageRef, threshold: float) -> Evidence:
    """Say whether an image is sharper than a threshold.

    Args:
        image: the image
        threshold: the sharpness threshold, which no planner can guess
    """
    return Evidence(answer="sharp", confidence=0.5)


def test_a_call_failing_the_tool_schema_is_refused_and_reported(
    settings: Settings, red_image: object
) -> None:
    agent = Agent(settings, chat_model=None, registry=Registry([sharpness]))
    result = agent.ask("Measure the sharpness against a threshold", [red_image])  # type: ignore[list-item]
    assert result.evidence == []
    (refused,) = result.plan.calls
    assert refused.error == "tool 'sharpness': threshold: Field required"
    assert result.reply == "Refused calls: sharpness (tool 'sharpness': threshold: Field required)"


def test_routing_accuracy_on_the_foundation_set(agent: Agent) -> None:
    rows = [r for r in load_suite(builtin_suites()["routing-foundation"]).rows]
    assert len(rows) >= 30 and all(isinstance(r, RoutingRow) for r in rows)
    pairs = [(r.expected_tools, agent.router.route(r.request)) for r in rows]  # type: ignore[attr-defined]
    assert routing_metrics(pairs).exact_accuracy >= 0.9


@pytest.mark.parametrize(
    ("request_text", "limit"),
    [
        ("Draw me a horse", "image generation"),
        ("Transcribe the audio", "audio"),
        ("What happens in this clip?", "video"),
        ("Segment the cat from the background", "segmentation"),
    ],
)
def test_the_router_declines_what_no_expert_does(
    agent: Agent, request_text: str, limit: str
) -> None:
    message = move(router_of(agent), request_text, ImageMemory())
    assert message.tool_calls == []
    assert message.response_metadata == {"final": "declined", "detail": limit}


@pytest.mark.parametrize(
    "request_text",
    [
        "I'm looking for a photo of a red car in my collection",
        "Which of my pictures look like this?",
    ],
)
def test_a_request_meaning_a_search_retrieves_without_the_usual_words(
    agent: Agent, request_text: str
) -> None:
    message = move(router_of(agent), request_text, ImageMemory())
    assert [call["name"] for call in message.tool_calls] == ["retrieve"]


def test_a_search_request_retrieves_then_follows_up_on_the_named_hit(
    agent: Agent, image: ImageRef
) -> None:
    other = agent.add_image(Image.new("RGB", (8, 8), (30, 30, 200)))
    model = router_of(agent)
    request = "find my photos of cats and describe the second one"
    first = move(model, request, ImageMemory())
    assert [(c["name"], c["args"]) for c in first.tool_calls] == [
        ("retrieve", {"question": request})
    ]
    found = ImageMemory(gallery=[image, other], retrieved=[image, other])
    hits = ToolMessage("2 images", tool_call_id=first.tool_calls[0]["id"])
    second = move(model, request, found, first, hits)
    assert [(c["name"], c["args"]) for c in second.tool_calls] == [
        ("caption", {"image": other.sha256})
    ]


def test_a_search_uses_the_threads_image_only_when_pointed_at(
    agent: Agent, image: ImageRef
) -> None:
    memory = ImageMemory(gallery=[image], attached=[image])
    unrelated = move(router_of(agent), "show me pictures of dogs", memory)
    assert "image" not in unrelated.tool_calls[0]["args"]
    pointed = move(router_of(agent), "which of my photos looks like this one?", memory)
    assert pointed.tool_calls[0]["args"]["image"] == image.sha256


def decision(answer: str, confidence: float) -> Decision:
    vote = Vote(
        expert="classify",
        answer=answer,
        normalised=answer,
        confidence=confidence,
        weight=1,
        supports_answer=True,
    )
    return Decision(
        answer=answer, confidence=confidence, agreement=1, abstained=False, votes=[vote]
    )


EVIDENCE = [Evidence(expert="classify", answer="cat", confidence=0.9)]


def test_the_responder_keeps_an_llm_reply_that_carries_the_answer(scripted: Scripted) -> None:
    responder = AgentResponder(scripted(lambda messages: "That is a cat!"))  # type: ignore[arg-type]
    reply = responder.respond("What animal?", [decision("cat", 0.9)], EVIDENCE, Plan())
    assert reply.text == "That is a cat! (cat: 90% confidence; from classify)"
    assert reply.llm_error is None


def test_the_responder_rejects_an_llm_reply_that_changes_the_answer(scripted: Scripted) -> None:
    responder = AgentResponder(scripted(lambda messages: "That is a lovely dog."))  # type: ignore[arg-type]
    reply = responder.respond("What animal?", [decision("cat", 0.9)], EVIDENCE, Plan())
    assert reply.text == "Cat. (90% confidence; from classify)"


def test_the_responder_never_shows_an_llm_text_that_contradicts_the_experts() -> None:
    plan = Plan(final="It is a dog.", final_source="llm", final_kind="answer")
    reply = AgentResponder().respond("What animal?", [decision("cat", 0.9)], EVIDENCE, plan)
    assert reply.text == "Cat. (90% confidence; from classify)"


def test_the_responder_reports_a_failing_llm_and_still_replies(scripted: Scripted) -> None:
    def broken(messages: object) -> str:
        raise RuntimeError("the model fell over\nwith a long trace")

    reply = AgentResponder(scripted(broken)).respond(  # type: ignore[arg-type]
        "What animal?", [decision("cat", 0.9)], EVIDENCE, Plan()
    )
    assert reply.text == "Cat. (90% confidence; from classify)"
    assert reply.llm_error == "RuntimeError: the model fell over with a long trace"


def test_router_embeds_plugins_by_their_examples(agent: Agent) -> None:
    registry = Registry([*agent.registry, sharpness])
    router = Router(registry, agent.router.embed)
    assert "sharpness" in router.route("Measure the sharpness against a threshold")
