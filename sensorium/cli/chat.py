"""`sensorium chat`: a conversation; images stay attached until replaced."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sensorium.cli.app import ConfigOption, DebugOption, NoLlmOption, app, err, out
from sensorium.cli.render import stream_turn
from sensorium.cli.session import open_agent
from sensorium.tools import SensoriumError

if TYPE_CHECKING:
    from sensorium.tools import ImageRef

HELP = (
    "Type a question. Commands: /image PATH (attach; repeat for several), /clear (detach "
    "images), /history, /quit."
)


@app.command()
def chat(
    image: Annotated[
        list[Path] | None, typer.Option("--image", "-i", help="Attach an image to start with.")
    ] = None,
    thread: Annotated[
        str | None, typer.Option("--thread", "-t", help="Resume (or start) a named thread.")
    ] = None,
    no_llm: NoLlmOption = False,
    config: ConfigOption = None,
    debug: DebugOption = False,
) -> None:
    """Hold a multi-turn conversation about images."""
    from langchain_core.messages import HumanMessage

    agent = open_agent(config, no_llm=no_llm)
    thread_id = thread or uuid.uuid4().hex[:12]
    previous = agent.graph.get_state({"configurable": {"thread_id": thread_id}}).values
    attached: list[ImageRef] = list(previous.get("images", []))
    turns = sum(isinstance(m, HumanMessage) for m in previous.get("messages", []))
    err.print(
        f"[dim]thread {thread_id}"
        + (f" (resumed: {turns} earlier turns)" if turns else "")
        + f". {HELP}[/]",
        highlight=False,
    )
    attached += [agent.add_image(path) for path in image or []]
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        try:
            if line.startswith("/image"):
                attached.append(agent.add_image(Path(line[len("/image") :].strip())))
                out.print(f"[dim]attached {attached[-1].name} ({len(attached)} images)[/]")
            elif line == "/clear":
                attached = []
                out.print("[dim]no images attached[/]")
            elif line == "/history":
                for message in agent.history(thread_id):
                    out.print(f"[dim]{message.type}:[/] {message.content}", highlight=False)
            elif line.startswith("/"):
                out.print(f"[dim]{HELP}[/]")
            else:
                stream_turn(out, agent.stream(line, attached, thread_id=thread_id))
        except SensoriumError as exc:
            # In a conversation a bad input is reported and the conversation goes on.
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
    err.print(f"[dim]resume with: sensorium chat --thread {thread_id}[/]", highlight=False)
