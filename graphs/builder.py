"""The turn graph: plan -> experts (parallel fan-out with `Send`) -> fuse -> respond.

`compile_graph` takes its collaborators (planner, responder, tools) as arguments, so the graph
knows nothing of LLMs; `sensorium.build_graph(settings)` wires in the real ones.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from sensorium.graphs.fusion import FusionSettings, fuse_by_image
from sensorium.graphs.state import (
    ExpertTask,
    FollowUp,
    ImageMemory,
    Plan,
    Planner,
    ResetEvidence,
    Responder,
    ToolCall,
    TurnState,
    image_at,
)
from sensorium.tools import Evidence, ImageRef, Registry, ToolContext
from sensorium.tools.questions import question_kind


class ExpertRunner:
    """Runs one tool call with a time limit; any failure becomes Evidence with `error`."""

    def __init__(self, registry: Registry, context: ToolContext, timeout_s: float) -> None:
        self.registry = registry
        self.context = context
        self.timeout_s = timeout_s
        # Python threads cannot be killed: a timed-out expert finishes in the background
        # while the turn moves on without it.
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sensorium-expert")

    def __call__(self, call: ToolCall) -> Evidence:
        if call.tool not in self.registry:
            return Evidence(expert=call.tool, error=f"no tool named {call.tool!r} is installed")
        tool = self.registry.get(call.tool)
        future = self._pool.submit(tool.run, self.context, dict(call.arguments))
        try:
            return future.result(timeout=self.timeout_s)
        except FutureTimeout:
            return Evidence(
                expert=call.tool,
                error=f"timed out after {self.timeout_s:g} s",
                latency_ms=self.timeout_s * 1000,
                image=tool.image_of(call.arguments),
            )


def retrieved_images(evidence: list[Evidence]) -> list[ImageRef]:
    """Images an expert found this turn (a retriever's `hits`), best first."""
    found: list[ImageRef] = []
    for item in evidence:
        for hit in item.payload.get("hits", []) if item.ok else []:
            if isinstance(hit, dict) and "image" in hit:
                found.append(ImageRef.model_validate(hit["image"]))
    return found


def follow_up_calls(
    stage: FollowUp, retrieved: list[ImageRef], registry: Registry
) -> list[ToolCall]:
    """The second-stage calls: each follow-up tool on each chosen retrieved image."""
    chosen = [image_at(retrieved, position) for position in stage.positions]
    calls = []
    for image in dict.fromkeys(image for image in chosen if image is not None):
        for name in stage.tools:
            if name not in registry:
                continue
            tool = registry.get(name)
            arguments: dict[str, Any] = {}
            if tool.image_params:
                arguments[tool.image_params[0]] = image
            if tool.takes_question:
                arguments["question"] = stage.question
            calls.append(ToolCall(tool=name, arguments=arguments, source="router"))
    return calls


def compile_graph(
    *,
    planner: Planner,
    responder: Responder,
    registry: Registry,
    context: ToolContext,
    fusion: FusionSettings | None = None,
    expert_timeout_s: float = 120.0,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Build and compile the turn graph from its collaborators."""
    fusion = fusion or FusionSettings()
    run_expert = ExpertRunner(registry, context, expert_timeout_s)

    def plan(state: TurnState) -> dict[str, Any]:
        images = list(state.get("images", []))
        memory = ImageMemory(
            gallery=[*state.get("gallery", []), *images], retrieved=state.get("retrieved", [])
        )
        chosen = planner.plan(
            state.get("question", ""),
            images,
            state.get("messages", []),
            memory,
            tools=state.get("requested_tools"),
        )
        if chosen.images is not None:
            images = chosen.images
        return {
            "plan": chosen,
            "images": images,
            "gallery": images,
            "evidence": ResetEvidence(),
            "decisions": [],
            "reply": "",
        }

    def fan_out(state: TurnState) -> list[Send] | str:
        calls = state["plan"].calls
        if not calls:
            return "fuse"
        return [Send("expert", ExpertTask(call=call)) for call in calls]

    def expert(task: ExpertTask) -> dict[str, Any]:
        return {"evidence": [run_expert(task["call"])]}

    def collect(state: TurnState) -> dict[str, Any]:
        retrieved = retrieved_images(state.get("evidence", []))
        if not retrieved:
            return {}
        return {"retrieved": retrieved, "gallery": retrieved}

    def follow_up(state: TurnState) -> list[Send] | str:
        stage = state["plan"].follow_up
        retrieved = retrieved_images(state.get("evidence", []))
        if stage is None or not retrieved:
            return "fuse"
        calls = follow_up_calls(stage, retrieved, registry)
        return [Send("follow_up_expert", ExpertTask(call=call)) for call in calls] or "fuse"

    def fuse(state: TurnState) -> dict[str, Any]:
        tools = {
            e.expert: registry.get(e.expert)
            for e in state.get("evidence", [])
            if e.expert in registry
        }
        answering = [
            e
            for e in state.get("evidence", [])
            if e.expert in tools and tools[e.expert].answers_questions
        ]
        # Experts that saw the question answer it; the others (a captioner) only describe,
        # and vote only when nobody answered the question itself.
        voters = [e for e in answering if tools[e.expert].takes_question] or answering
        kind = question_kind(state.get("question", ""))
        return {"decisions": fuse_by_image(voters, fusion, kind)}

    def respond(state: TurnState) -> dict[str, Any]:
        reply = responder.respond(
            state.get("question", ""),
            state.get("decisions", []),
            state.get("evidence", []),
            state.get("plan", Plan()),
        )
        return {"reply": reply, "messages": [AIMessage(content=reply)]}

    graph = StateGraph(TurnState)
    graph.add_node("plan", plan)
    graph.add_node("expert", expert)  # type: ignore[arg-type]
    graph.add_node("collect", collect)
    graph.add_node("follow_up_expert", expert)  # type: ignore[arg-type]
    graph.add_node("fuse", fuse)
    graph.add_node("respond", respond)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", fan_out, ["expert", "fuse"])
    graph.add_edge("expert", "collect")
    graph.add_conditional_edges("collect", follow_up, ["follow_up_expert", "fuse"])
    graph.add_edge("follow_up_expert", "fuse")
    graph.add_edge("fuse", "respond")
    graph.add_edge("respond", END)
    return graph.compile(checkpointer=checkpointer)
