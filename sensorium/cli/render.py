"""How a turn looks in the terminal: the reply, then a table of the evidence."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from sensorium.agent import TurnResult


def evidence_table(result: TurnResult) -> Table:
    """One row per expert call: what it said, how sure, how long, and any error."""
    many_images = len(result.images) > 1
    names = {image.sha256: image.name or image.short for image in result.images}
    table = Table(title="Evidence", title_justify="left", show_lines=False)
    table.add_column("expert", style="cyan", no_wrap=True)
    if many_images:
        table.add_column("image")
    table.add_column("answer")
    table.add_column("confidence", justify="right")
    table.add_column("ms", justify="right")
    table.add_column("error", style="red")
    for item in result.evidence:
        row = [item.expert]
        if many_images:
            row.append(names.get(item.image or "", ""))
        silent = item.answer is None and item.error is None
        row += [
            "[dim](no opinion)[/]" if silent else escape(item.answer or ""),
            f"{item.confidence:.2f}" if item.error is None and not silent else "",
            f"{item.latency_ms:.0f}",
            escape(item.error or ""),
        ]
        table.add_row(*row)
    return table


def show_turn(console: Console, result: TurnResult) -> None:
    """Print the reply, the evidence table and the planner's notes."""
    console.print(result.reply, style="bold", highlight=False)
    if result.evidence:
        console.print(evidence_table(result))
    for note in result.plan.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)
