"""Declaring an expert: a typed function with a docstring becomes a `Tool`.

    @expert(examples=["What colour is the car?"])
    def colours(ctx: ToolContext, image: ImageRef, top_k: int = 3) -> Evidence:
        '''Name the dominant colours of an image.

        Args:
            image: the image to look at
            top_k: how many colours to report
        '''

The input schema comes from the type hints and the docstring's `Args:` section; a function
that cannot be described is refused at declaration, with its qualified name in the error.
"""

from __future__ import annotations

import inspect
import re
import time
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from sensorium.tools.errors import ToolDefinitionError, ToolInputError
from sensorium.tools.evidence import Evidence, ImageRef
from sensorium.tools.hf_models import StandardModels

if TYPE_CHECKING:
    from langchain_core.tools import StructuredTool

    from sensorium.tools.encoder import JointEncoder
    from sensorium.tools.host import ModelHost
    from sensorium.tools.images import ImageStore
    from sensorium.tools.text_index import TextIndex
    from sensorium.tools.vector_index import ImageIndex


@dataclass(frozen=True)
class ToolContext:
    """What an expert receives besides its arguments: where models and images live."""

    host: ModelHost
    images: ImageStore
    cache_dir: Path | None = None  # for derived data worth keeping (label embeddings)
    open_index: Callable[[], ImageIndex] | None = None  # the image index, opened on first use
    open_text_index: Callable[[], TextIndex] | None = None  # the text collection, likewise
    # Which checkpoints the transformers experts (standard profile) load.
    models: StandardModels = field(default_factory=StandardModels)
    # The profile's joint image-text encoder (default: the lite one), for retrieval.
    joint_encoder: Callable[[], JointEncoder] | None = None


ExpertFunction = Callable[..., Evidence]


class Tool:
    """A modality expert: a validated, schema-described function returning `Evidence`."""

    def __init__(
        self,
        fn: ExpertFunction,
        *,
        name: str,
        description: str,
        examples: Sequence[str],
        input_model: type[BaseModel],
        image_params: Sequence[str],
        answers_questions: bool,
    ) -> None:
        self.fn = fn
        self.name = name
        self.description = description
        self.examples = tuple(examples)
        self.input_model = input_model
        self.image_params = tuple(image_params)
        self.answers_questions = answers_questions

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    @property
    def qualname(self) -> str:
        """`module:function` of the implementation, for messages."""
        return f"{self.fn.__module__}:{self.fn.__qualname__}"

    @property
    def needs_image(self) -> bool:
        """True when the expert cannot run without an image."""
        return any(self.input_model.model_fields[p].is_required() for p in self.image_params)

    @property
    def takes_question(self) -> bool:
        """True when the expert accepts the user's question as its `question` argument."""
        return "question" in self.input_model.model_fields

    def argument_schema(self) -> dict[str, Any]:
        """JSON schema of the arguments a planner chooses (images are bound by the planner)."""
        schema = self.input_model.model_json_schema()
        properties = {
            k: v for k, v in schema.get("properties", {}).items() if k not in self.image_params
        }
        required = [k for k in schema.get("required", []) if k not in self.image_params]
        result = {"type": "object", "properties": properties, "required": required}
        if "$defs" in schema and "$ref" in repr(properties):  # enum/model parameters use it
            result["$defs"] = schema["$defs"]
        return result

    def image_of(self, arguments: dict[str, Any]) -> str | None:
        """The sha256 of the image a call is about (any accepted form, even an invalid call)."""
        return _image_sha(arguments.get(self.image_params[0])) if self.image_params else None

    def images_of(self, arguments: dict[str, Any]) -> list[str]:
        """The sha256 of every image a call names (for shipping them to a remote replica)."""
        found = (_image_sha(arguments.get(param)) for param in self.image_params)
        return [sha for sha in found if sha]

    def validate_arguments(self, arguments: dict[str, Any]) -> BaseModel:
        """Check arguments against the schema; raises `ToolInputError` naming the field."""
        try:
            return self.input_model.model_validate(arguments)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "arguments"
            raise ToolInputError(f"tool {self.name!r}: {where}: {first['msg']}") from None

    def run(self, ctx: ToolContext, arguments: dict[str, Any]) -> Evidence:
        """Validate, call the expert, and time it; failures become Evidence with `error`."""
        started = time.perf_counter()
        image_sha = self.image_of(arguments)
        try:
            validated = self.validate_arguments(arguments)
            kwargs = {k: getattr(validated, k) for k in self.input_model.model_fields}
            evidence = self.fn(ctx, **kwargs)
            if not isinstance(evidence, Evidence):
                raise TypeError(f"expert {self.qualname} returned {type(evidence).__name__}")
        except Exception as exc:  # an expert failure must not end the turn
            evidence = Evidence(error=_one_line(exc))
        latency = (time.perf_counter() - started) * 1000
        return evidence.model_copy(
            update={"expert": self.name, "latency_ms": latency, "image": image_sha}
        )

    def as_langchain_tool(self, ctx: ToolContext) -> StructuredTool:
        """This expert as a LangChain tool (returns the Evidence as a dict)."""
        from langchain_core.tools import StructuredTool

        def call(**arguments: Any) -> dict[str, Any]:
            return self.run(ctx, arguments).model_dump()

        return StructuredTool.from_function(
            func=call,
            name=self.name,
            description=self.description,
            args_schema=self.input_model,
        )


def _image_sha(value: Any) -> str | None:
    """The sha256 of an image argument in any accepted form, even one that fails validation."""
    if isinstance(value, ImageRef):
        return value.sha256
    if isinstance(value, dict):
        value = value.get("sha256")
    return value if isinstance(value, str) else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else 'no message'}"


_ARGS_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$", re.MULTILINE)
_ARG_LINE = re.compile(r"^\s{2,}(\w+)\s*(?:\([^)]*\))?:\s*(.+)$")


def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {parameter: description})."""
    doc = inspect.cleandoc(doc)
    match = _ARGS_SECTION.search(doc)
    if not match:
        return doc.strip(), {}
    description = doc[: match.start()].strip()
    params: dict[str, str] = {}
    for line in doc[match.end() :].splitlines():
        arg = _ARG_LINE.match(line)
        if arg:
            params[arg.group(1)] = arg.group(2).strip()
        elif line.strip() and not line.startswith(" "):
            break  # the next section
    return description, params


def _declare(
    fn: ExpertFunction, name: str | None, examples: Sequence[str], answers_questions: bool
) -> Tool:
    where = f"{fn.__module__}:{fn.__qualname__}"

    def refuse(why: str) -> ToolDefinitionError:
        return ToolDefinitionError(f"cannot declare tool {where}: {why}")

    if not fn.__doc__ or not fn.__doc__.strip():
        raise refuse("it has no docstring; its text before Args: becomes the tool's description")
    description, param_docs = _parse_docstring(fn.__doc__)
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise refuse(f"its type hints cannot be resolved ({exc})") from None
    if hints.get("return") is not Evidence:
        raise refuse("it must be annotated to return Evidence")
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].name != "ctx":
        raise refuse("its first parameter must be `ctx: ToolContext`")
    fields: dict[str, Any] = {}
    image_params: list[str] = []
    for param in params[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise refuse(f"parameter {param.name!r} is *args/**kwargs; list each argument")
        if param.name not in hints:
            raise refuse(f"parameter {param.name!r} has no type annotation")
        if param.name not in param_docs:
            raise refuse(f"parameter {param.name!r} is not described in the docstring's Args:")
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (hints[param.name], Field(default, description=param_docs[param.name]))
        if hints[param.name] in (ImageRef, ImageRef | None):
            image_params.append(param.name)
    tool_name = name or fn.__name__
    if not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", tool_name):
        raise refuse(f"name {tool_name!r} must be lower_snake_case, at most 64 characters")
    try:
        model = create_model(
            f"{tool_name}_arguments",
            __config__=ConfigDict(extra="forbid"),
            **fields,
        )
        model.model_json_schema()
    except Exception as exc:
        raise refuse(f"its parameters cannot form a schema ({_one_line(exc)})") from None
    return Tool(
        fn,
        name=tool_name,
        description=description,
        examples=examples,
        input_model=model,
        image_params=image_params,
        answers_questions=answers_questions,
    )


@overload
def expert(fn: ExpertFunction) -> Tool: ...


@overload
def expert(
    fn: None = None,
    *,
    name: str | None = None,
    examples: Sequence[str] = (),
    answers_questions: bool = True,
) -> Callable[[ExpertFunction], Tool]: ...


def expert(
    fn: ExpertFunction | None = None,
    *,
    name: str | None = None,
    examples: Sequence[str] = (),
    answers_questions: bool = True,
) -> Tool | Callable[[ExpertFunction], Tool]:
    """Declare a modality expert. Use bare (`@expert`) or with options.

    Args:
        fn: the expert function (when used bare)
        name: tool name; defaults to the function name
        examples: requests this expert is right for (they teach the router)
        answers_questions: False when the answer is not a reply to the user's question
            (an embedding, a caption asked for its own sake); fusion then leaves it out
    """
    if fn is not None:
        return _declare(fn, name, examples, answers_questions)

    def wrap(inner: ExpertFunction) -> Tool:
        return _declare(inner, name, examples, answers_questions)

    return wrap
