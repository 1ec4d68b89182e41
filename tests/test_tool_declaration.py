"""Declaring experts with `@expert`, running them as `Tool`s, and finding them through the
`sensorium.tools` entry-point group (built-ins and third-party plugins alike).
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path

import pytest
from langchain_core.tools import StructuredTool
from PIL import Image

from sensorium.tools import (
    ENTRY_POINT_GROUP,
    Evidence,
    ImageRef,
    ImageStore,
    ModelHost,
    Registry,
    Tool,
    ToolContext,
    ToolDefinitionError,
    ToolInputError,
    UserError,
    discover_tools,
    expert,
)

BUILT_INS = {"answer_question", "caption", "classify", "colours", "embed_image"}


class Mode(Enum):
    FAST = "fast"
    CAREFUL = "careful"


@expert(examples=["How bright is this photo?", "Is it dark?"])
def brightness(ctx: ToolContext, image: ImageRef, question: str = "", levels: int = 2) -> Evidence:
    """Say how bright an image is, from its mean gray level.

    Longer explanation that is not part of the arguments.

    Args:
        image: the image to measure
        question: the user's question (ignored)
        levels: how many brightness words to choose from;
            two gives dark/bright
    """
    gray = ctx.images.load(image).convert("L")
    level = sum(gray.getdata()) / (gray.width * gray.height) / 255
    words = ["dark", "bright"] if levels == 2 else ["dark", "dim", "bright"]
    index = min(int(level * len(words)), len(words) - 1)
    return Evidence(answer=words[index], confidence=0.75, payload={"level": level})


@expert(name="always_fails")
def failing(ctx: ToolContext, image: ImageRef) -> Evidence:
    """An expert whose model breaks.

    Args:
        image: the image
    """
    raise RuntimeError("the model exploded\nwith a long traceback-like second line")


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    return ToolContext(host=ModelHost("cpu"), images=ImageStore(tmp_path / "images"))


@pytest.fixture
def white(ctx: ToolContext) -> ImageRef:
    return ctx.images.add_image(Image.new("RGB", (8, 8), (255, 255, 255)), name="white.png")


def declared_name(fn: Callable[..., object]) -> str:
    """How a refused function is named in messages, as a regex."""
    return re.escape(f"{fn.__module__}:{fn.__qualname__}")


# The schema comes from type hints and the docstring.


def test_declaration_reads_name_description_and_examples() -> None:
    assert isinstance(brightness, Tool)
    assert brightness.name == "brightness"
    assert brightness.description == (
        "Say how bright an image is, from its mean gray level.\n\n"
        "Longer explanation that is not part of the arguments."
    )
    assert brightness.examples == ("How bright is this photo?", "Is it dark?")
    assert brightness.image_params == ("image",)
    assert brightness.takes_question
    assert brightness.answers_questions
    assert brightness.qualname == f"{__name__}:brightness"


def test_explicit_name_replaces_the_function_name() -> None:
    assert failing.name == "always_fails"
    assert failing.qualname == f"{__name__}:failing"
    assert not failing.takes_question


def test_argument_schema_has_described_parameters_without_images() -> None:
    schema = brightness.argument_schema()
    assert set(schema) == {"type", "properties", "required"}
    assert schema["type"] == "object"
    assert set(schema["properties"]) == {"question", "levels"}
    assert schema["required"] == []
    levels = schema["properties"]["levels"]
    assert levels["type"] == "integer"
    assert levels["default"] == 2
    assert levels["description"].startswith("how many brightness words to choose from;")
    assert schema["properties"]["question"] == {
        "default": "",
        "description": "the user's question (ignored)",
        "title": "Question",
        "type": "string",
    }


def test_full_input_schema_keeps_the_image_and_requires_it() -> None:
    schema = brightness.input_model.model_json_schema()
    assert schema["required"] == ["image"]
    assert schema["properties"]["image"]["description"] == "the image to measure"


def test_required_parameters_are_required_in_the_schema() -> None:
    @expert
    def count(ctx: ToolContext, image: ImageRef, label: str, at_least: float = 0.5) -> Evidence:
        """Count things.

        Args:
            image: the image
            label: what to count
            at_least: minimum detection score
        """
        return Evidence()

    schema = count.argument_schema()
    assert schema["required"] == ["label"]
    assert schema["properties"]["at_least"]["type"] == "number"


def test_argument_schema_keeps_definitions_that_parameters_refer_to() -> None:
    @expert
    def sharpen(ctx: ToolContext, image: ImageRef, mode: Mode = Mode.FAST) -> Evidence:
        """Sharpen.

        Args:
            image: the image
            mode: how hard to try
        """
        return Evidence()

    schema = sharpen.argument_schema()
    reference = schema["properties"]["mode"]["$ref"]
    assert reference == "#/$defs/Mode"
    assert schema["$defs"]["Mode"]["enum"] == ["fast", "careful"]


def test_docstring_without_args_section_is_fine_without_parameters() -> None:
    @expert
    def weather(ctx: ToolContext) -> Evidence:
        """Say it is sunny."""
        return Evidence(answer="sunny", confidence=1.0)

    assert weather.description == "Say it is sunny."
    assert weather.argument_schema() == {"type": "object", "properties": {}, "required": []}
    assert weather.image_params == ()


# Declaration errors name the function and say what is wrong.


def refused_declaration(fn: Callable[..., Evidence], why: str, **options: object) -> None:
    with pytest.raises(
        ToolDefinitionError, match=rf"^cannot declare tool {declared_name(fn)}: {why}$"
    ) as caught:
        expert(**options)(fn) if options else expert(fn)
    assert "\n" not in str(caught.value)


def test_missing_docstring_is_refused() -> None:
    def undocumented(ctx: ToolContext, image: ImageRef) -> Evidence:
        return Evidence()

    refused_declaration(
        undocumented, "it has no docstring; its text before Args: becomes the tool's description"
    )


def test_refusal_names_module_and_qualified_name() -> None:
    def undocumented(ctx: ToolContext) -> Evidence:
        return Evidence()

    with pytest.raises(ToolDefinitionError) as caught:
        expert(undocumented)
    expected = (
        f"cannot declare tool {__name__}:"
        "test_refusal_names_module_and_qualified_name.<locals>.undocumented: "
    )
    assert str(caught.value).startswith(expected)


def test_parameter_without_annotation_is_refused() -> None:
    def sloppy(ctx: ToolContext, image: ImageRef, top_k=3) -> Evidence:
        """Sloppy.

        Args:
            image: the image
            top_k: how many
        """
        return Evidence()

    refused_declaration(sloppy, "parameter 'top_k' has no type annotation")


def test_parameter_not_described_in_args_is_refused() -> None:
    def terse(ctx: ToolContext, image: ImageRef, top_k: int = 3) -> Evidence:
        """Terse.

        Args:
            image: the image
        """
        return Evidence()

    refused_declaration(terse, r"parameter 'top_k' is not described in the docstring's Args:")


def test_wrong_return_annotation_is_refused() -> None:
    def chatty(ctx: ToolContext, image: ImageRef) -> str:
        """Chatty.

        Args:
            image: the image
        """
        return "hello"

    refused_declaration(chatty, "it must be annotated to return Evidence")


def test_missing_return_annotation_is_refused() -> None:
    def silent(ctx: ToolContext, image: ImageRef):
        """Silent.

        Args:
            image: the image
        """
        return Evidence()

    refused_declaration(silent, "it must be annotated to return Evidence")


def test_first_parameter_must_be_ctx() -> None:
    def contextless(image: ImageRef) -> Evidence:
        """No context.

        Args:
            image: the image
        """
        return Evidence()

    refused_declaration(contextless, r"its first parameter must be `ctx: ToolContext`")


def test_star_args_are_refused() -> None:
    def variadic(ctx: ToolContext, *images: ImageRef) -> Evidence:
        """Variadic.

        Args:
            images: the images
        """
        return Evidence()

    refused_declaration(variadic, r"parameter 'images' is \*args/\*\*kwargs; list each argument")


def test_star_star_kwargs_are_refused() -> None:
    def loose(ctx: ToolContext, **options: int) -> Evidence:
        """Loose.

        Args:
            options: anything
        """
        return Evidence()

    refused_declaration(loose, r"parameter 'options' is \*args/\*\*kwargs; list each argument")


@pytest.mark.parametrize("bad_name", ["Bright", "bright-ness", "9lives", "caf\u00e9", "x" * 65])
def test_bad_tool_name_is_refused(bad_name: str) -> None:
    def fine(ctx: ToolContext) -> Evidence:
        """Fine."""
        return Evidence()

    refused_declaration(
        fine,
        rf"name {re.escape(repr(bad_name))} must be lower_snake_case, at most 64 characters",
        name=bad_name,
    )


def test_bad_function_name_is_refused_without_an_explicit_name() -> None:
    def Shout(ctx: ToolContext) -> Evidence:
        """Shout."""
        return Evidence()

    refused_declaration(Shout, "name 'Shout' must be lower_snake_case, at most 64 characters")


def test_unresolvable_type_hint_is_refused() -> None:
    def mystery(ctx: ToolContext, thing: Nonexistent) -> Evidence:  # noqa: F821
        """Mystery.

        Args:
            thing: a thing
        """
        return Evidence()

    refused_declaration(
        mystery, r"its type hints cannot be resolved \(name 'Nonexistent' is not defined\)"
    )


def test_parameter_type_without_a_json_schema_is_refused() -> None:
    def hooked(ctx: ToolContext, callback: Callable[[int], int]) -> Evidence:
        """Hooked.

        Args:
            callback: called back
        """
        return Evidence()

    refused_declaration(hooked, r"its parameters cannot form a schema \(.+\)")


# Running a tool: failures become evidence, never exceptions.


def test_run_returns_evidence_with_expert_latency_and_image(
    ctx: ToolContext, white: ImageRef
) -> None:
    evidence = brightness.run(ctx, {"image": white})
    assert evidence.ok
    assert evidence.answer == "bright"
    assert evidence.confidence == 0.75
    assert evidence.payload == {"level": 1.0}
    assert evidence.expert == "brightness"
    assert evidence.latency_ms > 0
    assert evidence.image == white.sha256


def test_run_accepts_an_image_reference_as_a_dict(ctx: ToolContext, white: ImageRef) -> None:
    evidence = brightness.run(ctx, {"image": white.model_dump(), "levels": 3})
    assert evidence.answer == "bright"
    assert evidence.image == white.sha256


def test_exception_inside_expert_becomes_one_line_error(ctx: ToolContext, white: ImageRef) -> None:
    evidence = failing.run(ctx, {"image": white})
    assert not evidence.ok
    assert evidence.answer is None
    assert evidence.error == "RuntimeError: the model exploded"
    assert evidence.expert == "always_fails"
    assert evidence.latency_ms > 0
    assert evidence.image == white.sha256


def test_expert_returning_something_else_becomes_an_error(ctx: ToolContext) -> None:
    @expert
    def sloppy(ctx: ToolContext) -> Evidence:
        """Returns a string despite its annotation."""
        return "cat"

    evidence = sloppy.run(ctx, {})
    assert evidence.error == f"TypeError: expert {sloppy.qualname} returned str"
    assert evidence.expert == "sloppy"


def test_unknown_image_becomes_an_error(ctx: ToolContext) -> None:
    evidence = brightness.run(ctx, {"image": {"sha256": "0" * 64}})
    assert evidence.error is not None
    assert evidence.error.startswith("ImageInputError: image 000000000000 is not in the store")
    assert evidence.image == "0" * 64


@pytest.mark.parametrize(
    ("arguments", "field", "problem"),
    [
        ({"image": "WHITE", "levels": 2}, "image.sha256", "String should match pattern"),
        ({"levels": 2}, "image", "Field required"),
        ({"image": None, "levels": "many"}, "image", ""),
        ({"image": {"sha256": "0" * 64}, "levels": "many"}, "levels", "valid integer"),
        ({"image": {"sha256": "0" * 64}, "colour": "red"}, "colour", "Extra inputs"),
        ({"image": {"sha256": "not hex"}}, "image.sha256", "String should match pattern"),
    ],
)
def test_invalid_arguments_become_evidence_naming_the_field(
    ctx: ToolContext, arguments: dict[str, object], field: str, problem: str
) -> None:
    evidence = brightness.run(ctx, arguments)
    assert evidence.answer is None
    assert evidence.error is not None
    assert "\n" not in evidence.error
    assert evidence.error.startswith(f"ToolInputError: tool 'brightness': {field}: ")
    assert problem in evidence.error
    assert evidence.expert == "brightness"


def test_validate_arguments_raises_naming_the_field(white: ImageRef) -> None:
    with pytest.raises(
        ToolInputError,
        match=r"^tool 'brightness': levels: Input should be a valid integer, unable to parse",
    ) as caught:
        brightness.validate_arguments({"image": white, "levels": "many"})
    assert "\n" not in str(caught.value)
    with pytest.raises(ToolInputError, match=r"^tool 'brightness': image: Field required$"):
        brightness.validate_arguments({})


def test_validate_arguments_returns_the_typed_arguments(white: ImageRef) -> None:
    validated = brightness.validate_arguments({"image": white.model_dump(), "levels": "3"})
    assert validated.model_dump() == {"image": white.model_dump(), "question": "", "levels": 3}


# LangChain.


def test_as_langchain_tool_invokes_to_the_evidence_dict(ctx: ToolContext, white: ImageRef) -> None:
    tool = brightness.as_langchain_tool(ctx)
    assert isinstance(tool, StructuredTool)
    assert tool.name == "brightness"
    assert tool.description == brightness.description
    assert set(tool.args) == {"image", "question", "levels"}
    assert tool.args["levels"]["description"].startswith("how many brightness words")

    result = tool.invoke({"image": white.model_dump(), "levels": 3})
    assert isinstance(result, dict)
    assert result["expert"] == "brightness"
    assert result["answer"] == "bright"
    assert result["error"] is None
    assert result["image"] == white.sha256
    assert Evidence.model_validate(result).ok


def test_langchain_tool_reports_expert_failures_as_evidence(
    ctx: ToolContext, white: ImageRef
) -> None:
    result = failing.as_langchain_tool(ctx).invoke({"image": white.model_dump()})
    assert result["error"] == "RuntimeError: the model exploded"
    assert result["answer"] is None


# The registry.


def test_registry_refuses_two_tools_with_one_name() -> None:
    @expert(name="brightness")
    def other_brightness(ctx: ToolContext) -> Evidence:
        """Another brightness."""
        return Evidence()

    with pytest.raises(
        ToolDefinitionError,
        match=(
            rf"^two tools are named 'brightness': {re.escape(brightness.qualname)} and "
            rf"{re.escape(other_brightness.qualname)}; rename one with @expert\(name=\.\.\.\)$"
        ),
    ):
        Registry([brightness, other_brightness])


def test_registry_accepts_the_same_tool_twice() -> None:
    registry = Registry([brightness, failing, brightness])
    assert registry.names() == ["brightness", "always_fails"]
    assert len(registry) == 2
    assert "brightness" in registry
    assert "colours" not in registry
    assert list(registry) == [brightness, failing]


def test_registry_get_of_unknown_name_lists_installed_tools() -> None:
    registry = Registry([failing, brightness])
    assert registry.get("brightness") is brightness
    with pytest.raises(
        UserError,
        match=r"^no tool named 'brightnes'; installed tools: always_fails, brightness$",
    ):
        registry.get("brightnes")
    with pytest.raises(UserError, match=r"^no tool named 'x'; installed tools: none$"):
        Registry([]).get("x")


def test_discover_finds_the_built_ins_through_entry_points() -> None:
    registry = Registry.discover()
    assert set(registry.names()) >= BUILT_INS
    for name in BUILT_INS:
        assert registry.get(name).qualname.startswith("sensorium.tools.")
    assert not registry.get("embed_image").answers_questions
    assert registry.get("colours").takes_question


def test_discover_with_enabled_keeps_only_those_in_order() -> None:
    registry = Registry.discover(["colours", "caption"])
    assert registry.names() == ["colours", "caption"]


def test_discover_with_an_unknown_enabled_tool_is_refused() -> None:
    with pytest.raises(UserError, match=r"^no tool named 'colors'; installed tools: .*colours"):
        Registry.discover(["colors"])


# Third-party plugins, through real entry points.

PLUGIN_SOURCE = '''
from sensorium.tools import Evidence, ImageRef, ToolContext, expert


@expert(examples=["How bright is it?"])
def brightness(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Say how bright an image is.

    Args:
        image: the image to measure
    """
    gray = ctx.images.load(image).convert("L")
    level = sum(gray.getdata()) / (gray.width * gray.height) / 255
    return Evidence(answer="bright" if level > 0.5 else "dark", confidence=0.6)


@expert(name="colours")
def my_colours(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Name colours my own way.

    Args:
        image: the image
    """
    return Evidence(answer="mauve", confidence=0.5)


def helper():
    return 42


def undocumented(ctx: ToolContext) -> Evidence:
    return Evidence()
'''


@pytest.fixture
def install_plugin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str, str, str], None]]:
    """Install a distribution `name` 0.1 with module `name.py` and `[sensorium.tools]` lines."""
    installed: list[str] = []

    def install(name: str, source: str, entry_points: str) -> None:
        site = tmp_path / f"site-{name}"
        site.mkdir()
        (site / f"{name}.py").write_text(textwrap.dedent(source))
        info = site / f"{name}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")
        monkeypatch.syspath_prepend(str(site))
        installed.append(name)

    yield install
    for name in installed:
        sys.modules.pop(name, None)


def test_discover_tools_finds_a_plugin(
    install_plugin: Callable[[str, str, str], None], ctx: ToolContext, white: ImageRef
) -> None:
    install_plugin("myplugin", PLUGIN_SOURCE, "brightness = myplugin:brightness")
    tools = discover_tools()
    plugin = next(tool for tool in tools if tool.qualname == "myplugin:brightness")
    assert plugin.name == "brightness"
    assert plugin.examples == ("How bright is it?",)
    assert {tool.name for tool in tools} >= BUILT_INS

    evidence = Registry([plugin]).get("brightness").run(ctx, {"image": white})
    assert (evidence.expert, evidence.answer, evidence.error) == ("brightness", "bright", None)


def test_plugin_with_a_built_in_name_is_refused_naming_both(
    install_plugin: Callable[[str, str, str], None],
) -> None:
    install_plugin("myplugin", PLUGIN_SOURCE, "zz_colours = myplugin:my_colours")
    with pytest.raises(
        ToolDefinitionError,
        match=(
            r"^two tools are named 'colours': sensorium\.tools\.colour:colours and "
            r"myplugin:my_colours; rename one"
        ),
    ):
        Registry.discover()


def test_entry_point_that_is_not_a_tool_is_refused(
    install_plugin: Callable[[str, str, str], None],
) -> None:
    install_plugin("notatool", PLUGIN_SOURCE, "helper = notatool:helper")
    with pytest.raises(
        ToolDefinitionError,
        match=(
            r"^entry point 'helper' = 'notatool:helper' \(group sensorium\.tools\) is a "
            r"function, not a Tool; decorate it with @expert$"
        ),
    ):
        discover_tools()


def test_entry_point_that_fails_to_import_is_refused(
    install_plugin: Callable[[str, str, str], None],
) -> None:
    install_plugin("brokenplugin", "import no_such_module_here\n", "broken = brokenplugin:tool")
    with pytest.raises(
        ToolDefinitionError,
        match=(
            r"^entry point 'broken' = 'brokenplugin:tool' \(group sensorium\.tools\) failed to "
            r"import: ModuleNotFoundError: No module named 'no_such_module_here'$"
        ),
    ):
        discover_tools()


def test_entry_point_naming_a_missing_attribute_is_refused(
    install_plugin: Callable[[str, str, str], None],
) -> None:
    install_plugin("myplugin", PLUGIN_SOURCE, "ghost = myplugin:ghost")
    with pytest.raises(
        ToolDefinitionError, match=r"^entry point 'ghost' = 'myplugin:ghost' .* failed to import: "
    ):
        discover_tools()


def test_plugin_with_a_bad_declaration_is_refused_naming_the_function(
    install_plugin: Callable[[str, str, str], None],
) -> None:
    source = PLUGIN_SOURCE + "\n\nbad = expert(undocumented)\n"
    install_plugin("badplugin", source, "bad = badplugin:bad")
    with pytest.raises(
        ToolDefinitionError,
        match=r"^cannot declare tool badplugin:undocumented: it has no docstring",
    ):
        discover_tools()


def test_a_langchain_tool_accepts_an_image_by_its_sha256(tmp_path: Path) -> None:
    from sensorium.tools.colour import colours

    store = ImageStore(tmp_path / "store")
    ref = store.add_image(Image.new("RGB", (8, 8), (220, 20, 30)))
    tool = colours.as_langchain_tool(ToolContext(host=ModelHost("cpu"), images=store))
    result = tool.invoke({"image": ref.sha256, "question": "What colour is it?"})
    assert (result["answer"], result["error"], result["image"]) == ("red", None, ref.sha256)
