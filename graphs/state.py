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


class FollowUp(BaseModel):
    """Experts to run on images retrieved earlier in the same turn."""

    tools: list[str] = Field(default_factory=list)
    question: str = Field("", description="what to ask about the retrieved images")
    positions: list[int] = Field(
        default_factory=lambda: [1], description="1-based positions among the results; -1: last"
    )


class Plan(BaseModel):
    """The experts chosen for a turn, and how they were chosen."""

    calls: list[ToolCall] = Field(default_factory=list)
    follow_up: FollowUp | None = Field(None, description="a second stage on retrieved images")
    images: list[ImageRef] | None = Field(
        None, description="the images the turn is about, when the planner resolved a reference"
    )
    notes: list[str] = Field(default_factory=list, description="why the plan looks as it does")
    llm_error: str | None = Field(
        None, description="why the LLM failed this turn; the rest of the turn does without it"
    )


class ResetEvidence(BaseModel):
    """Written by the plan node so a new turn starts with no evidence from the last one."""


def merge_evidence(
    current: list[Evidence] | None, update: list[Evidence] | ResetEvidence
) -> list[Evidence]:
    """Reducer: parallel experts append; a `ResetEvidence` clears the list for a new turn."""
    if isinstance(update, ResetEvidence):
        return []
    return [*(current or []), *update]


def image_at(images: list[ImageRef], position: int) -> ImageRef | None:
    """The image at a 1-based position (-1 is the last), or None when there is none."""
    if position == 0 or not -len(images) <= position <= len(images):
        return None
    return images[position - 1] if position > 0 else images[position]


def remember_images(current: list[ImageRef] | None, update: list[ImageRef]) -> list[ImageRef]:
    """Reducer: the thread's image memory, in first-seen order, each image once."""
    seen = {image.sha256 for image in current or []}
    fresh = [image for image in update if image.sha256 not in seen]
    return [*(current or []), *list({image.sha256: image for image in fresh}.values())]


class TurnState(TypedDict, total=False):
    """Graph state. Input per turn: `messages` (the user's message), `question`, `images`."""

    messages: Annotated[list[AnyMessage], add_messages]
    question: str
    images: list[ImageRef]
    requested_tools: list[str] | None  # set per turn: ask exactly these experts
    gallery: Annotated[list[ImageRef], remember_images]
    retrieved: list[ImageRef]
    plan: Plan
    evidence: Annotated[list[Evidence], merge_evidence]
    decisions: list[Decision]
    reply: str


class ExpertTask(TypedDict):
    """What the fan-out sends to one expert branch."""

    call: ToolCall


class Planner(Protocol):
    """Chooses the experts for a turn."""

    def plan(
        self,
        question: str,
        images: list[ImageRef],
        history: list[AnyMessage],
        memory: ImageMemory,
        tools: list[str] | None = None,
    ) -> Plan:
        """The plan for this question and these images (exactly `tools` when given)."""
        ...


class ImageMemory(BaseModel):
    """The images a thread has seen: every one in order, and the last retrieval's results."""

    gallery: list[ImageRef] = Field(default_factory=list)
    retrieved: list[ImageRef] = Field(default_factory=list)


class Responder(Protocol):
    """Writes the reply from the decisions."""

    def respond(
        self, question: str, decisions: list[Decision], evidence: list[Evidence], plan: Plan
    ) -> str:
        """The reply to show the user."""
        ...
