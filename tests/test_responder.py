"""The reply: an LLM may reword what the experts decided, never add to it (the grounding
check), and a question that needs no image is answered only by an LLM trusted with it."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import ScriptedChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from sensorium import Evidence, Plan
from sensorium.agent import AgentResponder
from sensorium.agent.grounding import content_words, ungrounded_words
from sensorium.agent.prompts import OWN_ANSWER_NOTE
from sensorium.agent.responder import (
    LLM_GAVE_NO_ANSWER,
    NO_LLM_FOR_TEXT,
    PACKAGED_LLM_FOR_TEXT,
)
from sensorium.graphs import Decision, Vote

Script = Callable[[list[BaseMessage]], str | AIMessage]
Scripted = Callable[[Script], ScriptedChatModel]


def decision(answer: str, confidence: float, *experts: str, **fields: object) -> Decision:
    votes = [
        Vote(
            expert=name,
            answer=answer,
            normalised=answer,
            confidence=confidence,
            weight=1,
            supports_answer=True,
        )
        for name in experts or ("classify",)
    ]
    return Decision(
        answer=answer,
        confidence=confidence,
        agreement=1,
        abstained=False,
        votes=votes,
        **fields,  # type: ignore[arg-type]
    )


def evidence(answer: str, *experts: str) -> list[Evidence]:
    return [Evidence(expert=name, answer=answer, confidence=0.9) for name in experts]


CAT = decision("cat", 1.0, "answer_question", "classify")
CAT_EVIDENCE = evidence("cat", "answer_question", "classify")
CAT_TEMPLATE = "Cat. (100% confidence; from answer_question, classify)"
CAT_PROVENANCE = "(cat: 100% confidence; from answer_question, classify)"


def phrased(scripted: Scripted, text: str, question: str = "What animal is this?") -> str:
    """The reply when the LLM phrases the cat decision as `text`."""
    responder = AgentResponder(scripted(lambda messages: text))
    return responder.respond(question, [CAT], CAT_EVIDENCE, Plan()).text


# What the packaged SmolLM2-135M wrote for Chelsea the cat (measured; docs/configuration.md).
@pytest.mark.parametrize(
    "embellished",
    [
        "The cat is a friendly, fluffy little creature that loves to play and explore.",
        "The cat is a friendly and playful animal.",
        "This cat is a classic example of a well-known and iconic image in the world of "
        "technology.",
        "It is not a cat.",  # negations are content, not function words
        "It is a cat, probably a kitten.",  # a synonym is a new claim to a lexical check
    ],
)
def test_a_phrasing_that_adds_to_the_decision_gets_the_template(
    scripted: Scripted, embellished: str
) -> None:
    assert phrased(scripted, embellished) == CAT_TEMPLATE


@pytest.mark.parametrize(
    "plain", ["It is a cat.", "This is a cat.", "The image shows a cat, likely (100% sure)."]
)
def test_a_phrasing_that_only_restates_the_decision_is_kept(scripted: Scripted, plain: str) -> None:
    assert phrased(scripted, plain) == f"{plain} {CAT_PROVENANCE}"


def test_the_camera_photo_is_not_an_iconic_image_of_technology(scripted: Scripted) -> None:
    """The other measured embellishment: the camera photo, decided 'tripod'."""
    tripod = decision("tripod", 0.88, "answer_question", "classify")
    responder = AgentResponder(
        scripted(
            lambda m: (
                "The tripod is a classic example of a well-known and iconic image in "
                "the world of technology."
            )
        )
    )
    reply = responder.respond(
        "What is in this picture?", [tripod], evidence("tripod", "classify"), Plan()
    )
    assert reply.text == "Tripod. (88% confidence; from answer_question, classify)"


def test_an_invented_name_is_refused(scripted: Scripted) -> None:
    """SmolLM2 named the astronaut photo's 'bobsled' decision 'Betsy Bobsled' (measured)."""
    bobsled = decision("bobsled", 0.69, "answer_question", "classify")
    responder = AgentResponder(scripted(lambda m: "Betsy Bobsled"))
    reply = responder.respond(
        "Who is in this photo?", [bobsled], evidence("bobsled", "classify"), Plan()
    )
    assert reply.text == "Bobsled. (69% confidence; from answer_question, classify)"


def test_an_llm_plan_text_that_embellishes_gets_the_template() -> None:
    plan = Plan(
        final="The experts found a cat, a fluffy creature that loves to play.",
        final_source="llm",
        final_kind="answer",
    )
    reply = AgentResponder().respond("What animal is this?", [CAT], CAT_EVIDENCE, plan)
    assert reply.text == CAT_TEMPLATE


def test_an_llm_plan_text_that_restates_the_decision_is_kept() -> None:
    plan = Plan(
        final="The experts found a cat (100% confidence, from classify and answer_question).",
        final_source="llm",
        final_kind="answer",
    )
    reply = AgentResponder().respond("What animal is this?", [CAT], CAT_EVIDENCE, plan)
    assert reply.text == f"{plan.final} {CAT_PROVENANCE}"


def test_an_llm_plan_text_in_the_users_language_that_restates_the_decision_is_kept() -> None:
    final = "Les experts ont trouvé un chat (cat), avec 100 % de confiance."
    plan = Plan(final=final, final_source="llm", final_kind="answer")
    reply = AgentResponder().respond("Quel animal est-ce ?", [CAT], CAT_EVIDENCE, plan)
    assert reply.text == f"{final} {CAT_PROVENANCE}"


def test_the_words_of_the_more_specific_and_runner_up_answers_are_grounded(
    scripted: Scripted,
) -> None:
    cat = decision(
        "cat",
        0.8,
        "classify",
        more_specific="egyptian cat",
        runner_up="dog",
        runner_up_confidence=0.1,
    )
    responder = AgentResponder(
        scripted(lambda m: "It looks like a cat, likely an Egyptian cat, or a dog (10%).")
    )
    reply = responder.respond("What animal is this?", [cat], evidence("cat", "classify"), Plan())
    assert reply.text.startswith("It looks like a cat, likely an Egyptian cat, or a dog (10%).")


def test_a_decided_no_may_be_restated_with_a_negation(scripted: Scripted) -> None:
    no = decision("no", 0.9, "answer_question")
    responder = AgentResponder(scripted(lambda m: "No, this is not a dog."))
    reply = responder.respond("Is this a dog?", [no], evidence("no", "answer_question"), Plan())
    assert reply.text == "No, this is not a dog. (no: 90% confidence; from answer_question)"


@pytest.mark.parametrize(
    ("question", "reply"),
    [
        ("Quel animal est-ce ?", "C'est un chat (cat)."),
        ("Quel animal est-ce ?", "Cet animal est un cat."),
        ("¿Qué animal es este?", "Es un gato (cat)."),
        ("Was für ein Tier ist das?", "Das ist eine Katze (cat)."),
    ],
)
def test_a_reply_in_the_users_language_that_keeps_the_answer_is_kept(
    scripted: Scripted, question: str, reply: str
) -> None:
    assert phrased(scripted, reply, question) == f"{reply} {CAT_PROVENANCE}"


@pytest.mark.parametrize(
    ("question", "reply"),
    [
        ("Quel animal est-ce ?", "C'est un chat."),  # the answer translated away: unchecked
        ("Quel animal est-ce ?", "C'est un joli chat (cat)."),  # 'joli' added
        ("Quel animal est-ce ?", "C'est un chat qui aime jouer (cat)."),
        ("这是什么动物？", "这是一只可爱的猫 (cat)"),  # each character is a word
        ("What animal is this?", "นี่คือแมวที่น่ารักมาก (cat)"),  # a clause is no translation
    ],
)
def test_a_reply_in_another_language_that_adds_or_drops_gets_the_template(
    scripted: Scripted, question: str, reply: str
) -> None:
    assert phrased(scripted, reply, question) == CAT_TEMPLATE


def test_the_phrasing_prompt_asks_for_the_users_language_and_nothing_more(
    scripted: Scripted,
) -> None:
    model = scripted(lambda m: "C'est un chat (cat).")
    AgentResponder(model).respond("Quel animal est-ce ?", [CAT], CAT_EVIDENCE, Plan())
    system, request = model.calls[0]
    assert isinstance(system, SystemMessage) and isinstance(request, HumanMessage)
    assert "in the language of the question" in system.text
    assert "nothing more" in system.text and "in parentheses" in system.text
    assert request.text == "Question: Quel animal est-ce ?\nAnswer: cat\nConfidence: 100%"


def test_content_words_drop_function_words_of_several_languages() -> None:
    assert content_words("It's the cat of the image") == ["cat", "image"]
    assert content_words("C'est le chat de l'image") == ["chat", "image"]
    assert content_words("There are two cats") == ["2", "cats"]
    assert ungrounded_words("There are two cats.", ["How many cats?", "2"]) == []
    assert ungrounded_words("Three cats.", ["How many cats?", "2"]) == ["3"]


TEXT_ONLY = Plan(final_source="router", final_kind="text_only")


def test_without_an_llm_a_text_only_question_gets_one_honest_sentence() -> None:
    reply = AgentResponder().respond("What is the capital of France?", [], [], TEXT_ONLY)
    assert reply.text == (
        "I answer questions about images; configure an LLM for other questions "
        "(see llm.backend in docs/configuration.md)."
    )
    assert reply.text == NO_LLM_FOR_TEXT


def test_the_packaged_llm_is_not_asked_text_only_questions(scripted: Scripted) -> None:
    model = scripted(lambda m: "L'Alma, la France, est une belle paysage.")  # measured
    responder = AgentResponder(model, text_answers=False)
    reply = responder.respond("What is the capital of France?", [], [], TEXT_ONLY)
    assert reply.text == PACKAGED_LLM_FOR_TEXT and not model.calls
    assert reply.text == (
        "I answer questions about images; configure an LLM for other questions "
        "(the packaged SmolLM2 answers them wrongly; see llm.backend in docs/configuration.md)."
    )
    # It may still reword a decision, under the same check as any LLM.
    worded = AgentResponder(scripted(lambda m: "It is a cat."), text_answers=False)
    text = worded.respond("What animal is this?", [CAT], CAT_EVIDENCE, Plan()).text
    assert text == f"It is a cat. {CAT_PROVENANCE}"


def test_a_trusted_llm_answers_a_text_only_question_in_the_users_language(
    scripted: Scripted,
) -> None:
    model = scripted(lambda m: "La capitale de la France est Paris.")
    reply = AgentResponder(model).respond(
        "Quelle est la capitale de la France ?", [], [], TEXT_ONLY
    )
    assert reply.text == f"La capitale de la France est Paris.\n{OWN_ANSWER_NOTE}"
    assert "in the user's language" in model.calls[0][0].text


def test_a_trusted_llm_that_fails_a_text_only_question_says_so(scripted: Scripted) -> None:
    def dead(messages: list[BaseMessage]) -> str:
        raise RuntimeError("server gone")

    reply = AgentResponder(scripted(dead)).respond("Who wrote Hamlet?", [], [], TEXT_ONLY)
    assert reply.text == LLM_GAVE_NO_ANSWER and reply.llm_error == "RuntimeError: server gone"
    # An LLM that already failed this turn (while planning) is not asked again.
    failed = Plan(final_source="router", final_kind="text_only", llm_error="server gone")
    model = scripted(lambda m: "Shakespeare.")
    assert AgentResponder(model).respond("Who wrote Hamlet?", [], [], failed).text == (
        LLM_GAVE_NO_ANSWER
    )
    assert not model.calls
