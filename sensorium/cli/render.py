"""How a turn looks in the terminal: the reply, then a table of the evidence.

`stream_turn` shows the same table filling in while the turn runs: a row per planned call,
"working..." until that expert answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from sensorium.agent import TurnEvent, TurnResult
    from sensorium.graphs import Decision, ToolCall, Vote
    from sensorium.tools import Evidence, ImageRef


def _image_of(call: ToolCall) -> str | None:
    from sensorium.graphs import plain_arguments

    image = plain_arguments(call.arguments).get("image")
    return image if isinstance(image, str) else None


def evidence_table(
    calls: list[ToolCall],
    evidence: list[Evidence],
    images: list[ImageRef],
    decisions: Sequence[Decision] = (),
    raw: bool = False,
) -> Table:
    """One row per expert call: what it said, how sure, how long, and any error. A call
    without evidence is still running, or was refused (its error says why).

    One confidence per answer: the calibrated one fusion weighed (the probability that it is
    right), once the decision is in; an answer that cast no vote shows the expert's own,
    marked "raw". `raw` adds a column with every expert's own confidence."""
    votes: dict[str, Vote] = {
        vote.call_id: vote for decision in decisions for vote in decision.votes if vote.call_id
    }
    names = {image.sha256: image.name or image.short for image in images}
    many_images = len({_image_of(c) for c in calls} | {e.image for e in evidence}) > 1
    table = Table(title="Evidence", title_justify="left", show_lines=False)
    table.add_column("expert", style="cyan", no_wrap=True)
    if many_images:
        table.add_column("image")
    table.add_column("answer")
    table.add_column("confidence", justify="right")
    if raw:
        table.add_column("raw", justify="right", style="dim")
    table.add_column("ms", justify="right")
    remote = any(e.where != "local" for e in evidence)  # experts on Ray: say which ran where
    if remote:
        table.add_column("where", style="dim")
    table.add_column("error", style="red")
    landed = {e.call_id: e for e in evidence if e.call_id}
    rows: list[tuple[str, str | None, Evidence | None, str | None]] = [
        (c.tool, _image_of(c), landed.get(c.id), c.error) for c in calls
    ]
    planned = {c.id for c in calls}
    rows += [(e.expert, e.image, e, None) for e in evidence if e.call_id not in planned]
    for expert, image, item, refused in rows:
        row = [expert]
        if many_images:
            row.append(escape(names.get(image or "", "")))
        if item is None:
            row += ["" if refused else "[dim]working...[/]", "", ""]
            row += [""] if raw else []
            row += [""] if remote else []
            row.append(escape(refused or ""))
        else:
            silent = item.answer is None and item.error is None
            answered = item.error is None and not silent
            vote = votes.get(item.call_id or "")
            shown = ""
            if answered:
                shown = (
                    f"{vote.confidence:.2f}"
                    if vote is not None
                    else f"[dim]{item.confidence:.2f} raw[/]"
                )
            row += ["[dim](no opinion)[/]" if silent else escape(item.answer or ""), shown]
            row += [f"{item.confidence:.2f}" if answered else ""] if raw else []
            row.append(f"{item.latency_ms:.0f}")
            row += [escape(item.where)] if remote else []
            row.append(escape(item.error or ""))
        table.add_row(*row)
    return table


def show_reply(console: Console, result: TurnResult) -> None:
    """Print the reply and the planner's notes."""
    console.print(result.reply, style="bold", highlight=False, markup=False)
    for note in result.plan.notes:
        console.print(f"[dim]note: {escape(note)}[/]", highlight=False)


def show_turn(console: Console, result: TurnResult, raw: bool = False) -> None:
    """Print the reply, the evidence table and the planner's notes (`raw`: with each
    expert's own, uncalibrated confidence beside the calibrated one)."""
    console.print(result.reply, style="bold", highlight=False, markup=False)
    if result.plan.calls or result.evidence:
        table = evidence_table(
            result.plan.calls, result.evidence, result.images, result.decisions, raw
        )
        console.print(table)
    for note in result.plan.notes:
        console.print(f"[dim]note: {escape(note)}[/]", highlight=False)


def stream_turn(console: Console, events: Iterable[TurnEvent]) -> TurnResult:
    """Show a running turn: the evidence table fills in as experts answer, then the reply."""
    from sensorium.agent.events import DecisionEvent, EvidenceEvent, ReplyEvent, ToolCallEvent
    from sensorium.tools import ImageRef

    calls: list[ToolCall] = []
    evidence: list[Evidence] = []
    decisions: list[Decision] = []
    images: list[ImageRef] = []  # as planned calls name them, for the table's image column
    result: TurnResult | None = None
    waiting = "[dim]planning...[/]"
    with Live(waiting, console=console, auto_refresh=False, transient=False) as live:
        for event in events:
            if isinstance(event, ToolCallEvent):
                calls.append(event.call)
                images += [v for v in event.call.arguments.values() if isinstance(v, ImageRef)]
            elif isinstance(event, EvidenceEvent):
                evidence.append(event.evidence)
            elif isinstance(event, DecisionEvent):
                decisions.append(event.decision)
            elif isinstance(event, ReplyEvent):
                result = event.result
                calls, evidence, images = result.plan.calls, result.evidence, result.images
                decisions = list(result.decisions)
            else:
                continue
            live.update(evidence_table(calls, evidence, images, decisions), refresh=True)
        if result is not None and not (result.plan.calls or result.evidence):
            live.update("", refresh=True)  # nothing was consulted: no empty table
    if not console.is_terminal:  # Live ends its last frame with a newline only on a terminal
        console.line()
    if result is None:  # a stream always ends with its reply; anything else is a bug
        raise RuntimeError("the turn ended without a reply")
    show_reply(console, result)
    return result
