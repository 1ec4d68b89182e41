"""The planner: a tool-calling chat model chooses each step's expert calls.

Every enabled expert is bound to the model as a tool (`bind_tools`). At each step the model
sees the instructions, the thread's image memory as text (numbered images, what is attached,
earlier findings, search hits; never pixels), the earlier turns' questions and replies, and
this turn's calls and their results as `ToolMessage`s. It answers with more tool calls or with
its final text. The model is an LLM, or the router in the shape of one (`RouterChatModel`):
one path either way. An LLM that fails (dead server, crash, garbage) hands the turn to the
router, and the failure is reported in the plan.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.runnables import Runnable

from sensorium.agent.llm import describe_llm_failure, naming_the_server
from sensorium.agent.prompts import PLANNER_SYSTEM
from sensorium.agent.router_model import MEMORY_KEY, RouterChatModel
from sensorium.graphs import CallSource, PlannerReply, TurnView
from sensorium.tools import Registry, Tool

IMAGE_REFERENCE = "the number of an image in the conversation's list of images"
MAX_TEXT_ARGUMENT = 300
"""Longest text argument offered: a small model under a grammar otherwise may never stop."""


def tool_definition(tool: Tool, images: Sequence[str] = ()) -> dict[str, Any]:
    """The tool in OpenAI function form, as the planner's model sees it.

    Image arguments are references to the conversation's images, offered as an `enum` of
    `images` (their numbers): a model decoding under the schema (llama.cpp's grammar) can then
    only name an image that exists. With no images, image arguments are left out: a small
    model otherwise invents one (a URL, a file name). The examples show what the tool is for.
    """
    schema = tool.input_model.model_json_schema()
    properties: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        prop = {k: v for k, v in prop.items() if k != "title"}
        if name in tool.image_params:
            if not images:
                continue
            described = prop.get("description", "the image")
            prop = {
                "type": "string",
                "description": f"{described}: {IMAGE_REFERENCE}",
                "enum": list(images),
            }
        elif prop.get("type") == "string" and "maxLength" not in prop and "enum" not in prop:
            prop["maxLength"] = MAX_TEXT_ARGUMENT
        properties[name] = prop
    parameters: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": [name for name in schema.get("required", []) if name in properties],
    }
    if "$defs" in schema:
        parameters["$defs"] = schema["$defs"]
    description = tool.description
    if tool.examples:
        description += " For example: " + "; ".join(f'"{e}"' for e in tool.examples[:3])
    return {
        "type": "function",
        "function": {"name": tool.name, "description": description, "parameters": parameters},
    }


def can_call_tools(model: BaseChatModel) -> bool:
    """Whether a chat model implements `bind_tools` (LangChain's default raises)."""
    return type(model).bind_tools is not BaseChatModel.bind_tools


class ChatPlanner:
    """Plans each step of a turn with a tool-calling chat model.

    Args:
        model: the chat model that plans (an LLM, or a `RouterChatModel`)
        registry: the enabled experts, all bound as tools
        router: plans the turn instead when `model` fails (None: nothing does)
        history_turns: how many earlier turns the model sees
    """

    def __init__(
        self,
        model: BaseChatModel,
        registry: Registry,
        *,
        router: RouterChatModel | None = None,
        history_turns: int = 6,
    ) -> None:
        self.model = model
        self.registry = registry
        self.source: CallSource = "router" if isinstance(model, RouterChatModel) else "llm"
        self.router = router
        self.history_turns = history_turns

    def tools(self, view: TurnView) -> list[dict[str, Any]]:
        """The enabled experts as tools, their image arguments limited to the conversation's
        images; with none, only the experts that can work without one."""
        images = [str(number) for number in range(1, len(view.memory.gallery) + 1)]
        usable = [tool for tool in self.registry if images or not tool.needs_image]
        return [tool_definition(tool, images) for tool in usable]

    def __call__(self, view: TurnView) -> PlannerReply:
        messages = planner_messages(view, self.history_turns)
        if self.router is not None and view.llm_error is not None:
            return self._reply(self._route(messages), "router")
        try:
            with naming_the_server(self.model):
                return self._reply(self._bound(view).invoke(messages), self.source)
        except Exception as exc:  # dead, crashed or hung, or a reply LangChain cannot read
            if self.router is None:
                raise
            error = describe_llm_failure(exc)
        reply = self._reply(self._route(messages), "router")
        reply.notes.insert(0, f"the LLM failed ({error}); the router planned instead")
        reply.llm_error = error
        return reply

    def _bound(self, view: TurnView) -> Runnable[Any, BaseMessage]:
        if isinstance(self.model, RouterChatModel):
            return _with_every_expert(self.model, self.registry)
        tools = self.tools(view)
        if not tools:
            return self.model
        # 'auto' said aloud: some servers (llama-cpp-python's) call no tool without it.
        return self.model.bind_tools(tools, tool_choice="auto")

    def _route(self, messages: list[BaseMessage]) -> BaseMessage:
        assert self.router is not None
        return _with_every_expert(self.router, self.registry).invoke(messages)

    @staticmethod
    def _reply(message: BaseMessage, source: CallSource) -> PlannerReply:
        if not isinstance(message, AIMessage):
            raise TypeError(f"the planner model returned a {type(message).__name__}")
        meta = message.response_metadata
        notes = [meta["note"]] if meta.get("note") else []
        final = meta.get("final") if source == "router" else None
        return PlannerReply(
            message=message,
            source=source,
            notes=notes,
            final_kind=final,
            declined=(meta.get("detail") or None) if final == "declined" else None,
        )


def _with_every_expert(router: RouterChatModel, registry: Registry) -> RouterChatModel:
    """The router bound to every expert: it asks for an image itself when one is missing."""
    return router.bind_tools([tool_definition(tool) for tool in registry])


def planner_messages(view: TurnView, history_turns: int) -> list[BaseMessage]:
    """What the planner's model reads: instructions with the image memory, the earlier
    turns (questions and replies only), and this turn with its calls and results."""
    system = SystemMessage(
        PLANNER_SYSTEM.format(memory=view.memory.describe()),
        additional_kwargs={MEMORY_KEY: view.memory.model_dump(mode="json")},
    )
    messages: list[AnyMessage] = list(view.messages)
    start = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=0)
    earlier = [
        m
        for m in messages[:start]
        if isinstance(m, HumanMessage) or (isinstance(m, AIMessage) and not m.tool_calls)
    ]
    earlier = earlier[-2 * history_turns :] if history_turns else []
    current = [
        _with_content(m)
        for m in messages[start:]
        if isinstance(m, HumanMessage | AIMessage | ToolMessage)
    ]
    return [system, *earlier, *current]


def _with_content(message: AnyMessage) -> AnyMessage:
    """A tool-calling message with some text: LangChain sends empty content as null, which
    llama-cpp-python's server refuses (HTTP 500); one space is accepted everywhere."""
    if isinstance(message, AIMessage) and message.tool_calls and not message.content:
        return message.model_copy(update={"content": " "})
    return message
