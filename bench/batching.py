"""Micro-batching benchmark: N threads ask one model for one prediction at a time.

    python bench/batching.py            # full run: 2-4 minutes on 2 CPU cores
    python bench/batching.py --quick    # smoke run: fewer requests, one round

Models: two tiny random MLPs (1.6M and 6.3M parameters; --mlp-widths 1024,2048) and
EfficientNet-Lite0 through `class_probabilities_batch`, the function the lite experts use.
Each runs at torch intra-op thread counts 1 and torch's default (--torch-threads).

Three ways to serve the same requests, measured side by side in one run:

- direct: every thread calls the model itself, concurrently (torch releases the GIL, so the
  calls overlap, each with its own intra-op threads);
- serialised: every thread calls the model under one shared lock;
- batched: every thread submits its item to the host's `MicroBatcher`, which runs one forward
  pass per batch (up to --max-batch items, --max-wait-ms milliseconds).

The modes are interleaved round by round (the order rotates) so that load from elsewhere on the
machine slows each alike. The figures to compare are the ratios in one run; absolute requests
per second depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from rich.console import Console
from rich.table import Table

from sensorium.tools import ImageStore, ModelHost, ToolContext
from sensorium.tools.batching import MicroBatcher
from sensorium.tools.host import match_torch_threads
from sensorium.tools.lite_models import class_probabilities_batch

console = Console(width=None if sys.stdout.isatty() else 150)
MODES = ("direct", "serialised", "batched")


@dataclass
class Workload:
    """One model served three ways: `one(item)` for a request, `many(items)` for a batch."""

    name: str
    items: list[Any]
    one: Callable[[Any], np.ndarray]
    many: Callable[[list[Any]], Sequence[np.ndarray]]
    requests: int  # per thread


@dataclass
class Measured:
    """Seconds and requests per mode, summed over rounds, and the batcher's batch sizes."""

    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(MODES, 0.0))
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MODES, 0))
    batches: int = 0
    batched_items: int = 0
    round_ratios: list[float] = field(default_factory=list)  # batched / direct, per round

    def rate(self, mode: str) -> float:
        return self.requests[mode] / self.seconds[mode]


# -- workloads --------------------------------------------------------------------------------


def mlp_workload(host: ModelHost, requests: int, width: int) -> Workload:
    """A tiny random MLP (width/2 -> width -> width -> 10): at batch 1 its cost is reading
    the weights and per-call overhead (Python, op dispatch), which a batch shares."""
    torch.manual_seed(0)
    inputs = width // 2

    def load(device: torch.device) -> torch.nn.Module:
        layers = [torch.nn.Linear(inputs, width), torch.nn.ReLU(), torch.nn.Linear(width, width)]
        return host.place(torch.nn.Sequential(*layers, torch.nn.ReLU(), torch.nn.Linear(width, 10)))

    model = host.get(f"bench-mlp-{width}", load)
    rng = np.random.default_rng(0)
    items = [torch.from_numpy(rng.standard_normal(inputs).astype(np.float32)) for _ in range(64)]

    def many(batch: list[torch.Tensor]) -> list[np.ndarray]:
        with host.inference():
            x = torch.stack(batch).to(host.device, host.dtype)
            return list(model(x).float().cpu().numpy())

    params = sum(p.numel() for p in model.parameters()) / 1e6
    name = f"MLP {params:.1f}M"
    return Workload(name, items, lambda item: many([item])[0], many, requests)


def lite0_workload(host: ModelHost, requests: int, scratch: Path) -> Workload:
    """EfficientNet-Lite0 ImageNet probabilities for 224x224 images, through the same public
    function (`class_probabilities_batch`) the experts use, one image or a batch per call."""
    ctx = ToolContext(host=host, images=ImageStore(scratch / "images"))
    rng = np.random.default_rng(0)
    items = [
        Image.fromarray(rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)) for _ in range(16)
    ]

    def many(images: list[Image.Image]) -> list[np.ndarray]:
        return list(class_probabilities_batch(ctx, images))

    return Workload("Lite0", items, lambda item: many([item])[0], many, requests)


# -- measurement ------------------------------------------------------------------------------


def run_threads(
    threads: int, requests: int, call: Callable[[int], object], match: bool = True
) -> float:
    """Seconds for `threads` threads, released together, to make `requests` calls each
    (each first adopting torch's thread count, unless `match` is off)."""
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        if match:
            match_torch_threads()
        start.wait()
        try:
            for step in range(requests):
                call(index * requests + step)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    began = time.perf_counter()
    for thread in pool:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - began


def mode_calls(work: Workload, batcher: MicroBatcher[Any, np.ndarray]) -> dict[str, Any]:
    """The call each mode makes for request number `n`."""
    lock = threading.Lock()

    def serialised(n: int) -> np.ndarray:
        with lock:
            return work.one(work.items[n % len(work.items)])

    return {
        "direct": lambda n: work.one(work.items[n % len(work.items)]),
        "serialised": serialised,
        "batched": lambda n: batcher.submit(work.items[n % len(work.items)]),
    }


def measure(work: Workload, host: ModelHost, args: argparse.Namespace) -> Measured:
    """Interleaved rounds of the three modes; checks batched results equal direct ones."""
    batcher = host.batcher(
        f"{work.name}-{torch.get_num_threads()}",
        work.many,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
    )
    check = work.items[: min(4, len(work.items))]
    expected = [work.one(item) for item in check]  # also warms the model up
    got = [batcher.submit(item) for item in check]
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, rtol=1e-3, atol=1e-5)
    calls = mode_calls(work, batcher)
    result = Measured()
    start_batches, start_items = batcher.batches, batcher.items
    for round_index in range(args.rounds):
        order = MODES[round_index % 3 :] + MODES[: round_index % 3]
        spent: dict[str, float] = {}
        for mode in order:
            spent[mode] = run_threads(
                args.threads, work.requests, calls[mode], match=not args.unmatched_clients
            )
            result.seconds[mode] += spent[mode]
            result.requests[mode] += args.threads * work.requests
        result.round_ratios.append(spent["direct"] / spent["batched"])
    result.batches = batcher.batches - start_batches
    result.batched_items = batcher.items - start_items
    return result


# -- report -----------------------------------------------------------------------------------


def report(rows: list[tuple[str, int, Measured]], args: argparse.Namespace) -> None:
    table = Table(
        title=(
            f"{args.threads} concurrent threads, one request at a time "
            f"(max batch {args.max_batch}, wait {args.max_wait_ms:g} ms)"
        )
    )
    for column in ("model", "torch threads", "requests"):
        table.add_column(column, justify="right" if column != "model" else "left")
    for mode in MODES:
        table.add_column(f"{mode} (req/s)", justify="right")
    for column in ("batched / direct", "batched / serialised", "mean batch"):
        table.add_column(column, justify="right")
    table.add_column("b/d per round")
    for name, torch_threads, measured in rows:
        table.add_row(
            name,
            str(torch_threads),
            str(measured.requests["batched"]),
            *(f"{measured.rate(mode):,.0f}" for mode in MODES),
            f"{measured.rate('batched') / measured.rate('direct'):.2f}x",
            f"{measured.rate('batched') / measured.rate('serialised'):.2f}x",
            f"{measured.batched_items / max(1, measured.batches):.1f}",
            " ".join(f"{ratio:.1f}" for ratio in measured.round_ratios),
        )
    console.print(table)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer requests, 1 round")
    parser.add_argument("--threads", type=int, default=16, help="concurrent callers")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, 1 if quick)")
    parser.add_argument(
        "--torch-threads",
        type=lambda text: [int(part) for part in text.split(",")],
        help="torch intra-op thread counts to compare (default: 1 and torch's default)",
    )
    parser.add_argument(
        "--unmatched-clients",
        action="store_true",
        help="callers skip match_torch_threads, as threads of a plain pool would",
    )
    parser.add_argument(
        "--models",
        type=lambda text: text.split(","),
        default=["mlp", "lite0"],
        help="mlp, lite0 or mlp,lite0 (default)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    parser.add_argument(
        "--mlp-widths",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1024, 2048],
        help="the MLPs' hidden widths (default 1024,2048: 1.6M and 6.3M parameters)",
    )
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    args = parser.parse_args()
    if unknown := set(args.models) - {"mlp", "lite0"}:
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose mlp and/or lite0")
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.torch_threads = args.torch_threads or sorted({1, torch.get_num_threads()})
    return args


def workload_builders(
    args: argparse.Namespace, host: ModelHost, scratch: Path
) -> list[Callable[[], Workload]]:
    """The chosen workloads, built later so each loads under its torch thread count."""
    mlp_requests, lite0_requests = (32, 1) if args.quick else (150, 3)
    builders: list[Callable[[], Workload]] = []
    if "mlp" in args.models:  # fewer requests for wider MLPs, which cost more each
        builders += [
            partial(mlp_workload, host, max(1, mlp_requests * 1024 // width), width)
            for width in args.mlp_widths
        ]
    if "lite0" in args.models:
        builders.append(partial(lite0_workload, host, lite0_requests, scratch))
    return builders


def main() -> None:
    args = parse_args()
    host = ModelHost(args.device)
    console.print(
        f"python {platform.python_version()}, torch {torch.__version__}, {host.device}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    rows: list[tuple[str, int, Measured]] = []
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sensorium-bench-") as scratch:
        builders = workload_builders(args, host, Path(scratch))
        for torch_threads in args.torch_threads:
            torch.set_num_threads(torch_threads)
            for build in builders:
                work = build()
                rows.append((work.name, torch_threads, measure(work, host, args)))
    host.close()
    report(rows, args)
    console.print(
        "direct: each thread calls the model; serialised: under one lock; batched: through "
        "host.batcher. --unmatched-clients: " + ("yes" if args.unmatched_clients else "no")
    )
    console.print(
        f"took {time.perf_counter() - began:.0f} s; load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
