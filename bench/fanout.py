"""Fan-out benchmark: one turn asks 4 experts in parallel; the same calls made one by one.

    python bench/fanout.py            # full run: about 1 minute on 2 CPU cores
    python bench/fanout.py --quick    # smoke run: fewer rounds

Two sets of 4 experts, each through the real graph (`Agent(...).ask(q, [image], tools=[...])`,
no LLM, so the plan is exactly the experts named):

- waiting experts: `@expert` functions that sleep 100/150/200/250 ms (`--waits`), standing for
  I/O- or GPU-bound experts, which leave the CPU free while they wait;
- lite experts: classify, answer_question, colours and caption, the real CPU-bound models
  (on 2 cores four of them contend, so their parallel turn cannot reach the slowest one).

Per round, in rotating order: the turn (wall time, and each expert's own `latency_ms` from
its Evidence), and the plan's calls run one after another through `tool.run(agent.context,
arguments)`. The target: a turn within 1.2x of its slowest expert, not their sum.
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

from sensorium import (
    Agent,
    Evidence,
    ImageRef,
    LLMSettings,
    Registry,
    Settings,
    Tool,
    ToolContext,
    expert,
)

console = Console(width=None if sys.stdout.isatty() else 150)
IMAGE = Path(__file__).resolve().parents[1] / "examples" / "images" / "chelsea.jpg"
QUESTION = "What animal is this?"


def waiting_expert(ms: int) -> Tool:
    """An expert that waits `ms` milliseconds without using the CPU, then answers."""

    def wait(ctx: ToolContext, image: ImageRef, question: str) -> Evidence:
        """Wait a fixed time (like an expert waiting on I/O or a GPU), then answer.

        Args:
            image: the image asked about
            question: the user's question
        """
        time.sleep(ms / 1000)
        return Evidence(answer="cat", confidence=0.6)

    return expert(name=f"wait_{ms}ms")(wait)


def fresh_image(agent: Agent, serial: int) -> ImageRef:
    """The test photo with one pixel changed: a new sha256, so no expert output is memoised."""
    pixels = Image.open(IMAGE).convert("RGB")
    pixels.putpixel((0, 0), (serial % 256, serial // 256 % 256, 7))
    return agent.add_image(pixels)


def measure(agent: Agent, names: list[str], rounds: int, same: bool) -> dict[str, list[float]]:
    """Interleaved rounds of turn vs sequential; per round: wall times and expert latencies.
    Each measured call gets a new image (the host memoises model outputs per image) unless
    `same`; the sequential calls are rebound to their image."""
    serial = iter(range(1, 10**6))
    result = agent.ask(QUESTION, [fresh_image(agent, 0)], tools=names)  # warm-up: loads models
    calls = [(agent.registry.get(c.tool), dict(c.arguments)) for c in result.plan.calls]
    assert sorted(t.name for t, _ in calls) == sorted(names), result.plan.calls
    errors = [e.error for e in result.evidence if e.error]
    assert not errors, errors
    runs: dict[str, list[float]] = {"turn": [], "sequential": [], "sum": [], "slowest": []}
    for index in range(rounds):
        for mode in ("turn", "sequential") if index % 2 == 0 else ("sequential", "turn"):
            image = result.images[0] if same else fresh_image(agent, next(serial))
            began = time.perf_counter()
            if mode == "turn":
                turn = agent.ask(QUESTION, [image], tools=names)
                runs["turn"].append((time.perf_counter() - began) * 1000)
                latencies = [e.latency_ms for e in turn.evidence]
                runs["sum"].append(sum(latencies))
                runs["slowest"].append(max(latencies))
            else:
                for tool, arguments in calls:
                    tool.run(agent.context, {**arguments, tool.image_params[0]: image})
                runs["sequential"].append((time.perf_counter() - began) * 1000)
    return runs


def report(title: str, runs: dict[str, list[float]], rounds: int) -> None:
    med = {key: statistics.median(values) for key, values in runs.items()}
    table = Table(title=f"{title} (median of {rounds} rounds, ms)")
    for column in (
        "turn",
        "slowest expert",
        "sum of experts",
        "sequential",
        "turn / slowest",
        "sequential / turn",
        "turn / slowest per round",
    ):
        table.add_column(column, justify="right")
    per_round = " ".join(f"{t / s:.2f}" for t, s in zip(runs["turn"], runs["slowest"], strict=True))
    table.add_row(
        f"{med['turn']:.0f}",
        f"{med['slowest']:.0f}",
        f"{med['sum']:.0f}",
        f"{med['sequential']:.0f}",
        f"{med['turn'] / med['slowest']:.2f}x",
        f"{med['sequential'] / med['turn']:.2f}x",
        per_round,
    )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds instead of --rounds")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--waits", default="100,150,200,250", help="waiting experts, in ms")
    parser.add_argument(
        "--same-image",
        action="store_true",
        help="reuse one image, so the lite experts' outputs are memoised",
    )
    parser.add_argument("--skip-lite", action="store_true", help="only the waiting experts")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    console.print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, Python "
        f"{sys.version.split()[0]}"
    )
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sensorium-fanout-") as scratch:
        settings = Settings(llm=LLMSettings(backend="none"), data_dir=Path(scratch))
        waiters = [waiting_expert(int(ms)) for ms in args.waits.split(",")]
        agent = Agent(settings, chat_model=None, registry=Registry(waiters))
        runs = measure(agent, [t.name for t in waiters], rounds, args.same_image)
        report(f"{len(waiters)} waiting experts ({args.waits} ms)", runs, rounds)
        if not args.skip_lite:
            names = ["classify", "answer_question", "colours", "caption"]
            lite = Agent(settings, chat_model=None, registry=Registry.discover(names))
            runs = measure(lite, names, rounds, args.same_image)
            how = "one image, memoised" if args.same_image else "a new image each call"
            report(f"4 lite experts ({', '.join(names)}; {how})", runs, rounds)
    console.print(
        f"took {time.perf_counter() - began:.0f} s; load average {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
