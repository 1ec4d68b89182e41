"""Orchestration overhead: a full turn against the same expert calls made directly.

    python bench/overhead.py            # full run: about 1 minute on 2 CPU cores
    python bench/overhead.py --quick    # smoke run: fewer rounds
    python bench/overhead.py --threads memory   # threads in memory instead of SQLite

A turn (`agent.ask(question, [image], tools=[...])`, no LLM: router-free plan, fusion,
template reply, thread checkpoint in SQLite as the CLI writes it; `--threads memory`: the
in-memory saver, the library default) against the sum of its model calls made directly
(`tool.run(agent.context, arguments)`, one after another, with the arguments the turn's plan
bound). Models are warm and every image is already in the store; each measured call gets an
image of its own (one pixel changed), because the host memoises model outputs per image.
Rounds alternate which goes first; the figures are medians over rounds.

overhead = turn - direct. The target: under 10% and under 50 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image
from rich.console import Console
from rich.table import Table

from sensorium import Agent, ImageRef, LLMSettings, Registry, Settings
from sensorium.graphs import memory_checkpointer, sqlite_checkpointer

console = Console(width=None if sys.stdout.isatty() else 150)
IMAGE = Path(__file__).resolve().parents[1] / "examples" / "images" / "chelsea.jpg"
QUESTION = "What animal is this?"
CASES = {"classify": ["classify"], "classify+colours": ["classify", "colours"]}


class Images:
    """New copies of the test photo, one pixel changed each, already in the agent's store."""

    def __init__(self, agent: Agent) -> None:
        self.agent, self.base, self.serial = agent, Image.open(IMAGE).convert("RGB"), 0

    def next(self) -> ImageRef:
        self.serial += 1
        pixels = self.base.copy()
        pixels.putpixel((0, 0), (self.serial % 256, self.serial // 256 % 256, 11))
        return self.agent.add_image(pixels)


def measure(
    agent: Agent, images: Images, names: list[str], rounds: int, same: bool
) -> dict[str, list[float]]:
    """Per round: turn wall time and direct wall time (ms), in alternating order."""
    first = agent.ask(QUESTION, [images.next()], tools=names)  # warm-up: loads the models
    assert not [e.error for e in first.evidence if e.error], first.evidence
    calls = [(agent.registry.get(c.tool), dict(c.arguments)) for c in first.plan.calls]
    runs: dict[str, list[float]] = {"turn": [], "direct": []}
    for index in range(rounds):
        for mode in ("turn", "direct") if index % 2 == 0 else ("direct", "turn"):
            image = first.images[0] if same else images.next()  # stored before the clock
            began = time.perf_counter()
            if mode == "turn":
                agent.ask(QUESTION, [image], tools=names)
            else:
                for tool, arguments in calls:
                    tool.run(agent.context, {**arguments, tool.image_params[0]: image})
            runs[mode].append((time.perf_counter() - began) * 1000)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 rounds instead of --rounds")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument(
        "--threads",
        choices=["sqlite", "memory"],
        default="sqlite",
        help="where threads are checkpointed: SQLite as the CLI (default), or in memory",
    )
    args = parser.parse_args()
    rounds = 5 if args.quick else args.rounds
    console.print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python "
        f"{sys.version.split()[0]}, threads in {args.threads}"
    )
    began = time.perf_counter()
    table = Table(title=f"Turn vs direct expert calls (median of {rounds} rounds)")
    for column in (
        "experts",
        "images",
        "turn (ms)",
        "direct (ms)",
        "overhead (ms)",
        "overhead (%)",
        "overhead p90 (ms)",
    ):
        table.add_column(column, justify="right")
    with tempfile.TemporaryDirectory(prefix="sensorium-overhead-") as scratch:
        settings = Settings(llm=LLMSettings(backend="none"), data_dir=Path(scratch))
        registry = Registry.discover(["classify", "colours"])
        checkpointer = (
            sqlite_checkpointer(settings.threads_path)
            if args.threads == "sqlite"
            else memory_checkpointer()
        )
        agent = Agent(settings, chat_model=None, registry=registry, checkpointer=checkpointer)
        images = Images(agent)
        for label, names in CASES.items():
            for same in (False, True):
                runs = measure(agent, images, names, rounds, same)
                turn, direct = statistics.median(runs["turn"]), statistics.median(runs["direct"])
                extra = sorted(t - d for t, d in zip(runs["turn"], runs["direct"], strict=True))
                table.add_row(
                    label,
                    "memoised (same)" if same else "new each call",
                    f"{turn:.1f}",
                    f"{direct:.1f}",
                    f"{turn - direct:.1f}",
                    f"{(turn - direct) / direct * 100:.0f}%",
                    f"{extra[int(0.9 * (len(extra) - 1))]:.1f}",
                )
    console.print(table)
    console.print(
        f"took {time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
