"""Writing the reply: the LLM phrases the decision, a template stands in when it cannot.

The reply must carry the decided answer; an LLM reply that drops or changes it is replaced by
the template, so a small model can polish wording but never alter what the experts decided.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage

from sensorium.agent.prompts import RESPONDER_SYSTEM, responder_request
from sensorium.graphs import Decision, Plan, normalise_answer
from sensorium.tools import Evidence


class AgentResponder:
    """Turns decisions and evidence into the text shown to the user."""

    def __init__(self, chat_model: BaseChatModel | None = None) -> None:
        self.chat_model = chat_model

    def respond(
        self, question: str, decisions: list[Decision], evidence: list[Evidence], plan: Plan
    ) -> str:
        """The reply for one turn."""
        template = template_reply(question, decisions, evidence, plan)
        if (
            self.chat_model is None
            or plan.llm_error is not None  # a dead or hung LLM is not asked twice in a turn
            or len(decisions) != 1
            or decisions[0].abstained
            or _unvoted(decisions, evidence)  # the template lists what else was found
        ):
            return template
        decision = decisions[0]
        assert decision.answer is not None
        try:
            reply = self.chat_model.invoke(
                [
                    SystemMessage(RESPONDER_SYSTEM),
                    HumanMessage(responder_request(question, decision.answer, decision.confidence)),
                ]
            )
        except Exception:
            return template
        lines = reply.content.strip().splitlines() if isinstance(reply.content, str) else []
        first = lines[0].strip() if lines else ""
        # Only the first line is shown, so only the first line may carry the answer.
        if not first or normalise_answer(decision.answer) not in normalise_answer(first):
            return template
        return first


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
    if not plan.calls and not decisions and not evidence:
        needs_image = any("needs an image" in note for note in plan.notes)
        if needs_image:
            return "I need an image to answer that: attach one (--image PATH)."
        return "I have no expert for that request. Try asking about an attached image."
    many = len(decisions) > 1
    for number, decision in enumerate(decisions, start=1):
        prefix = f"Image {number}: " if many else ""
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
    if failures:
        parts.append("Failed: " + "; ".join(f"{e.expert} ({e.error})" for e in failures))
    return " ".join(parts)
