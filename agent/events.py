"""What a turn produces: the events `Agent.stream` yields as it runs, and the `TurnResult`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from sensorium.graphs import Decision, Plan, ToolCall, plain_arguments
from sensorium.tools import Evidence, ImageRef


class TurnResult(BaseModel):
    """Everything one turn produced: the reply, the decisions, the plan and the evidence."""

    thread_id: str
    question: str
    reply: str
    answer: str | None = Field(None, description="the first decided answer")
    confidence: float = 0.0
    abstained: bool = True
    answered_by: Literal["experts", "llm", "nobody"] = Field(
        "nobody",
        description="'experts': decisions back the reply; 'llm': the LLM's own answer, no "
        "expert consulted; 'nobody': a refusal, or a request for an image",
    )
    decisions: list[Decision] = Field(default_factory=list, description="every step's, in order")
    plan: Plan = Field(default_factory=Plan, description="every step's calls, in order")
    evidence: list[Evidence] = Field(default_factory=list, description="every step's, in order")
    images: list[ImageRef] = Field(
        default_factory=list,
        description="the images the experts looked at, in order; else those attached",
    )

    def summary(self) -> dict[str, Any]:
        """The stable JSON shape the CLI prints with `--json`."""
        return {
            "thread_id": self.thread_id,
            "question": self.question,
            "answer": self.answer,
            "confidence": round(self.confidence, 4),
            "abstained": self.abstained,
            "answered_by": self.answered_by,
            "reply": self.reply,
            "plan": [_call_summary(c) for c in self.plan.calls],
            "steps": self.plan.steps,
            "plan_notes": self.plan.notes,
            "declined": self.plan.declined,
            "llm_error": self.plan.llm_error,
            "evidence": [
                {
                    "expert": e.expert,
                    "answer": e.answer,
                    "confidence": round(e.confidence, 4),
                    "latency_ms": round(e.latency_ms, 1),
                    "where": e.where,
                    "error": e.error,
                    "image": e.image,
                    "call_id": e.call_id,
                    "payload": {k: v for k, v in e.payload.items() if k != "vector"},
                }
                for e in self.evidence
            ],
            "decisions": [d.model_dump(mode="json") for d in self.decisions],
            "images": [i.model_dump(mode="json") for i in self.images],
        }


def _call_summary(call: ToolCall) -> dict[str, Any]:
    arguments = plain_arguments(call.arguments)
    return {
        "step": call.step,
        "tool": call.tool,
        "arguments": arguments,
        "source": call.source,
        "id": call.id,
        "error": call.error,
    }


class ToolCallEvent(BaseModel):
    """The planner called an expert (emitted as each step is planned, before it runs)."""

    kind: Literal["tool_call"] = "tool_call"
    call: ToolCall


class EvidenceEvent(BaseModel):
    """An expert answered (emitted as each one lands, while the others still run)."""

    kind: Literal["evidence"] = "evidence"
    evidence: Evidence


class DecisionEvent(BaseModel):
    """Fusion decided about one image at the end of a step."""

    kind: Literal["decision"] = "decision"
    decision: Decision


class TokenEvent(BaseModel):
    """A piece of text as an LLM streams it (`node`: 'agent' plans, 'respond' replies)."""

    kind: Literal["token"] = "token"
    text: str
    node: str


class ReplyEvent(BaseModel):
    """The turn is over: its reply and everything behind it (always the last event)."""

    kind: Literal["reply"] = "reply"
    result: TurnResult


TurnEvent = Annotated[
    ToolCallEvent | EvidenceEvent | DecisionEvent | TokenEvent | ReplyEvent,
    Field(discriminator="kind"),
]
