"""Writing the reply: grounded in the decisions, with who said what.

When experts ran, the reply states each fused decision and the experts behind it. An LLM's
closing text (or its phrasing of a single decision) is used only when it carries the decided
answers and adds nothing to them (`sensorium.agent.grounding`), and the provenance is kept
beside it: a model may reword what the experts decided, never alter or embellish it. When no
expert ran, the reply is the LLM's own answer (marked as such), a refusal that lists what the
experts can do, a request for an image, or, for a question that needs no image and no LLM
trusted to answer it, a sentence that says so.
"""

from __future__ import annotations

import re

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from sensorium.agent.grounding import grounding_sources, ungrounded_words
from sensorium.agent.llm import describe_llm_failure, naming_the_server
from sensorium.agent.prompts import (
    OWN_ANSWER_NOTE,
    RESPONDER_SYSTEM,
    TEXT_ONLY_SYSTEM,
    responder_request,
)
from sensorium.graphs import Decision, Plan, Reply, normalise_answer
from sensorium.tools import Evidence, Registry

NEEDS_IMAGE = "I need an image to answer that: attach one (--image PATH)."
IMAGES_ONLY = "I answer questions about images; configure an LLM for other questions"
# No square brackets: a front-end that prints replies as rich markup would take "[llm]" for a tag.
WHERE_LLM = "see llm.backend in docs/configuration.md"
NO_LLM_FOR_TEXT = f"{IMAGES_ONLY} ({WHERE_LLM})."
# Measured (docs/configuration.md): it answered none of three such questions right.
PACKAGED_LLM_FOR_TEXT = f"{IMAGES_ONLY} (the packaged SmolLM2 answers them wrongly; {WHERE_LLM})."
LLM_GAVE_NO_ANSWER = "I answer questions about images; the LLM for other questions gave no answer."
NO_EXPERT_FITS = "I found no expert for that request"
# The router reads English only; a request it cannot place may well be one an LLM could.
ROUTER_LANGUAGE_HINT = (
    "(Without a tool-calling LLM, requests are matched in English: rephrase it, "
    "or configure an LLM, see planner.policy.)"
)


def capabilities(registry: Registry) -> str:
    """What the experts can do, from their descriptions: 'describe an image; ...'."""
    phrases = []
    for tool in registry:
        first = re.split(r"[.;(:]", tool.description, maxsplit=1)[0].strip()
        phrases.append(first[:1].lower() + first[1:])
    return "; ".join(phrases)


class AgentResponder:
    """Turns decisions and evidence into the text shown to the user.

    Args:
        chat_model: an LLM to phrase replies and answer text-only questions (None: templates)
        registry: the enabled experts, named when a request is declined
        text_answers: whether `chat_model` may answer questions that need no image (its
            answers cannot be checked against any expert); False for the packaged SmolLM2
    """

    def __init__(
        self,
        chat_model: BaseChatModel | None = None,
        registry: Registry | None = None,
        *,
        text_answers: bool = True,
    ):
        self.chat_model = chat_model
        self.capabilities = capabilities(registry) if registry is not None else ""
        self.text_answers = text_answers

    def respond(
        self, question: str, decisions: list[Decision], evidence: list[Evidence], plan: Plan
    ) -> Reply:
        """The reply for one turn; an LLM failure is reported beside the reply it cost."""
        failures: list[str] = []
        text = self._text(question, decisions, evidence, plan, failures)
        return Reply(text=text, llm_error=failures[0] if failures else None)

    def _text(
        self,
        question: str,
        decisions: list[Decision],
        evidence: list[Evidence],
        plan: Plan,
        failures: list[str],
    ) -> str:
        llm_usable = self.chat_model is not None and plan.llm_error is None
        if not evidence and not any(call.error for call in plan.calls):
            return self._without_experts(question, plan, llm_usable, failures)
        template = template_reply(question, decisions, evidence, plan)
        answered = [d for d in decisions if not d.abstained and d.answer]
        own = plan.final if plan.final_source == "llm" else ""
        if own and answered and _faithful(own, question, answered, decisions, evidence):
            return f"{own} ({'; '.join(_provenance(d) for d in answered)})"
        if (
            own
            or not llm_usable
            or len(decisions) != 1
            or not answered
            or _unvoted(decisions, evidence)  # the template lists what else was found
        ):
            return template
        phrased = self._phrase(question, answered[0], failures)
        if phrased and _faithful(phrased, question, answered, decisions, evidence):
            return f"{phrased} ({_provenance(answered[0])})"
        return template

    def _without_experts(
        self, question: str, plan: Plan, llm_usable: bool, failures: list[str]
    ) -> str:
        if plan.final_source == "llm" and plan.final:
            return f"{plan.final}\n{OWN_ANSWER_NOTE}"
        if plan.final_kind == "declined":
            what = f" ({plan.declined})" if plan.declined else ""
            return f"I can't do that{what}; I can: {self.capabilities}."
        if plan.final_kind == "no_tool":
            return f"{NO_EXPERT_FITS}; I can: {self.capabilities}. {ROUTER_LANGUAGE_HINT}"
        if plan.final_kind == "text_only":
            return self._text_only(question, llm_usable, failures)
        if plan.final_kind == "needs_image":
            return NEEDS_IMAGE
        return f"I can't do that; I can: {self.capabilities}."

    def _text_only(self, question: str, llm_usable: bool, failures: list[str]) -> str:
        """A question that needs no image: the LLM's own answer, marked, if one may give it."""
        if self.chat_model is None:
            return NO_LLM_FOR_TEXT
        if not self.text_answers:
            return PACKAGED_LLM_FOR_TEXT
        answer = self._own_answer(question, failures) if llm_usable else ""
        return f"{answer}\n{OWN_ANSWER_NOTE}" if answer else LLM_GAVE_NO_ANSWER

    def _phrase(self, question: str, decision: Decision, failures: list[str]) -> str:
        """The LLM's one-sentence phrasing of a decision ('' when it fails)."""
        assert self.chat_model is not None and decision.answer is not None
        messages = [
            SystemMessage(RESPONDER_SYSTEM),
            HumanMessage(responder_request(question, decision.answer, decision.confidence)),
        ]
        return _first_line(self.chat_model, messages, failures)

    def _own_answer(self, question: str, failures: list[str]) -> str:
        assert self.chat_model is not None
        messages = [SystemMessage(TEXT_ONLY_SYSTEM), HumanMessage(question)]
        return _first_line(self.chat_model, messages, failures)


def _first_line(model: BaseChatModel, messages: list[BaseMessage], failures: list[str]) -> str:
    """The first line of the model's reply; '' (and the failure noted) when it fails."""
    try:
        with naming_the_server(model):
            reply = model.invoke(messages)
    except Exception as exc:  # a dead LLM costs the polish, never the reply
        failures.append(describe_llm_failure(exc))
        return ""
    lines = reply.text.strip().splitlines()
    return lines[0].strip() if lines else ""


def _faithful(
    text: str,
    question: str,
    answered: list[Decision],
    decisions: list[Decision],
    evidence: list[Evidence],
) -> bool:
    """Whether an LLM's text about decisions states every decided answer and adds nothing."""
    if not _carries(text, answered):
        return False
    sources = grounding_sources(question, decisions, evidence)
    return not ungrounded_words(text, sources, [d.answer or "" for d in answered])


def _carries(text: str, decisions: list[Decision]) -> bool:
    """Whether a text states every decided answer (as the official normal form)."""
    said = f" {normalise_answer(text)} "
    return all(f" {normalise_answer(d.answer or '')} " in said for d in decisions)


def _provenance(decision: Decision) -> str:
    experts = sorted({v.expert for v in decision.votes if v.supports_answer})
    return f"{decision.answer}: {decision.confidence:.0%} confidence; from {', '.join(experts)}"


def _unvoted(decisions: list[Decision], evidence: list[Evidence]) -> list[Evidence]:
    """Evidence that informed the turn without voting (a retrieval, an embedding)."""
    voters = {vote.expert for decision in decisions for vote in decision.votes}
    return [e for e in evidence if e.ok and e.expert not in voters]


def template_reply(
    question: str, decisions: list[Decision], evidence: list[Evidence], plan: Plan
) -> str:
    """A plain reply built from the decisions, used when no LLM is available or trusted."""
    parts: list[str] = []
    failures = [e for e in evidence if e.error]
    # Numbered by image, not by decision: steps that ask again about one image share its number.
    images = list(dict.fromkeys(decision.image for decision in decisions))
    many = len(images) > 1
    for decision in decisions:
        prefix = f"Image {images.index(decision.image) + 1}: " if many else ""
        if decision.abstained:
            if decision.best_guess:
                parts.append(
                    f"{prefix}I am not sure. My best guess is {decision.best_guess} "
                    f"({decision.confidence:.0%} confidence)."
                )
            else:
                parts.append(f"{prefix}I could not find an answer ({decision.reason}).")
        else:
            answer = decision.answer or ""
            # who backs the answer: said it, or said a more specific form of it
            experts = sorted({v.expert for v in decision.votes if v.supports_answer})
            sentence = answer if answer.endswith(".") else f"{answer}."
            parts.append(
                f"{prefix}{sentence[0].upper()}{sentence[1:]} "
                f"({decision.confidence:.0%} confidence; from {', '.join(experts)})"
            )
    parts = [f"{e.expert}: {e.answer}." for e in _unvoted(decisions, evidence)] + parts
    # A planner that asks the same again (a small LLM looping) repeats nothing in the reply.
    parts = list(dict.fromkeys(parts))
    if failures:
        parts.append("Failed: " + "; ".join(f"{e.expert} ({e.error})" for e in failures))
    refused = [call for call in plan.calls if call.error]
    if refused and not parts:
        parts.append("Refused calls: " + "; ".join(f"{c.tool} ({c.error})" for c in refused))
    return " ".join(parts) or "The experts found nothing to report."
