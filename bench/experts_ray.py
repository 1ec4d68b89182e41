"""Experts in process vs on Ray Serve with 1 and 2 replicas: the same load, side by side.

    python bench/experts_ray.py            # 8 concurrent callers, 96 calls per setup
    python bench/experts_ray.py --quick    # 4 callers, 24 calls

Starts a local Ray cluster of its own (stopped at the end by its process group), then runs
one load against three setups of the same expert (`--expert`, default `classify`, a lite CPU
model): `LocalExperts` (this process, the model host's micro-batching), and the
`sensorium-experts` Serve application with 1 and then 2 replicas (Serve's `@serve.batch`
feeding each replica's host). Every call asks about a different image (variants of the
example photo), so no answer comes from a per-image cache. It prints calls per second, call
latency p50 and p95, and Serve's overhead per call: the caller's wall time minus the time
the expert itself reported (`latency_ms`), measured on calls made one at a time. The setups
run in one process on one machine, so their ratios compare; absolute figures depend on it.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image
from rich.console import Console
from rich.table import Table

from sensorium import Agent, Evidence, ImageRef, LLMSettings, Registry, Settings, Tool
from sensorium.graphs import LocalExperts
from sensorium.tools import ray_cluster
from sensorium.tools.ray_experts import RayExperts

console = Console(width=None if sys.stdout.isatty() else 130)
IMAGE = Path(__file__).resolve().parents[1] / "examples" / "images" / "chelsea.jpg"
Backend = Callable[[Tool, dict[str, Any]], Evidence]


def variants(agent: Agent, count: int) -> list[ImageRef]:
    """`count` different images: crops of the example photo, shifted a few pixels each."""
    with Image.open(IMAGE) as photo:
        base = photo.convert("RGB")
    found = []
    for i in range(count):
        dx, dy = i % 8 * 3, i // 8 * 3
        crop = base.crop((dx, dy, base.width - 24 + dx, base.height - 24 + dy))
        found.append(agent.images.add_image(crop, name=f"variant-{i}"))
    return found


def load(backend: Backend, tool: Tool, images: list[ImageRef], callers: int) -> dict[str, Any]:
    """Every image asked once, by `callers` threads at a time."""
    started = time.perf_counter()

    def one(image: ImageRef) -> tuple[float, Evidence]:
        begun = time.perf_counter()
        evidence = backend(tool, {"image": image})
        return (time.perf_counter() - begun) * 1000, evidence

    with ThreadPoolExecutor(callers) as pool:
        done = list(pool.map(one, images))
    wall = time.perf_counter() - started
    latencies = sorted(ms for ms, _ in done)
    return {
        "calls": len(done),
        "errors": sum(1 for _, e in done if e.error),
        "per_s": len(done) / wall,
        "p50": statistics.median(latencies),
        "p95": latencies[int(0.95 * (len(latencies) - 1))],
    }


def overhead(backend: Backend, tool: Tool, images: list[ImageRef]) -> float:
    """Median of (caller's wall time - the expert's own latency), calls one at a time."""
    gaps = []
    for image in images:
        begun = time.perf_counter()
        evidence = backend(tool, {"image": image})
        gaps.append((time.perf_counter() - begun) * 1000 - evidence.latency_ms)
    return statistics.median(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--expert", default="classify", help="the expert to load")
    args = parser.parse_args()
    callers, calls = (4, 24) if args.quick else (8, 96)

    folder = Path(tempfile.mkdtemp(prefix="sensorium-bench-ray-"))
    settings = Settings(
        data_dir=folder / "data",
        tools=[args.expert],
        llm=LLMSettings(backend="none"),
        experts={"backend": "ray", "local": [], "num_cpus": 1},
    )
    in_process = settings.experts.model_copy(update={"backend": "local"})
    agent = Agent(settings.model_copy(update={"experts": in_process}), chat_model=None)
    tool = Registry.discover([args.expert]).get(args.expert)
    images = variants(agent, calls + 16)
    warm, loaded, single = images[:4], images[4:-12], images[-12:]
    local = LocalExperts(agent.context, timeout_s=120)

    console.print(f"Starting a local Ray cluster ({os.cpu_count()} CPUs)", highlight=False)
    cluster = ray_cluster.start_local(settings.data_dir, num_cpus=4)
    rows: list[tuple[str, dict[str, Any], float | None]] = []
    try:
        ray_cluster.connect(cluster.target(), settings.data_dir)
        from sensorium.tools import ray_app

        for _ in warm:
            local(tool, {"image": _})
        rows.append(("local (in process)", load(local, tool, loaded, callers), None))
        for replicas in (1, 2):
            sized = settings.model_copy(
                update={"experts": settings.experts.model_copy(update={"replicas": replicas})}
            )
            with console.status(f"Deploying {args.expert} with {replicas} replica(s)"):
                ray_app.deploy(sized, [args.expert])
            remote = RayExperts(
                local,
                agent.images,
                timeout_s=120,
                address=cluster.address,
                data_dir=settings.data_dir,
            )
            for _ in range(2 * replicas):  # every replica loads its model
                load(remote, tool, warm, len(warm))
            measured = load(remote, tool, loaded, callers)
            rows.append(
                (f"Ray Serve, {replicas} replica(s)", measured, overhead(remote, tool, single))
            )
        ray_app.undeploy()
    finally:
        import ray

        ray.shutdown()
        ray_cluster.stop_local(settings.data_dir)

    table = Table(
        title=f"{args.expert}: {len(loaded)} calls, {callers} callers at a time "
        f"({platform.machine()}, {os.cpu_count()} CPUs)",
        title_justify="left",
    )
    for column in ("setup", "calls/s", "vs local", "p50 ms", "p95 ms", "errors", "Serve ms/call"):
        table.add_column(column, justify="left" if column == "setup" else "right")
    base = rows[0][1]["per_s"]
    for name, row, extra in rows:
        table.add_row(
            name,
            f"{row['per_s']:.1f}",
            f"{row['per_s'] / base:.2f}x",
            f"{row['p50']:.0f}",
            f"{row['p95']:.0f}",
            str(row["errors"]),
            "-" if extra is None else f"{extra:.1f}",
        )
    console.print(table)


if __name__ == "__main__":
    main()
