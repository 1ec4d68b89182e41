"""The planner: the LLM proposes experts, the router vets and completes the proposal.

A small LLM picks the wrong tool often, so its picks count only when the router finds them
plausible for the request; the router's own choice is always included. Every call is then
checked against its tool's schema; a call that fails is dropped with a note in the plan.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage

from sensorium.agent.llm import complete_json
from sensorium.agent.prompts import PLANNER_SYSTEM, planner_request
from sensorium.agent.router import Router
from sensorium.agent.settings import PlannerSettings
from sensorium.graphs import FollowUp, ImageMemory, Plan, ToolCall, image_at
from sensorium.tools import ImageRef, ModelUnavailableError, Registry, ToolInputError
from sensorium.tools.questions import (
    described_reference,
    is_search_request,
    ordinal_reference,
    split_search_request,
)


class AgentPlanner:
    """Plans a turn from the question and the attached images."""

    def __init__(
        self,
        registry: Registry,
        router: Router,
        chat_model: BaseChatModel | None = None,
        settings: PlannerSettings | None = None,
        image_matcher: ImageMatcher | None = None,
    ) -> None:
        self.image_matcher = image_matcher
        self.registry = registry
        self.router = router
        self.chat_model = chat_model
        self.settings = settings or PlannerSettings()

    def llm_picks(self, question: str, image_count: int) -> list[str]:
        """The tool names the LLM proposes (unvetted). Raises on an unusable reply."""
        assert self.chat_model is not None
        names = self.registry.names()
        schema = {
            "type": "object",
            "properties": {
                "tools": {
                    "type": "array",
                    "items": {"type": "string", "enum": names},
                    "minItems": 1,
                    "maxItems": self.settings.max_tools,
                }
            },
            "required": ["tools"],
        }
        catalogue = "\n".join(f"- {t.name}: {t.description}" for t in self.registry)
        messages = [
            SystemMessage(PLANNER_SYSTEM.format(tools=catalogue)),
            HumanMessage(planner_request(question, image_count)),
        ]
        reply = complete_json(self.chat_model, messages, schema)
        picks = reply.get("tools") if isinstance(reply, dict) else None
        if not isinstance(picks, list) or not all(isinstance(p, str) for p in picks):
            raise ValueError(f"expected {{'tools': [names]}}, got {str(reply)[:80]}")
        return picks

    def plan(
        self,
        question: str,
        images: list[ImageRef],
        history: list[AnyMessage],
        memory: ImageMemory | None = None,
        tools: list[str] | None = None,
    ) -> Plan:
        """Choose experts and bind their arguments (images by reference, the question).

        With `tools`, exactly those experts run (evaluations score each expert this way).
        """
        memory = memory or ImageMemory()
        if tools is not None:
            notes = [f"experts requested by the caller: {', '.join(tools)}"]
            return Plan(calls=self._calls(tools, question, images, [], notes), notes=notes)
        if is_search_request(question) and "retrieve" in self.registry:
            return self._search_plan(question, images)
        notes = []
        resolved = self._resolve_reference(question, memory, notes)
        plan = self._question_plan(question, resolved if resolved is not None else images, notes)
        plan.images = resolved
        return plan

    def _search_plan(self, question: str, images: list[ImageRef]) -> Plan:
        """Retrieve first; what the request asks of the results runs as a second stage."""
        arguments: dict[str, object] = {"question": question}
        # The thread's image joins the query only when the request points at it.
        if images and _POINTS_AT_IMAGE.search(question):
            arguments["image"] = images[0]
        plan = Plan(calls=[ToolCall(tool="retrieve", arguments=arguments)])
        _, rest = split_search_request(question)
        if rest:
            tools = [name for name in self.router.route(rest) if name != "retrieve"]
            position = ordinal_reference(rest) or 1
            plan.follow_up = FollowUp(tools=tools, question=rest, positions=[position])
            if not tools:
                plan.notes.append(f"no expert fits {rest!r}; only retrieving")
        return plan

    def _resolve_reference(
        self, question: str, memory: ImageMemory, notes: list[str]
    ) -> list[ImageRef] | None:
        """Images named by reference ("the second one", "that cat picture"), or None."""
        position = ordinal_reference(question)
        pool = memory.retrieved or memory.gallery
        if position is not None and pool:
            chosen = image_at(pool, position)
            if chosen is None:
                notes.append(f"there is no image number {position}; {len(pool)} in memory")
                return None
            notes.append(f"'{question}' refers to {chosen.name or chosen.short}")
            return [chosen]
        described = described_reference(question)
        if described and len(memory.gallery) > 1 and self.image_matcher is not None:
            best = self.image_matcher(described, memory.gallery)
            notes.append(f"'the {described} picture' is {best.name or best.short}")
            return [best]
        return None

    def _question_plan(self, question: str, images: list[ImageRef], notes: list[str]) -> Plan:
        vetted: list[str] = []
        llm_error: str | None = None
        if self.chat_model is not None and self.settings.use_llm and question.strip():
            try:
                proposed = self.llm_picks(question, len(images))
            except ModelUnavailableError as exc:  # a dead, crashed or hung server: say which
                notes.append(f"LLM plan unusable: {exc}; the router decided")
                llm_error = str(exc)
                proposed = []
            except Exception as exc:
                notes.append(f"LLM plan unusable ({type(exc).__name__}); the router decided")
                proposed = []
            for name in proposed:
                if name not in self.registry:
                    notes.append(f"LLM named unknown tool {name!r}; ignored")
                elif self.router.plausible(question, name):
                    vetted.append(name)
                else:
                    notes.append(f"LLM picked {name}, which does not fit the request; ignored")
        routed = [name for name in self.router.route(question) if name != "retrieve"]
        names = list(dict.fromkeys([*routed, *vetted]))[: self.settings.max_tools]
        calls = self._calls(names, question, images, vetted, notes)
        return Plan(calls=calls, notes=notes, llm_error=llm_error)

    def _calls(
        self,
        names: list[str],
        question: str,
        images: list[ImageRef],
        vetted: list[str],
        notes: list[str],
    ) -> list[ToolCall]:
        """One call per expert and image, arguments checked against the expert's schema."""
        calls: list[ToolCall] = []
        for name in names:
            tool = self.registry.get(name)
            if tool.needs_image and not images:
                notes.append(f"{name} needs an image and none is attached")
                continue
            for image in images if tool.image_params and images else [None]:
                arguments: dict[str, object] = {}
                if image is not None:
                    arguments[tool.image_params[0]] = image
                if tool.takes_question:
                    arguments["question"] = question
                try:
                    tool.validate_arguments(arguments)
                except ToolInputError as exc:
                    notes.append(f"dropped a call: {exc}")
                    continue
                source = "llm" if name in vetted else "router"
                calls.append(ToolCall(tool=name, arguments=arguments, source=source))
        return calls


ImageMatcher = Callable[[str, list[ImageRef]], ImageRef]
_POINTS_AT_IMAGE = re.compile(r"\b(this|these|similar|like)\b", re.IGNORECASE)
