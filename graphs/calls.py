"""Tool calls: making them for a set of experts, and checking a planner's before they run.

A planner's call names a tool and gives JSON arguments, with images as references it read in
the image memory. `check_call` resolves the references, fills in the one obvious image, and
validates the arguments against the tool's schema. A call that fails keeps its error, which
goes back to the planner as the call's result (a capable LLM corrects itself on the next step).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sensorium.graphs.memory import ImageMemory
from sensorium.graphs.state import CallSource, ToolCall
from sensorium.tools import ImageRef, Registry, ToolInputError


def new_call_id() -> str:
    """A fresh tool call id (for calls a planner made without one)."""
    return f"call_{uuid.uuid4().hex[:16]}"


def expert_calls(
    registry: Registry, names: Sequence[str], question: str, images: Sequence[ImageRef]
) -> list[dict[str, Any]]:
    """LangChain tool calls: each expert on each image (by sha256), asked `question`.

    An expert that needs an image gets no call when there is none.
    """
    calls: list[dict[str, Any]] = []
    for name in names:
        tool = registry.get(name)
        if tool.needs_image and not images:
            continue
        for image in images if tool.image_params and images else [None]:
            arguments: dict[str, Any] = {}
            if image is not None:
                arguments[tool.image_params[0]] = image.sha256
            if tool.takes_question and question:
                arguments["question"] = question
            calls.append(
                {"name": name, "args": arguments, "id": new_call_id(), "type": "tool_call"}
            )
    return calls


def check_call(
    raw: dict[str, Any],
    registry: Registry,
    memory: ImageMemory,
    *,
    step: int,
    source: CallSource,
) -> ToolCall:
    """A planner's call, resolved and validated; `error` says what was wrong with it."""
    name = str(raw.get("name") or "")
    call = ToolCall(tool=name, id=str(raw.get("id") or new_call_id()), step=step, source=source)
    if raw.get("error"):  # LangChain's invalid_tool_calls: the arguments were not JSON
        return call.model_copy(
            update={"error": f"the arguments are not valid JSON ({raw['error']})"}
        )
    if name not in registry:
        return call.model_copy(
            update={"error": f"there is no tool named {name!r}; the tools are: "
                    f"{', '.join(registry.names())}"}
        )  # fmt: skip
    tool = registry.get(name)
    arguments = raw.get("args")
    if not isinstance(arguments, dict):
        return call.model_copy(update={"error": f"{name}: the arguments must be a JSON object"})
    arguments = dict(arguments)
    try:
        for param in tool.image_params:
            if arguments.get(param) not in (None, ""):
                arguments[param] = memory.resolve(arguments[param])
            elif param in arguments:
                del arguments[param]
        first = tool.image_params[0] if tool.image_params else None
        # The one image the turn is about is what an image tool means when it names none.
        if first and first not in arguments and tool.needs_image and len(memory.attached) == 1:
            arguments[first] = memory.attached[0]
        tool.validate_arguments(arguments)
    except ToolInputError as exc:
        return call.model_copy(update={"arguments": plain_arguments(arguments), "error": str(exc)})
    return call.model_copy(update={"arguments": arguments})


def plain_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments as JSON values, images as their sha256."""
    return {
        k: v.sha256 if isinstance(v, ImageRef) else v for k, v in with_image_refs(arguments).items()
    }


def with_image_refs(arguments: dict[str, Any]) -> dict[str, Any]:
    """Arguments with their images as `ImageRef`s: a call read back from a checkpoint holds
    them as plain dicts (the serializer does not restore nested models)."""
    return {k: _image_ref(v) or v for k, v in arguments.items()}


def _image_ref(value: Any) -> ImageRef | None:
    if isinstance(value, ImageRef):
        return value
    if isinstance(value, dict) and "sha256" in value and set(value) <= set(ImageRef.model_fields):
        return ImageRef.model_validate(value)
    return None
