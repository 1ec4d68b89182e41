"""`sensorium ask`: one question, optionally about images; the reply and its evidence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sensorium.cli.app import ConfigOption, DebugOption, NoLlmOption, app, err, out
from sensorium.cli.render import show_turn
from sensorium.cli.session import open_agent


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="What to ask, in plain language.")],
    image: Annotated[
        list[Path] | None,
        typer.Option("--image", "-i", help="An image to ask about (repeat for several)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    thread: Annotated[
        str | None, typer.Option("--thread", "-t", help="Continue (or start) a named thread.")
    ] = None,
    no_llm: NoLlmOption = False,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """Ask one question and show the reply with a table of the evidence."""
    agent = open_agent(config, no_llm=no_llm, quiet=as_json)
    # Check the inputs before loading any model: a bad path fails in milliseconds.
    images = [agent.add_image(path) for path in image] if image else None
    with err.status("Consulting experts...", spinner="dots"):
        result = agent.ask(question, images, thread_id=thread)
    if as_json:
        typer.echo(json.dumps(result.summary(), ensure_ascii=False))
    else:
        show_turn(out, result)
