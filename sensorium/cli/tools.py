"""`sensorium tools list`: the installed experts, their arguments and where they come from."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from sensorium.cli.app import ConfigOption, DebugOption, Options, out, tools_app
from sensorium.config import load_settings
from sensorium.tools import Registry, Tool


def describe(tool: Tool) -> dict[str, Any]:
    """A tool as plain data."""
    schema = tool.input_model.model_json_schema()
    return {
        "name": tool.name,
        "description": tool.description,
        "parameters": schema.get("properties", {}),
        "required": schema.get("required", []),
        "examples": list(tool.examples),
        "answers_questions": tool.answers_questions,
        "implementation": tool.qualname,
    }


@tools_app.command("list")
def list_tools(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """List the experts this installation can use."""
    settings = load_settings(config or Options.config)
    registry = Registry.discover(settings.tools)
    if as_json:
        typer.echo(json.dumps([describe(t) for t in registry], ensure_ascii=False))
        return
    table = Table(title=f"{len(registry)} tools", title_justify="left")
    table.add_column("name", style="cyan", no_wrap=True)
    table.add_column("description")
    table.add_column("arguments")
    table.add_column("implementation", style="dim")
    for tool in registry:
        arguments = ", ".join(tool.input_model.model_fields)
        table.add_row(tool.name, tool.description, arguments, tool.qualname)
    out.print(table)
