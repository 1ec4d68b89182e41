"""The state one conversation thread carries through the graph, and its reducers."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Protocol, TypedDict

from langchain_core.messages import AIMessage, AnyMessage
from langgraph.graph.message import add_messages
from pydantic import BaseModel, Field

from sensorium.graphs.fusion import Decision
from sensorium.graphs.memory import ImageMemory
from sensorium.tools import Evidence, ImageRef

CallSource = Literal["llm", "router", "caller"]


class ToolCall(BaseModel):
    """One expert call of a step, with its arguments (images as references).

    A call the planner got wrong (an unknown tool, arguments that fail the tool's schema, an
    image reference that names no image) keeps its `error` and does not run; the planner sees
    the error as the call's result and may correct it on the next step.
    """

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    source: CallSource = "router"
    id: str = Field("", description="the tool call id the planner gave it")
    step: int = Field(1, ge=1, description="the step of the loop that made the call")
    error: str | None = Field(None, description="why the call was refused (it did not run)")


class Plan(BaseModel):
    """Every call of a turn, step by step, and how the planner got there."""

    calls: list[ToolCall] = Field(default_factory=list)
    steps: int = Field(0, ge=0, description="how many times the planner was asked")
    notes: list[str] = Field(default_factory=list, description="why the plan looks as it does")
    llm_error: str | None = Field(
        None, description="why the LLM failed this turn; the rest of the turn does without it"
    )
    final: str = Field(
        "", description="the planner's closing text (an LLM's own answer, or a refusal)"
    )
    final_source: CallSource | None = Field(None, description="who wrote `final`")
    final_kind: str | None = Field(
        None,
        description="why the planner stopped: 'answer' (an LLM's own text), 'done' (the "
        "experts answered), 'declined' (no expert can), 'needs_image', 'text_only', 'no_tool', "
        "'stopped' (planner.max_steps ran out)",
    )
    declined: str | None = Field(None, description="what was asked that no expert does")

    def step_calls(self, step: int) -> list[ToolCall]:
        """The calls made at one step."""
        return [call for call in self.calls if call.step == step]


class ResetEvidence(BaseModel):
    """Written at the start of a turn so it starts with no evidence from the last one."""


def merge_evidence(
    current: list[Evidence] | None, update: list[Evidence] | ResetEvidence
) -> list[Evidence]:
    """Reducer: parallel experts append; a `ResetEvidence` clears the list for a new turn."""
    if isinstance(update, ResetEvidence):
        return []
    return [*(current or []), *update]


def remember_images(current: list[ImageRef] | None, update: list[ImageRef]) -> list[ImageRef]:
    """Reducer: the thread's image memory, in first-seen order, each image once."""
    seen = {image.sha256 for image in current or []}
    fresh = [image for image in update if image.sha256 not in seen]
    return [*(current or []), *list({image.sha256: image for image in fresh}.values())]


def merge_findings(current: dict[str, str] | None, update: dict[str, str]) -> dict[str, str]:
    """Reducer: what was last found about each image (by sha256)."""
    return {**(current or {}), **update}


class TurnState(TypedDict, total=False):
    """Graph state. Input per turn: `messages` (the user's message), `question`, `images`."""

    messages: Annotated[list[AnyMessage], add_messages]
    question: str
    images: list[ImageRef]  # attached to this turn
    requested_tools: list[str] | None  # set per turn: ask exactly these experts
    gallery: Annotated[list[ImageRef], remember_images]
    retrieved: list[ImageRef]  # the last retrieval's hits, best first
    findings: Annotated[dict[str, str], merge_findings]
    plan: Plan
    evidence: Annotated[list[Evidence], merge_evidence]
    decisions: list[Decision]
    reply: str


class ExpertTask(TypedDict):
    """What the fan-out sends to one expert branch."""

    call: ToolCall


class TurnView(BaseModel):
    """What the planner sees at one step: the thread's messages and its image memory."""

    question: str
    messages: list[AnyMessage]
    memory: ImageMemory
    step: int = Field(ge=1)
    llm_error: str | None = Field(None, description="the LLM already failed this turn")


class PlannerReply(BaseModel):
    """The planner's move: a message with tool calls (another step) or without (done)."""

    message: AIMessage
    source: CallSource
    notes: list[str] = Field(default_factory=list)
    llm_error: str | None = None
    final_kind: str | None = Field(None, description="see `Plan.final_kind`")
    declined: str | None = None


class Planner(Protocol):
    """Chooses the next step of a turn: which experts to call, or that it is done."""

    def __call__(self, view: TurnView) -> PlannerReply:
        """The next move for this view of the turn."""
        ...


class Reply(BaseModel):
    """The responder's text, and why its LLM failed if it did (the text then does without)."""

    text: str
    llm_error: str | None = None


class Responder(Protocol):
    """Writes the reply from the decisions."""

    def respond(
        self, question: str, decisions: list[Decision], evidence: list[Evidence], plan: Plan
    ) -> Reply:
        """The reply to show the user."""
        ...
