"""Micro-batching benchmark: N threads ask one model for one prediction at a time.

    python bench/batching.py            # full run: 2-4 minutes on 2 CPU cores
    python bench/batching.py --quick    # smoke run: fewer requests, one round

Models (--models): two tiny random MLPs (`mlp`: 1.6M and 6.3M parameters; --mlp-widths),
EfficientNet-Lite0 through `class_probabilities_batch`, the function the lite experts use
(`lite0`), and the standard experts' batch functions on tiny random checkpoints built from
config, as the tests build them (`tiny`: ViLT for vilt_answer, CLIP's image tower for the
clip_* experts, BLIP for blip_caption). `clip-b32` is CLIP ViT-B/32's architecture with random
weights (a forward pass costs what the real one does; no download), not run by default.
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
from sensorium.tools.blip_experts import captions
from sensorium.tools.clip_experts import embed_images
from sensorium.tools.hf_models import ModelRole, StandardModels, load_pretrained
from sensorium.tools.host import match_torch_threads
from sensorium.tools.lite_models import class_probabilities_batch
from sensorium.tools.vilt_expert import answer_probabilities

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the tiny checkpoints the tests build from config

console = Console(width=None if sys.stdout.isatty() else 150)
MODES = ("direct", "serialised", "batched")
MODELS = ("mlp", "lite0", "tiny", "clip-b32")


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


def random_images(count: int, seed: int = 0) -> list[Image.Image]:
    """Noise photos of assorted shapes (the processors resize them, as they would photos)."""
    rng = np.random.default_rng(seed)
    shapes = [(224, 224), (320, 240), (240, 320), (400, 200)]
    return [
        Image.fromarray(rng.integers(0, 256, (*shapes[i % 4], 3), dtype=np.uint8))
        for i in range(count)
    ]


def standard_workload(
    host: ModelHost,
    requests: int,
    scratch: Path,
    role: ModelRole,
    checkpoint: Path,
    name: str,
) -> Workload:
    """A standard expert's batch function (the one `hf_models.batched` submits) on a
    checkpoint folder, one request or a batch per call."""
    ctx = ToolContext(
        host=host,
        images=ImageStore(scratch / "images"),
        models=StandardModels(**{role: str(checkpoint)}),
    )
    bundle = load_pretrained(ctx, role)
    images = random_images(16)
    questions = ["What is it?", "Is this a cat?", "What colour is the car?", "How many?"]
    many: Callable[[list[Any]], Sequence[np.ndarray]]
    if role == "vilt_vqa":
        items: list[Any] = [(image, questions[i % 4]) for i, image in enumerate(images)]

        def many(pairs: list[Any]) -> list[np.ndarray]:
            return [probs.numpy() for probs in answer_probabilities(bundle, pairs)]
    elif role == "clip":
        items = list(images)

        def many(batch: list[Any]) -> list[np.ndarray]:
            return embed_images(bundle, batch)
    else:  # blip_caption: the confidence of each greedy caption
        items = list(images)

        def many(batch: list[Any]) -> list[np.ndarray]:
            return [np.array([confidence]) for _, confidence, _ in captions(bundle, batch)]

    return Workload(name, items, lambda item: many([item])[0], many, requests)


def tiny_workloads(host: ModelHost, quick: bool, scratch: Path) -> list[Callable[[], Workload]]:
    """The standard experts on the tests' tiny random checkpoints (hidden size 32). BLIP
    decodes 30 tokens a caption, about 10x a ViLT forward: it gets fewer requests."""
    from tiny_models import build_blip_caption, build_clip, build_vilt_vqa

    folders: dict[ModelRole, tuple[Callable[[Path], Path], str, int]] = {
        "vilt_vqa": (build_vilt_vqa, "tiny ViLT (vilt_answer)", 40),
        "clip": (build_clip, "tiny CLIP image (clip_*)", 40),
        "blip_caption": (build_blip_caption, "tiny BLIP (blip_caption)", 4),
    }
    builders: list[Callable[[], Workload]] = []
    for role, (build, name, requests) in folders.items():
        checkpoint = build(scratch / f"tiny-{role}")
        count = max(1, requests // 5) if quick else requests
        builders.append(partial(standard_workload, host, count, scratch, role, checkpoint, name))
    return builders


def clip_b32_checkpoint(scratch: Path) -> Path:
    """CLIP ViT-B/32's architecture (openai/clip-vit-base-patch32's config) with random weights
    and the tiny test tokenizer: real compute per image, nothing downloaded."""
    from tiny_models import build_clip
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    folder = build_clip(scratch / "clip-b32")  # for its tokenizer files
    config = CLIPConfig(
        text_config={"vocab_size": 200, "max_position_embeddings": 77},
        vision_config={"image_size": 224, "patch_size": 32},
        projection_dim=512,
    )
    CLIPModel(config).save_pretrained(folder)
    processor = CLIPImageProcessorPil(size={"shortest_edge": 224}, crop_size=224)
    processor.save_pretrained(folder)
    return folder


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
        default=["mlp", "lite0", "tiny"],
        help=f"a comma-separated list of {', '.join(MODELS)} (default: mlp,lite0,tiny)",
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
    if unknown := set(args.models) - set(MODELS):
        parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose from {MODELS}")
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
    if "tiny" in args.models:
        builders += tiny_workloads(host, args.quick, scratch)
    if "clip-b32" in args.models:
        checkpoint = clip_b32_checkpoint(scratch)
        name = "CLIP B/32 image (random)"
        builders.append(
            partial(
                standard_workload, host, 1 if args.quick else 2, scratch, "clip", checkpoint, name
            )
        )
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
