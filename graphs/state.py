"""The state one conversation thread carries through the graph, and its reducers."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field

from sensorium.graphs.fusion import Decision
from sensorium.tools import Evidence, ImageRef


class ToolCall(BaseModel):
    """One expert to consult, with its arguments (images as references)."""

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    source: Literal["llm", "router"] = "router"


class Plan(BaseModel):
    """The experts chosen for a turn, and how they were chosen."""

    calls: list[ToolCall] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="why the plan looks as it does")


class ResetEvidence(BaseModel):
    """Written by the plan node so a new turn starts with no evidence from the last one."""


def merge_evidence(
    current: list[Evidence] | None, update: list[Evidence] | ResetEvidence
) -> list[Evidence]:
    """Reducer: parallel experts append; a `ResetEvidence` clears the list for a new turn."""
    if isinstance(update, ResetEvidence):
        return []
    return [*(current or []), *update]


class TurnState(TypedDict, total=False):
    """Graph state. Input per turn: `messages` (the user's message), `question`, `images`."""

    messages: Annotated[list[AnyMessage], add_messages]
    question: str
    images: list[ImageRef]
    plan: Plan
    evidence: Annotated[list[Evidence], merge_evidence]
    decisions: list[Decision]
    reply: str


class ExpertTask(TypedDict):
    """What the fan-out sends to one expert branch."""

    call: ToolCall


class Planner(Protocol):
    """Chooses the experts for a turn."""

    def plan(self, question: str, images: list[ImageRef], history: list[AnyMessage]) -> Plan:
        """The plan for this question and these images."""
        ...


class Responder(Protocol):
    """Writes the reply from the decisions."""

    def respond(
        self, question: str, decisions: list[Decision], evidence: list[Evidence], plan: Plan
    ) -> str:
        """The reply to show the user."""
        ...
