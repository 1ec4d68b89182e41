"""The turn graph, an agent loop:

    begin -> agent -> experts (parallel `Send` fan-out) -> observe -> agent -> ... -> respond

`agent` asks the planner for the next step: tool calls (checked, then run in parallel) or
none (the turn is answered). `observe` fuses the step's answers per image and gives the
planner each call's result as a `ToolMessage`. `planner.max_steps` bounds the loop.

`compile_graph` takes its collaborators (planner, responder, tools) as arguments, so the graph
knows nothing of LLMs; `sensorium.build_graph(settings)` wires in the real ones.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from langchain_core.messages import AIMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Send

from sensorium.graphs.calls import check_call, expert_calls, new_call_id, plain_arguments
from sensorium.graphs.fusion import Decision, FusionSettings, fuse_by_image
from sensorium.graphs.memory import ImageMemory
from sensorium.graphs.observations import decision_text, observation
from sensorium.graphs.state import (
    ExpertTask,
    Plan,
    Planner,
    PlannerReply,
    ResetEvidence,
    Responder,
    ToolCall,
    TurnState,
    TurnView,
)
from sensorium.graphs.tracing import TRACER, in_current_context, record_expert, traced_step
from sensorium.tools import Evidence, ImageInputError, ImageRef, Registry, Tool, ToolContext
from sensorium.tools.questions import question_kind

DEFAULT_MAX_STEPS = 4


# Runs one validated-or-not call of a tool and returns its Evidence, never raising: in this
# process (`LocalExperts`) or elsewhere (`sensorium.tools.ray_experts.RayExperts`).
ExpertBackend = Callable[[Tool, dict[str, Any]], Evidence]


class LocalExperts:
    """Runs experts in this process, on a thread pool, with a time limit."""

    def __init__(self, context: ToolContext, timeout_s: float) -> None:
        self.context = context
        self.timeout_s = timeout_s
        # Python threads cannot be killed: a timed-out expert finishes in the background
        # while the turn moves on without it.
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sensorium-expert")

    def __call__(self, tool: Tool, arguments: dict[str, Any]) -> Evidence:
        future = self._pool.submit(in_current_context(tool.run), self.context, arguments)
        try:
            evidence: Evidence = future.result(timeout=self.timeout_s)
        except FutureTimeout:
            return Evidence(
                expert=tool.name,
                error=f"timed out after {self.timeout_s:g} s",
                latency_ms=self.timeout_s * 1000,
                image=tool.image_of(arguments),
            )
        return evidence


class ExpertRunner:
    """Runs one tool call on a backend, inside its span; any failure becomes Evidence with
    `error`."""

    def __init__(self, registry: Registry, backend: ExpertBackend) -> None:
        self.registry = registry
        self.backend = backend

    def __call__(self, call: ToolCall) -> Evidence:
        if call.tool not in self.registry:
            evidence = Evidence(expert=call.tool, error=f"no tool named {call.tool!r} is installed")
            return evidence.model_copy(update={"call_id": call.id})
        with TRACER.start_as_current_span(f"sensorium.expert.{call.tool}") as span:
            evidence = self.backend(self.registry.get(call.tool), dict(call.arguments))
            record_expert(span, evidence)
        return evidence.model_copy(update={"call_id": call.id})


def retrieved_images(evidence: list[Evidence]) -> list[ImageRef]:
    """Images an expert found (a retriever's `hits`), best first."""
    found: list[ImageRef] = []
    for item in evidence:
        for hit in item.payload.get("hits", []) if item.ok else []:
            if isinstance(hit, dict) and "image" in hit:
                found.append(ImageRef.model_validate(hit["image"]))
    return found


def memory_of(state: TurnState) -> ImageMemory:
    """The image memory as the planner sees it."""
    return ImageMemory(
        gallery=list(state.get("gallery", [])),
        attached=list(state.get("images", [])),
        retrieved=list(state.get("retrieved", [])),
        findings=dict(state.get("findings", {})),
    )


def compile_graph(
    *,
    planner: Planner,
    responder: Responder,
    registry: Registry,
    context: ToolContext,
    fusion: FusionSettings | None = None,
    expert_timeout_s: float = 120.0,
    max_steps: int = DEFAULT_MAX_STEPS,
    max_calls: int = 16,
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    experts: ExpertBackend | None = None,
) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Build and compile the turn graph from its collaborators.

    Args:
        planner: chooses each step's tool calls (an LLM, or the router)
        responder: writes the reply from the decisions
        registry: the experts calls may name
        context: what experts receive besides their arguments
        fusion: weights and abstention threshold
        expert_timeout_s: a call taking longer becomes an error
        max_steps: most steps of tool calls in one turn
        max_calls: most calls run in one step (the rest come back as errors)
        checkpointer: where threads persist
        experts: where experts run (default: in this process, `LocalExperts`)
    """
    fusion = fusion or FusionSettings()
    run_expert = ExpertRunner(registry, experts or LocalExperts(context, expert_timeout_s))

    def begin(state: TurnState) -> dict[str, Any]:
        return {
            "gallery": list(state.get("images", [])),
            "plan": Plan(),
            "evidence": ResetEvidence(),
            "decisions": [],
            "reply": "",
        }

    def agent(state: TurnState) -> dict[str, Any]:
        plan = state["plan"].model_copy(deep=True)
        step = plan.steps + 1
        memory = memory_of(state)
        requested = state.get("requested_tools")
        if requested is not None:  # the caller chose the experts: one step, exactly those
            if step > 1:
                plan.final_kind = "done"
                return {"plan": plan}
            question = state.get("question", "")
            chosen = expert_calls(registry, requested, question, memory.attached)
            reply = PlannerReply(
                message=AIMessage(content="", tool_calls=chosen),
                source="caller",
                final_kind=None if chosen else "needs_image",
            )
            if not chosen:
                plan.notes.append("the requested experts need an image and none is attached")
        elif step > max_steps:
            plan.notes.append(
                f"stopped after {max_steps} steps (planner.max_steps); "
                "answered with what the experts found"
            )
            plan.final_kind = "stopped"
            return {"plan": plan}
        else:
            view = TurnView(
                question=state.get("question", ""),
                messages=list(state.get("messages", [])),
                memory=memory,
                step=step,
                llm_error=plan.llm_error,
            )
            reply = planner(view)
        plan.steps = step
        plan.notes += reply.notes
        plan.llm_error = plan.llm_error or reply.llm_error
        message = reply.message
        raw_calls: list[dict[str, Any]] = [
            dict(raw) for raw in [*message.tool_calls, *message.invalid_tool_calls]
        ]
        if not raw_calls:
            plan.final = message.text.strip()
            plan.final_source = reply.source
            plan.final_kind = reply.final_kind or ("answer" if plan.final else "done")
            plan.declined = reply.declined
            return {"plan": plan}
        calls = [
            check_call(raw, registry, memory, step=step, source=reply.source) for raw in raw_calls
        ]
        for extra in calls[max_calls:]:
            extra.error = f"only {max_calls} calls run per step; call the rest in the next step"
        plan.calls += calls
        # The message keeps the ids the calls ran under, so each result pairs with its call.
        recorded = AIMessage(
            content=message.content,
            tool_calls=[
                {
                    "name": c.tool,
                    "args": plain_arguments(c.arguments),
                    "id": c.id,
                    "type": "tool_call",
                }
                for c in calls
            ],
            name=message.name,
            id=message.id,
        )
        return {"plan": plan, "messages": [recorded]}

    def fan_out(state: TurnState) -> list[Send] | str:
        plan = state["plan"]
        calls = plan.step_calls(plan.steps) if plan.steps and not plan.final_kind else []
        if not calls:  # the planner answered, or the loop stopped
            return "respond"
        runnable = [call for call in calls if call.error is None]
        if not runnable:
            return "observe"
        return [Send("expert", ExpertTask(call=call)) for call in runnable]

    def expert(task: ExpertTask) -> dict[str, Any]:
        return {"evidence": [run_expert(task["call"])]}

    def observe(state: TurnState) -> dict[str, Any]:
        plan = state["plan"]
        calls = plan.step_calls(plan.steps)
        ids = {call.id for call in calls}
        found = [e for e in state.get("evidence", []) if e.call_id in ids]
        decisions = _fuse_step(found, calls, state.get("question", ""))
        retrieved = retrieved_images(found)
        memory = memory_of(state)
        memory.gallery = [*memory.gallery, *[r for r in retrieved if not memory.number(r)]]
        if retrieved:
            memory.retrieved = retrieved
        by_call = {e.call_id: e for e in found}
        messages = [observation(c, by_call.get(c.id), decisions, memory) for c in calls]
        update: dict[str, Any] = {
            "messages": messages,
            "decisions": [*state.get("decisions", []), *decisions],
            "findings": {
                d.image: decision_text(d, memory) for d in decisions if d.image is not None
            },
        }
        if retrieved:
            update |= {"retrieved": retrieved, "gallery": retrieved}
        return update

    def domain_of(image: str) -> str | None:
        """Photo or graphic, for the fit; None (the pooled fit) for an image not stored here."""
        try:
            return context.images.domain(image)
        except ImageInputError:
            return None

    def _fuse_step(found: list[Evidence], calls: list[ToolCall], question: str) -> list[Decision]:
        answering = [
            e for e in found if e.expert in registry and registry.get(e.expert).answers_questions
        ]
        # Experts that saw the question answer it; the others (a captioner) only describe,
        # and vote only when nobody answered the question itself.
        voters = [e for e in answering if registry.get(e.expert).takes_question] or answering
        asked = [c.arguments.get("question") for c in calls if c.arguments.get("question")]
        kind = question_kind(str(asked[0]) if asked else question)
        return fuse_by_image(voters, fusion, kind, domain_of)

    def respond(state: TurnState) -> dict[str, Any]:
        plan = state.get("plan", Plan())
        reply = responder.respond(
            state.get("question", ""), state.get("decisions", []), state.get("evidence", []), plan
        )
        update: dict[str, Any] = {
            "reply": reply.text,
            "messages": [AIMessage(reply.text)],
            "requested_tools": None,  # a caller's choice holds for its own turn only
        }
        if reply.llm_error and not plan.llm_error:
            plan = plan.model_copy(deep=True)
            plan.llm_error = reply.llm_error
            plan.notes.append(f"the LLM failed while replying ({reply.llm_error})")
            update["plan"] = plan
        return update

    graph = StateGraph(TurnState)
    graph.add_node("begin", traced_step("begin", begin))
    graph.add_node("agent", traced_step("agent", agent))
    graph.add_node("expert", traced_step("expert", expert))  # type: ignore[arg-type]
    graph.add_node("observe", traced_step("observe", observe))
    graph.add_node("respond", traced_step("respond", respond))
    graph.add_edge(START, "begin")
    graph.add_edge("begin", "agent")
    graph.add_conditional_edges("agent", fan_out, ["expert", "observe", "respond"])
    graph.add_edge("expert", "observe")
    graph.add_edge("observe", "agent")
    graph.add_edge("respond", END)
    return graph.compile(checkpointer=checkpointer)


__all__ = [
    "DEFAULT_MAX_STEPS",
    "ExpertBackend",
    "ExpertRunner",
    "LocalExperts",
    "compile_graph",
    "memory_of",
    "new_call_id",
]
