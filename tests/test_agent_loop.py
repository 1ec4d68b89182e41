"""The agent loop: a tool-calling chat model plans each step; results come back as
ToolMessages; the loop ends when it answers or at max_steps. Scripted models stand in for LLMs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import EXAMPLE_IMAGES, ScriptedChatModel, call
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from sensorium import Agent, LLMSettings, ModelUnavailableError, Settings
from sensorium.agent import ReplyEvent, ToolCallEvent
from sensorium.agent.events import DecisionEvent, EvidenceEvent, TokenEvent
from sensorium.agent.responder import NEEDS_IMAGE, NO_LLM_FOR_TEXT, PACKAGED_LLM_FOR_TEXT

Script = Callable[[list[BaseMessage]], str | AIMessage]
Scripted = Callable[[Script], ScriptedChatModel]


def results(messages: list[BaseMessage]) -> list[ToolMessage]:
    """The tool results of the current turn (after its question)."""
    last = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
    return [m for m in messages[last:] if isinstance(m, ToolMessage)]


def steps(*replies: AIMessage | str) -> Script:
    """A script that plays the replies in order, one per planning step of the turn."""

    def script(messages: list[BaseMessage]) -> AIMessage | str:
        last = max(i for i, m in enumerate(messages) if isinstance(m, HumanMessage))
        done = sum(1 for m in messages[last:] if isinstance(m, AIMessage) and m.tool_calls)
        return replies[min(done, len(replies) - 1)]

    return script


def calls(*tool_calls: dict[str, object]) -> AIMessage:
    return AIMessage(content="", tool_calls=list(tool_calls))  # type: ignore[arg-type]


def ran(result: object) -> list[str]:
    return [e.expert for e in result.evidence]  # type: ignore[attr-defined]


def test_the_experts_that_run_are_exactly_those_the_llm_calls(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    model = scripted(steps(calls(call("classify", image="1")), "It is a cat."))
    result = Agent(settings, chat_model=model).ask("What animal is this?", [chelsea])
    assert ran(result) == ["classify"]
    assert [(c.tool, c.source, c.step) for c in result.plan.calls] == [("classify", "llm", 1)]
    assert result.answer == "cat" and result.answered_by == "experts"
    # The reply is the LLM's, with the decision's provenance kept beside it.
    assert result.reply.startswith("It is a cat. (cat: ") and "from classify" in result.reply


def test_every_enabled_expert_is_bound_as_a_tool(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    model = scripted(lambda messages: "Hello.")
    agent = Agent(settings, chat_model=model)
    agent.ask("What is this?", [chelsea])
    names = [tool["function"]["name"] for tool in model.bound_tools]
    assert names == agent.registry.names()
    caption = next(t for t in model.bound_tools if t["function"]["name"] == "caption")
    image = caption["function"]["parameters"]["properties"]["image"]
    # An image is named by its number, and only the conversation's images can be named.
    assert image["type"] == "string" and "number of an image" in image["description"]
    assert image["enum"] == ["1"]


def test_the_llm_sees_results_as_tool_messages(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    model = scripted(steps(calls(call("classify", image="1"), call("colours", image="1")), "Done"))
    Agent(settings, chat_model=model).ask("What is this?", [chelsea])
    seen = results(model.calls[1])
    assert [m.name for m in seen] == ["classify", "colours"]
    assert "classify on image 1 (chelsea.jpg):" in str(seen[0].content)
    assert "confidence" in str(seen[0].content)
    # The image memory is text the model can read: names and numbers, never pixels.
    system = model.calls[0][0]
    assert isinstance(system, SystemMessage)
    assert "1. chelsea.jpg" in str(system.content) and "base64" not in str(model.calls)


def test_parallel_calls_on_two_images(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    red = EXAMPLE_IMAGES / "red.png"
    model = scripted(steps(calls(call("colours", image="1"), call("colours", image="2")), ""))
    result = Agent(settings, chat_model=model).ask("What colours are these?", [chelsea, red])
    assert sorted(e.image for e in result.evidence) == sorted(i.sha256 for i in result.images)
    assert len(result.decisions) == 2 and result.decisions[1].answer == "red"


def test_retrieve_then_an_expert_on_the_second_hit(
    settings: Settings, scripted: Scripted, tmp_path: Path
) -> None:
    agent_model = scripted(
        steps(
            calls(call("retrieve", question="a red picture", k=2)),
            calls(call("colours", image="hit 2")),
            "",
        )
    )
    agent = Agent(settings, chat_model=agent_model)
    agent.index([EXAMPLE_IMAGES])
    result = agent.ask("Find my red pictures and tell me the colour of the second one")
    assert ran(result) == ["retrieve", "colours"]
    hits = result.evidence[0].payload["hits"]
    assert result.evidence[1].image == hits[1]["image"]["sha256"]
    assert [c.step for c in result.plan.calls] == [1, 2]
    listed = str(results(agent_model.calls[1])[0].content)
    assert "hit 2: image 2" in listed


def test_an_unknown_tool_is_corrected_on_the_next_step(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    model = scripted(
        steps(calls(call("segment", image="1")), calls(call("caption", image="1")), "")
    )
    result = Agent(settings, chat_model=model).ask("Describe this", [chelsea])
    refused, used = result.plan.calls
    assert refused.tool == "segment" and refused.error is not None
    assert "there is no tool named 'segment'; the tools are: " in refused.error
    assert ran(result) == ["caption"] and used.step == 2
    error = results(model.calls[1])[0]
    assert error.status == "error" and "no tool named 'segment'" in str(error.content)


def test_bad_arguments_come_back_as_an_error_and_are_corrected(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    model = scripted(
        steps(
            calls(call("classify", image="7"), call("colours", image="1", top_k="many")),
            calls(call("classify", image="chelsea.jpg")),
            "",
        )
    )
    result = Agent(settings, chat_model=model).ask("What is this?", [chelsea])
    first = results(model.calls[1])
    assert "no image '7' here; use an image number: 1 (chelsea.jpg)" in str(first[0].content)
    assert "tool 'colours': top_k: " in str(first[1].content)
    assert ran(result) == ["classify"] and result.answer == "cat"


def test_an_llm_that_never_stops_is_stopped_at_max_steps(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    settings.planner.max_steps = 3
    model = scripted(lambda messages: calls(call("colours", image="1")))
    result = Agent(settings, chat_model=model).ask("What colour?", [chelsea])
    assert len(model.calls) == 3 and result.plan.steps == 3
    assert ran(result) == ["colours"] * 3
    assert result.reply.count("confidence; from colours") == 1  # the same decision, said once
    assert any("stopped after 3 steps" in note for note in result.plan.notes)
    assert result.answer is not None  # answered with what the experts found


def test_a_chinese_request_runs_the_expert_the_llm_chose_in_english(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    model = scripted(
        steps(calls(call("answer_question", image="1", question="What animal is this?")), "")
    )
    result = Agent(settings, chat_model=model).ask("这是什么动物？", [chelsea])
    assert ran(result) == ["answer_question"]
    assert result.plan.calls[0].arguments["question"] == "What animal is this?"
    assert result.answer == "cat"


def test_a_text_only_question_is_the_llms_own_answer(
    settings: Settings, scripted: Scripted
) -> None:
    model = scripted(lambda messages: "The capital of France is Paris.")
    result = Agent(settings, chat_model=model).ask("What is the capital of France?")
    assert result.evidence == [] and result.plan.calls == []
    assert result.reply.startswith("The capital of France is Paris.")
    assert "no expert was consulted" in result.reply and result.answered_by == "llm"


def test_an_unsupported_request_runs_nothing(settings: Settings, scripted: Scripted) -> None:
    refusal = "I can't make videos; I can describe, classify and search images."
    model = scripted(lambda messages: refusal)
    result = Agent(settings, chat_model=model).ask("Make a video of my cat")
    assert result.evidence == [] and result.reply.startswith(refusal)


def test_without_an_llm_the_router_answers_and_declines(settings: Settings, chelsea: Path) -> None:
    agent = Agent(settings, chat_model=None)
    cat = agent.ask("What animal is this?", [chelsea])
    assert cat.answer == "cat" and {c.source for c in cat.plan.calls} == {"router"}
    drawing = agent.ask("Draw me a horse")
    assert drawing.evidence == [] and drawing.plan.calls == []
    assert drawing.reply.startswith("I can't do that (image generation); I can: ")
    assert "describe an image in one sentence" in drawing.reply
    # A question for no image, and no LLM to answer it: one honest sentence, not "attach one".
    france = agent.ask("What is the capital of France?")
    assert france.reply == (
        "I answer questions about images; configure an LLM for other questions "
        "(see llm.backend in docs/configuration.md)."
    )
    assert france.answered_by == "nobody" and not france.evidence


def test_a_dead_llm_hands_the_turn_to_the_router(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    def dead(messages: list[BaseMessage]) -> str:
        raise ModelUnavailableError("the LLM server at http://127.0.0.1:9 is not running")

    result = Agent(settings, chat_model=scripted(dead)).ask("What animal is this?", [chelsea])
    assert result.answer == "cat" and {c.source for c in result.plan.calls} == {"router"}
    assert result.plan.llm_error == "the LLM server at http://127.0.0.1:9 is not running"
    assert "the router planned instead" in result.plan.notes[0]


def test_a_chat_model_without_tool_calling_leaves_planning_to_the_router(
    settings: Settings, chelsea: Path
) -> None:
    from langchain_core.language_models.fake_chat_models import FakeListChatModel

    agent = Agent(settings, chat_model=FakeListChatModel(responses=["A cat."]))
    assert any("cannot call tools; the router plans" in w for w in agent.warnings)
    assert agent.ask("What animal is this?", [chelsea]).answer == "cat"


def test_the_planner_sees_the_conversation(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    model = scripted(steps(calls(call("classify", image="1")), "A cat."))
    agent = Agent(settings, chat_model=model)
    first = agent.ask("What animal is this?", [chelsea])
    agent.ask("And what colour is it?", thread_id=first.thread_id)
    second_turn = model.calls[2]
    texts = [str(m.content) for m in second_turn if isinstance(m, HumanMessage | AIMessage)]
    assert texts[0] == "What animal is this?" and texts[1].startswith("A cat.")
    assert texts[2] == "And what colour is it?"
    assert "earlier: cat" in str(second_turn[0].content)  # the image memory's findings


def test_the_second_of_two_attached_images_is_the_second_one(
    settings: Settings, chelsea: Path
) -> None:
    agent = Agent(settings, chat_model=None)
    red = EXAMPLE_IMAGES / "red.png"
    first = agent.ask("What colour is this?", [chelsea])
    second = agent.ask("what colour is the second one?", [chelsea, red], thread_id=first.thread_id)
    assert second.images == [agent.add_image(red)] and second.answer == "red"
    assert {e.image for e in second.evidence} == {second.images[0].sha256}


def test_stream_yields_calls_evidence_decisions_then_the_reply(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    model = scripted(steps(calls(call("classify", image="1"), call("colours", image="1")), ""))
    events = list(Agent(settings, chat_model=model).stream("What is this?", [chelsea]))
    kinds = [event.kind for event in events]
    assert kinds[:2] == ["tool_call", "tool_call"] and kinds[-1] == "reply"
    assert kinds.count("evidence") == 2 and kinds.index("decision") > kinds.index("evidence")
    assert isinstance(events[0], ToolCallEvent) and events[0].call.tool == "classify"
    landed = {e.evidence.expert for e in events if isinstance(e, EvidenceEvent)}
    assert landed == {"classify", "colours"}
    final = events[-1]
    assert isinstance(final, ReplyEvent) and final.result.evidence
    decision = next(e for e in events if isinstance(e, DecisionEvent))
    assert decision.decision == final.result.decisions[0]


@pytest.mark.parametrize("reference", ["1", "image 1", "chelsea.jpg", "chelsea", "sha"])
def test_an_image_can_be_named_by_number_name_or_sha256(
    settings: Settings, scripted: Scripted, chelsea: Path, reference: str
) -> None:
    agent = Agent(settings, chat_model=None)
    ref = agent.add_image(chelsea)
    name = ref.sha256[:10] if reference == "sha" else reference
    model = scripted(steps(calls(call("colours", image=name)), ""))
    result = Agent(settings, chat_model=model).ask("What colour?", [chelsea])
    assert [e.image for e in result.evidence] == [ref.sha256]


def test_token_events_carry_only_what_the_llm_wrote_once(
    settings: Settings, scripted: Scripted
) -> None:
    model = scripted(lambda messages: "Paris is the capital of France.")
    events = list(Agent(settings, chat_model=model).stream("What is the capital of France?"))
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert "".join(t.text for t in tokens) == "Paris is the capital of France."
    assert {t.node for t in tokens} == {"agent"}
    # Without an LLM nothing streams: the template reply arrives with the ReplyEvent only.
    plain = list(
        Agent(settings, chat_model=None).stream(
            "What animal is this?", [EXAMPLE_IMAGES / "chelsea.jpg"]
        )
    )
    assert not [e for e in plain if isinstance(e, TokenEvent)]


def test_requested_experts_hold_for_their_own_turn_and_ask_for_a_missing_image(
    settings: Settings, chelsea: Path
) -> None:
    agent = Agent(settings, chat_model=None)
    blind = agent.ask("Describe it", tools=["caption"])
    assert blind.reply == NEEDS_IMAGE and not blind.evidence and blind.plan.steps == 1
    image = agent.add_image(chelsea)
    config = {"configurable": {"thread_id": "raw"}}
    turn = {"messages": [HumanMessage("Describe it")], "question": "Describe it"}
    state = agent.graph.invoke({**turn, "images": [image], "requested_tools": ["caption"]}, config)
    assert [e.expert for e in state["evidence"]] == ["caption"]
    # The next turn leaves `requested_tools` out: the planner chooses again.
    question = "What animal is this?"
    state = agent.graph.invoke({"messages": [HumanMessage(question)], "question": question}, config)
    assert [e.expert for e in state["evidence"]] != ["caption"] and state["evidence"]


def test_without_images_only_experts_that_need_none_are_offered(
    settings: Settings, scripted: Scripted
) -> None:
    model = scripted(lambda messages: "Please attach a photo.")
    Agent(settings, chat_model=model).ask("What colour is this?")
    offered = {tool["function"]["name"]: tool for tool in model.bound_tools}
    assert set(offered) == {"retrieve"}
    # Nothing to name, so no image argument a small model could fill with a made-up URL.
    assert "image" not in offered["retrieve"]["function"]["parameters"]["properties"]


def test_a_capable_llm_replies_in_the_users_language_with_the_decided_answer(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    model = scripted(steps(calls(call("classify", image="1")), "C'est un chat (cat)."))
    result = Agent(settings, chat_model=model).ask("Quel animal est-ce ?", [chelsea])
    assert result.answer == "cat"
    assert (
        result.reply.startswith("C'est un chat (cat). (cat: ") and "from classify" in result.reply
    )
    # The planner is asked for that: the user's language, the experts' answers, nothing more.
    system = str(model.calls[0][0].content)
    assert "in the user's language" in system and "nothing more" in system


def test_a_capable_llms_embellished_reply_gives_way_to_the_template(
    settings: Settings, scripted: Scripted, chelsea: Path
) -> None:
    embellished = "C'est un chat (cat), un animal adorable qui aime jouer."
    model = scripted(steps(calls(call("classify", image="1")), embellished))
    result = Agent(settings, chat_model=model).ask("Quel animal est-ce ?", [chelsea])
    assert result.answer == "cat" and embellished not in result.reply
    assert result.reply.startswith("Cat. (") and result.reply.endswith("from classify)")


def test_the_default_agent_has_no_llm_and_declines_text_only_questions_honestly(
    tmp_path: Path, chelsea: Path
) -> None:
    agent = Agent(Settings(data_dir=tmp_path / "data"))  # chat_model="auto": the default backend
    assert agent.chat_model is None and agent.warnings == []
    assert agent.ask("What animal is this?", [chelsea]).reply.startswith("Cat. (")
    assert agent.ask("Who wrote Hamlet?").reply == NO_LLM_FOR_TEXT


def test_the_packaged_smollm2_neither_plans_nor_answers_text_only_questions(
    settings: Settings, scripted: Scripted, chelsea: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opted into (`llm.backend = "smollm2"`), it only rewords decisions, under the check."""
    model = scripted(lambda messages: "The cat is a friendly, fluffy little creature.")
    monkeypatch.setattr("sensorium.agent.agent.load_chat_model", lambda llm, host: model)
    settings.llm = LLMSettings(backend="smollm2")
    agent = Agent(settings)
    assert agent.chat_model is model and agent.planner.source == "router"
    france = agent.ask("What is the capital of France?")
    assert france.reply == PACKAGED_LLM_FOR_TEXT and not model.calls
    cat = agent.ask("What animal is this?", [chelsea])
    assert len(model.calls) == 1  # asked to word the decision; it embellished, so:
    assert cat.reply.startswith("Cat. (") and "fluffy" not in cat.reply
