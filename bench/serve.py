"""Server load benchmark: concurrent conversations against `sensorium serve`, side by side.

    python bench/serve.py            # 1, 8 and 32 concurrent sessions, 4 turns each
    python bench/serve.py --quick    # 1 and 4 sessions, 2 turns each

Starts `sensorium serve --no-llm` (lite profile) in a temporary data folder, warms it up with
one turn, then for each concurrency level runs that many conversations at once, each a few
turns on its own thread (the first with an image, then follow-ups), through the OpenAI-
compatible endpoint as a chat front-end would. It reports turns per second, turn latency p50
and p95, errors, and the ratio of the experts' summed model time (their `latency_ms`) to the
wall time: above 1, experts of different conversations ran at the same time. The levels run
back to back in one process against one server, so their ratios compare; absolute figures
depend on the machine.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
IMAGES = [REPO / "examples" / "images" / name for name in ("chelsea.jpg", "coffee.jpg", "red.png")]
FOLLOW_UPS = ["What colour is it?", "Is it a cat?", "Describe it.", "What is in the picture?"]
console = Console(width=None if sys.stdout.isatty() else 120)


@dataclass
class Level:
    """What one concurrency level measured."""

    sessions: int
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    expert_ms: float = 0.0
    errors: int = 0

    def row(self) -> list[str]:
        turns = len(self.latencies_ms)
        p50 = statistics.median(self.latencies_ms) if turns else 0.0
        p95 = statistics.quantiles(self.latencies_ms, n=20)[-1] if turns > 1 else p50
        return [
            str(self.sessions),
            str(turns),
            str(self.errors),
            f"{turns / self.wall_s:.2f}",
            f"{p50:.0f}",
            f"{p95:.0f}",
            f"{self.expert_ms / 1000 / self.wall_s:.2f}",
        ]


def data_url(path: Path, variant: int) -> str:
    """The image with one pixel changed per `variant`: a new image to the server (the experts
    cache what they computed per image, and a benchmark of cache hits measures nothing)."""
    image = Image.open(path).convert("RGB")
    image.putpixel(
        (variant % image.width, variant // image.width % image.height), (variant % 256, 7, 7)
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def converse(url: str, number: int, turns: int) -> tuple[list[float], float, int]:
    """One conversation: (turn latencies in ms, expert ms summed, errors)."""
    image = data_url(IMAGES[number % len(IMAGES)], number)
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": image}},
            ],
        }
    ]
    latencies, expert_ms, errors = [], 0.0, 0
    with httpx.Client(base_url=url, timeout=600) as client:
        for turn in range(turns):
            begun = time.perf_counter()
            response = client.post("/v1/chat/completions", json={"messages": messages})
            latencies.append((time.perf_counter() - begun) * 1000)
            if response.status_code != 200:
                errors += 1
                break
            body = response.json()
            expert_ms += sum(e["latency_ms"] for e in body["sensorium"]["evidence"])
            reply = body["choices"][0]["message"]["content"]
            messages += [
                {"role": "assistant", "content": reply},
                {"role": "user", "content": FOLLOW_UPS[(number + turn) % len(FOLLOW_UPS)]},
            ]
    return latencies, expert_ms, errors


def run_level(url: str, sessions: int, turns: int, first: int) -> Level:
    level = Level(sessions)
    begun = time.perf_counter()
    with ThreadPoolExecutor(sessions) as pool:
        for latencies, expert_ms, errors in pool.map(
            lambda n: converse(url, n, turns), range(first, first + sessions)
        ):
            level.latencies_ms += latencies
            level.expert_ms += expert_ms
            level.errors += errors
    level.wall_s = time.perf_counter() - begun
    return level


def start_server(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [str(Path(sys.executable).with_name("sensorium")), "serve", "--no-llm"]
    env = os.environ | {"SENSORIUM_DATA_DIR": str(data)}
    process = subprocess.Popen(
        [*command, "--port", str(port)], env=env, cwd=data, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("the server did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 4 sessions, 2 turns each")
    parser.add_argument("--sessions", type=int, nargs="+", help="concurrency levels")
    parser.add_argument("--turns", type=int, help="turns per conversation")
    args = parser.parse_args()
    sessions = args.sessions or ([1, 4] if args.quick else [1, 8, 32])
    turns = args.turns or (2 if args.quick else 4)
    console.print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; lite profile, --no-llm, {turns} turns each"
    )
    with tempfile.TemporaryDirectory(prefix="sensorium-bench-") as scratch:
        process, url = start_server(Path(scratch))
        try:
            converse(url, 0, 1)  # warm-up: the models load on first use
            levels, first = [], 1
            for n in sessions:  # each conversation gets its own image variant
                levels.append(run_level(url, n, turns, first))
                first += n
        finally:
            process.terminate()
            process.wait(timeout=30)
    table = Table(title="concurrent conversations against one server")
    for column in (
        "sessions",
        "turns",
        "errors",
        "turns/s",
        "p50 ms",
        "p95 ms",
        "expert s / wall s",
    ):
        table.add_column(column, justify="right")
    for level in levels:
        table.add_row(*level.row())
    console.print(table)
    base = levels[0]
    for level in levels[1:]:
        speedup = (len(level.latencies_ms) / level.wall_s) / (len(base.latencies_ms) / base.wall_s)
        slower = statistics.median(level.latencies_ms) / statistics.median(base.latencies_ms)
        console.print(
            f"{level.sessions} sessions: throughput x{speedup:.2f} of {base.sessions}, "
            f"p50 latency x{slower:.2f}"
        )


if __name__ == "__main__":
    main()
