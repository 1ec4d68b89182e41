"""The router as a chat model: it reads the conversation and emits tool calls, like an LLM.

Without an LLM, or with one that cannot call tools, this model plans through the same graph
path an LLM does: bound tools, tool calls with image references, ToolMessages back, a final
message. It handles the request forms the router knows (English): one step of the experts
that suit the question, a search then the experts on the hit a request names ("find my cats
and describe the second one"), references to earlier images ("the second one"), and declines
what no expert serves. It writes no prose: its final message leaves the reply to the decisions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from sensorium.agent.router import Router
from sensorium.graphs import ImageMemory, expert_calls
from sensorium.tools import ImageRef, Registry
from sensorium.tools.questions import (
    described_reference,
    is_search_request,
    ordinal_reference,
    split_search_request,
)

MEMORY_KEY = "image_memory"
"""The system message's `additional_kwargs` key holding the `ImageMemory` (JSON): what the
router reads instead of the memory's text (servers never receive additional_kwargs)."""

FinalKind = Literal["declined", "needs_image", "text_only", "no_tool", "done"]

ImageMatcher = Callable[[str, list[ImageRef]], ImageRef]


class RouterChatModel(BaseChatModel):
    """A deterministic planner in the shape of a tool-calling chat model.

    Its final message (no tool calls) says why in `response_metadata["final"]`: `declined`
    (a declared limit, e.g. video), `needs_image`, `text_only` (no image is involved: a
    question for an LLM), `no_tool` (nothing fits), or `done` (the experts have answered).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    router: Router
    registry: Registry
    image_matcher: ImageMatcher | None = None
    bound: tuple[str, ...] | None = None

    @property
    def _llm_type(self) -> str:
        return "sensorium-router"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> RouterChatModel:  # type: ignore[override]
        """This router, limited to the given tools (any form `bind_tools` accepts)."""
        names = tuple(convert_to_openai_tool(tool)["function"]["name"] for tool in tools)
        return self.model_copy(update={"bound": names})

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        message = self.next_move(messages)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def next_move(self, messages: list[BaseMessage]) -> AIMessage:
        """Tool calls for the next step of the turn the messages end with, or a final message."""
        memory = ImageMemory()
        for message in messages:
            if isinstance(message, SystemMessage) and MEMORY_KEY in message.additional_kwargs:
                memory = ImageMemory.model_validate(message.additional_kwargs[MEMORY_KEY])
        last = max((i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1)
        request = messages[last].text if last >= 0 else ""
        steps = sum(1 for m in messages[last + 1 :] if isinstance(m, AIMessage) and m.tool_calls)
        if steps == 0:
            earlier = [str(m.text) for m in messages[:last] if isinstance(m, HumanMessage)]
            return self._first_step(request, memory, earlier)
        if steps == 1 and self._search_with_follow_up(request):
            return self._follow_up(request, memory)
        return _final("done")

    def _allowed(self, names: Sequence[str]) -> list[str]:
        return [n for n in names if n in self.registry and (self.bound is None or n in self.bound)]

    def _search_with_follow_up(self, request: str) -> bool:
        """A request to search the collection: by its form ("find my photos of ..."), or
        because it means what `retrieve` declares better than anything else does."""
        if not self._allowed(["retrieve"]):
            return False
        return is_search_request(request) or self.router.route(request)[:1] == ["retrieve"]

    def _first_step(self, request: str, memory: ImageMemory, earlier: list[str]) -> AIMessage:
        searchable = bool(self._allowed(["retrieve"]))
        if searchable and is_search_request(request):
            return _search(request, memory)
        limit = self.router.unsupported(request)
        refers = ordinal_reference(request) is not None or described_reference(request)
        # A request naming a picture the thread holds ("describe that cat picture") asks
        # about it, not for a new one, however close its words are to "create a picture".
        if limit and not (limit in _NEW_PICTURES and refers and memory.gallery):
            return _final("declined", limit)
        if self._search_with_follow_up(request):  # a search by meaning, not by its form
            return _search(request, memory)
        images, note = self._images_named(request, memory)
        question = request
        tools = self._allowed([n for n in self.router.route(request) if n != "retrieve"])
        if not tools and earlier and ordinal_reference(request) is not None:
            # An elliptical follow-up ("and the second one?") asks the last question again.
            question = earlier[-1]
            tools = self._allowed([n for n in self.router.route(question) if n != "retrieve"])
        if not tools:
            return _final("no_tool")
        calls = expert_calls(self.registry, tools, question, images)
        if calls:
            return _calls(calls, note)
        pointed = _POINTS_AT_IMAGE.search(request) or _IMAGE_WORDS.search(request)
        return _final("needs_image" if pointed else "text_only")

    def _follow_up(self, request: str, memory: ImageMemory) -> AIMessage:
        """The experts a search request asks for, on the hit it names (default: the first)."""
        _, rest = split_search_request(request)
        tools = self._allowed([n for n in self.router.route(rest) if n != "retrieve"])
        position = ordinal_reference(rest) or 1
        if not rest or not tools or not memory.retrieved:
            return _final("done")
        index = position - 1 if position > 0 else position
        if not -len(memory.retrieved) <= index < len(memory.retrieved):
            return _final("done", f"there is no hit number {position}")
        image = memory.retrieved[index]
        return _calls(expert_calls(self.registry, tools, rest, [image]))

    def _images_named(self, request: str, memory: ImageMemory) -> tuple[list[ImageRef], str]:
        """The images a request is about: one it names ("the second one", "that cat picture"),
        else those attached to it."""
        position = ordinal_reference(request)
        # "the second one" counts among the images attached now when there are several, else
        # among the last search's hits, else among every image of the thread.
        pool = memory.attached if len(memory.attached) > 1 else memory.retrieved or memory.gallery
        if position is not None and pool:
            index = position - 1 if position > 0 else position
            if -len(pool) <= index < len(pool):
                chosen = pool[index]
                return [chosen], f"'{request}' refers to {memory.label(chosen)}"
        described = described_reference(request)
        if described and len(memory.gallery) > 1 and self.image_matcher is not None:
            best = self.image_matcher(described, memory.gallery)
            return [best], f"'the {described} picture' is {memory.label(best)}"
        return list(memory.attached), ""


def _search(request: str, memory: ImageMemory) -> AIMessage:
    arguments: dict[str, Any] = {"question": request}
    # The thread's image joins the query only when the request points at it.
    if memory.attached and _POINTS_AT_IMAGE.search(request):
        arguments["image"] = memory.attached[0].sha256
    return _calls([{"name": "retrieve", "args": arguments, "type": "tool_call"}])


def _calls(calls: list[dict[str, Any]], note: str = "") -> AIMessage:
    from sensorium.graphs import new_call_id

    for call in calls:
        call.setdefault("id", new_call_id())
    return AIMessage(
        content="",
        tool_calls=calls,
        name="router",
        response_metadata={"note": note} if note else {},
    )


def _final(kind: FinalKind, detail: str = "") -> AIMessage:
    return AIMessage(content="", name="router", response_metadata={"final": kind, "detail": detail})


_NEW_PICTURES = {"image generation"}
_POINTS_AT_IMAGE = re.compile(r"\b(this|these|similar|like)\b", re.IGNORECASE)
_IMAGE_WORDS = re.compile(
    r"\b(it|that|image|images|picture|pictures|photo|photos|pic|shot|one)\b", re.IGNORECASE
)
