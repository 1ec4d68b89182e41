"""The planner: the LLM proposes experts, the router vets and completes the proposal.

A small LLM picks the wrong tool often, so its picks count only when the router finds them
plausible for the request; the router's own choice is always included. Every call is then
checked against its tool's schema; a call that fails is dropped with a note in the plan.
"""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AnyMessage, HumanMessage, SystemMessage

from sensorium.agent.llm import complete_json
from sensorium.agent.prompts import PLANNER_SYSTEM, planner_request
from sensorium.agent.router import Router
from sensorium.agent.settings import PlannerSettings
from sensorium.graphs import Plan, ToolCall
from sensorium.tools import ImageRef, Registry, ToolInputError


class AgentPlanner:
    """Plans a turn from the question and the attached images."""

    def __init__(
        self,
        registry: Registry,
        router: Router,
        chat_model: BaseChatModel | None = None,
        settings: PlannerSettings | None = None,
    ) -> None:
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

    def plan(self, question: str, images: list[ImageRef], history: list[AnyMessage]) -> Plan:
        """Choose experts and bind their arguments (images by reference, the question)."""
        notes: list[str] = []
        vetted: list[str] = []
        if self.chat_model is not None and self.settings.use_llm and question.strip():
            try:
                proposed = self.llm_picks(question, len(images))
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
        routed = self.router.route(question)
        names = list(dict.fromkeys([*routed, *vetted]))[: self.settings.max_tools]
        calls: list[ToolCall] = []
        for name in names:
            tool = self.registry.get(name)
            if tool.image_params and not images:
                notes.append(f"{name} needs an image and none is attached")
                continue
            for image in images if tool.image_params else [None]:
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
        return Plan(calls=calls, notes=notes)
