"""`sensorium ask`: one question, optionally about images; the reply and its evidence."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sensorium.cli.app import ConfigOption, DebugOption, NoLlmOption, app, err, out
from sensorium.cli.render import show_turn
from sensorium.cli.session import open_agent

if TYPE_CHECKING:
    from PIL import Image

    from sensorium.agent import Agent, TurnResult


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
    boxes: Annotated[
        Path | None,
        typer.Option(
            "--boxes", dir_okay=False, help="Save the image with the boxes experts found (PNG)."
        ),
    ] = None,
    raw: Annotated[
        bool,
        typer.Option(
            "--raw", help="Also show each expert's own (uncalibrated) confidence, labelled raw."
        ),
    ] = False,
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
    if boxes is not None:
        drawn = draw_boxes(agent, result)
        if drawn is None:
            err.print("no expert found boxes to draw; nothing saved", highlight=False)
        else:
            drawn.save(boxes, format="PNG")
    if as_json:
        typer.echo(json.dumps(result.summary(), ensure_ascii=False))
    else:
        show_turn(out, result, raw=raw)


def draw_boxes(agent: Agent, result: TurnResult) -> Image.Image | None:
    """The first image with an expert's boxes (`payload["boxes"]`) drawn and labelled."""
    from PIL import ImageDraw

    for evidence in result.evidence:
        found = evidence.payload.get("boxes") if evidence.image else None
        if not found:
            continue
        image = agent.images.load(evidence.image)  # type: ignore[arg-type]
        pen = ImageDraw.Draw(image)
        for box in found:
            corners = [float(v) for v in box["box"]]
            pen.rectangle(corners, outline=(255, 40, 40), width=max(2, image.width // 200))
            pen.text(
                (corners[0] + 3, corners[1] + 2),
                f"{box['label']} {box['score']:.2f}",
                fill=(255, 40, 40),
            )
        return image
    return None
