"""`sensorium tools list`: the installed experts, their arguments and where they come from."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from sensorium.cli.app import ConfigOption, DebugOption, Options, out, tools_app

# Settings and tools are imported when a command runs, not here: the settings load pydantic
# and the experts numpy, which `sensorium --help` should not pay for.
if TYPE_CHECKING:
    from sensorium.agent import Settings
    from sensorium.tools import Tool


# Experts whose model ships inside a package and runs on the CPU, whatever the settings say.
PACKAGED_MODELS = {"read_text": "PP-OCRv4 (rapidocr-onnxruntime, ONNX Runtime)"}


def describe(tool: Tool, settings: Settings | None = None) -> dict[str, Any]:
    """A tool as plain data; a transformers expert also names its checkpoint and device."""
    from sensorium.agent import Settings
    from sensorium.tools.profiles import EXPERT_MODELS

    schema = tool.input_model.model_json_schema()
    settings = settings or Settings()
    role = EXPERT_MODELS.get(tool.name)
    device = None
    model = getattr(settings.models, role) if role else PACKAGED_MODELS.get(tool.name)
    if role == "vlm" and settings.models.vlm_endpoint:
        device = settings.models.vlm_endpoint  # the server it calls
    elif role:
        from sensorium.tools.host import resolve_device  # torch: only for transformers experts

        device = str(resolve_device(settings.device))
    elif model:
        device = "cpu"
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters": schema.get("properties", {}),
        "required": schema.get("required", []),
        "examples": list(tool.examples),
        "answers_questions": tool.answers_questions,
        "implementation": tool.qualname,
        "model": model,
        "device": device,
    }


@tools_app.command("list")
def list_tools(
    profile: Annotated[
        str | None, typer.Option("--profile", "-p", help="lite or standard (default: config's).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """List the experts this installation can use."""
    from sensorium.config import load_settings
    from sensorium.tools import Registry
    from sensorium.tools.profiles import EXPERT_MODELS

    overrides = {"profile": profile} if profile else {}
    settings = load_settings(config or Options.config, overrides=overrides)
    registry = Registry.discover(settings.tools, settings.profile)
    if as_json:
        typer.echo(json.dumps([describe(t, settings) for t in registry], ensure_ascii=False))
        return
    table = Table(title=f"{len(registry)} tools", title_justify="left")
    table.add_column("name", style="cyan", no_wrap=True)
    table.add_column("description")
    table.add_column("arguments")
    table.add_column("implementation", style="dim")
    for tool in registry:
        arguments = ", ".join(tool.input_model.model_fields)
        role = EXPERT_MODELS.get(tool.name)
        implementation = (
            f"{tool.qualname} ({getattr(settings.models, role)})" if role else tool.qualname
        )
        table.add_row(tool.name, tool.description, arguments, implementation)
    out.print(table)
