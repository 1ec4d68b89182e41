"""Retrieval benchmark: indexing throughput and query latency, measured side by side.

    python bench/retrieval.py            # full run: 128 images, 10k and 100k stored vectors
    python bench/retrieval.py --quick    # smoke run: 32 images, 2k and 10k stored vectors

--quick skips the `index_images` comparison and uses random stand-in label embeddings instead
of encoding the 1000 ImageNet label prompts (a one-off, untimed cost); the full run loads the
real ones, which takes about half a minute before anything is timed.

Every figure that matters is a ratio between two things measured in the same run, interleaved
so that a noisy machine slows both alike: batched vs one-at-a-time encoding, and
`ImageIndex.search` vs the raw Chroma query under it. Absolute numbers are for orientation
only; compare ratios, never absolute figures from another run or machine.

Everything is written to a temporary directory that is removed at the end.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import torch
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from sensorium.tools import ImageStore, ModelHost, ToolContext
from sensorium.tools.encoder import LiteJointEncoder
from sensorium.tools.imagenet import class_names
from sensorium.tools.indexer import index_images
from sensorium.tools.vector_index import ImageIndex, IndexedImage, batched, open_client

console = Console(width=None if sys.stdout.isatty() else 110)
SIZE = 224
DIMENSION = 384
LABELS = ("tabby, tiger cat", "espresso, cup", "seashore, sandbar", "mountain bike", "daisy")


# -- synthetic data ---------------------------------------------------------------------------


def synthetic_corpus(root: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` 224x224 PNGs (noise, gradients and simple shapes in equal parts) in folders of
    32, the batch size being measured; returns the folders."""
    rng = np.random.default_rng(seed)
    folders = []
    for i in range(count):
        if i % 32 == 0:
            folders.append(root / f"part-{i // 32:02d}")
            folders[-1].mkdir(parents=True)
        kind = i % 3
        if kind == 0:
            image = Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
        elif kind == 1:
            ramp = np.linspace(0, 1, SIZE, dtype=np.float32)
            colour = rng.uniform(0, 255, 3).astype(np.float32)
            pixels = ramp[None, :, None] * colour[None, None, :] + ramp[:, None, None] * 40
            image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        else:
            background = tuple(int(v) for v in rng.integers(0, 256, 3))
            image = Image.new("RGB", (SIZE, SIZE), background)
            draw = ImageDraw.Draw(image)
            for _ in range(4):
                x0, y0 = (int(v) for v in rng.integers(0, SIZE - 40, 2))
                x1, y1 = x0 + int(rng.integers(20, 120)), y0 + int(rng.integers(20, 120))
                fill = tuple(int(v) for v in rng.integers(0, 256, 3))
                if rng.random() < 0.5:
                    draw.ellipse((x0, y0, x1, y1), fill=fill)
                else:
                    draw.rectangle((x0, y0, x1, y1), fill=fill)
        image.save(folders[-1] / f"img-{i:04d}.png")
    return folders


def unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    vectors = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def synthetic_entries(start: int, count: int) -> list[IndexedImage]:
    return [
        IndexedImage(
            id=f"id-{i:07d}",
            path=f"photos/synthetic/img-{i:07d}.jpg",
            sha256=hashlib.sha256(str(i).encode()).hexdigest(),
            size=50_000 + i % 10_000,
            width=SIZE,
            height=SIZE,
            labels=LABELS[i % len(LABELS)],
        )
        for i in range(start, start + count)
    ]


# -- measurements -----------------------------------------------------------------------------


def time_modes(chunks: int, modes: dict[str, Callable[[int], Any]]) -> dict[str, list[float]]:
    """Seconds spent in each mode per chunk, run chunk by chunk and interleaved (the order
    alternates per chunk), so that load from elsewhere on the machine slows every mode alike."""
    spent: dict[str, list[float]] = {name: [] for name in modes}
    names = list(modes)
    for chunk in range(chunks):
        for name in names if chunk % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            modes[name](chunk)
            spent[name].append(time.perf_counter() - start)
    return spent


Rates = dict[str, Any]


def rates(spent: dict[str, list[float]], images: int) -> Rates:
    """Images/s per mode over all chunks, and the batched/unbatched speed-up of each chunk
    (the chunks hold the same images in both modes)."""
    per_chunk = [one / many for many, one in zip(spent["batch 32"], spent["batch 1"], strict=True)]
    return {
        "batch 32": images / sum(spent["batch 32"]),
        "batch 1": images / sum(spent["batch 1"]),
        "chunks": per_chunk,
    }


def bench_encoding(
    ctx: ToolContext, folders: list[Path], workdir: Path, with_files: bool
) -> tuple[Rates, Rates | None]:
    """Images/s of `describe_images` on batches of 32 vs 1, and (`with_files`) of
    `index_images` (files to index) with batch_size 32 vs 1, over the same folders of 32."""
    encoder = LiteJointEncoder(ctx)
    parts = [
        [Image.open(path).convert("RGB") for path in sorted(folder.iterdir())] for folder in folders
    ]
    total = sum(len(part) for part in parts)
    # Load the models (and label embeddings), and let torch see both batch shapes, untimed.
    encoder.describe_images(parts[0][:1])
    encoder.describe_images(parts[0][:2])

    def encode(batch: int) -> Callable[[int], None]:
        def run(chunk: int) -> None:
            for piece in batched(parts[chunk], batch):
                encoder.describe_images(list(piece))

        return run

    spent = time_modes(len(parts), {"batch 32": encode(32), "batch 1": encode(1)})
    encode_rate = rates(spent, total)
    if not with_files:
        return encode_rate, None

    def index(batch: int) -> Callable[[int], None]:
        target = ImageIndex(open_client(workdir / f"index-batch-{batch}"), encoder.id, DIMENSION)

        def run(chunk: int) -> None:
            report = index_images(target, encoder, ctx.images, [folders[chunk]], batch_size=batch)
            assert report.added == len(parts[chunk]), report

        return run

    spent = time_modes(len(parts), {"batch 32": index(32), "batch 1": index(1)})
    index_rate = rates(spent, total)
    return encode_rate, index_rate


def build_index(root: Path, size: int, rng: np.random.Generator) -> tuple[ImageIndex, float]:
    client = open_client(root)
    index = ImageIndex(client, "bench:random-unit-vectors", DIMENSION)
    chunk = min(5000, int(client.get_max_batch_size()))
    start = time.perf_counter()
    for offset in range(0, size, chunk):
        count = min(chunk, size - offset)
        index.upsert(synthetic_entries(offset, count), unit_vectors(rng, count))
        console.log(f"  {offset + count:>7,} / {size:,} vectors stored")
    elapsed = time.perf_counter() - start
    assert index.count() == size
    return index, elapsed


def bench_queries(
    index: ImageIndex, rng: np.random.Generator, queries: int, k: int = 10
) -> tuple[list[float], list[float]]:
    """Latencies (ms) of `ImageIndex.search` and of the raw Chroma query, interleaved per query
    and alternating which goes first."""
    collection = index._collection

    def ours(vector: np.ndarray) -> Any:
        return index.search(vector, k=k)

    def raw(vector: np.ndarray) -> Any:
        return collection.query(
            query_embeddings=[vector.tolist()],
            n_results=k,
            include=["metadatas", "distances"],
        )

    for vector in unit_vectors(rng, 10):  # warm caches on both paths
        ours(vector)
        raw(vector)
    vectors = unit_vectors(rng, queries)
    timed: dict[str, list[float]] = {"ours": [], "raw": []}
    for i, vector in enumerate(vectors):
        order = [("ours", ours), ("raw", raw)]
        for name, call in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            call(vector)
            timed[name].append((time.perf_counter() - start) * 1000)
    hits, result = ours(vectors[0]), raw(vectors[0])
    assert [hit.id for hit in hits] == result["ids"][0], "search and raw query disagree"
    return timed["ours"], timed["raw"]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def stand_in_label_embeddings() -> None:
    """For --quick: random label embeddings instead of encoding the 1000 ImageNet prompts with
    MiniLM (about 30 s on 2 cores, a one-off cost that is cached on disk in real use and never
    timed here). ConSE does the same arithmetic on them, so throughput is unchanged."""
    from sensorium.tools import lite_models

    vectors = unit_vectors(np.random.default_rng(1), len(class_names()))

    def label_embeddings(ctx: ToolContext) -> np.ndarray:
        return vectors

    lite_models.label_embeddings = label_embeddings


# -- report -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller sizes, for a smoke run of about a minute or less",
    )
    parser.add_argument("--queries", type=int, default=200, help="queries per index size")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default: torch's own choice)"
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    image_count, sizes = (32, (2_000, 10_000)) if args.quick else (128, (10_000, 100_000))
    if args.quick:
        stand_in_label_embeddings()
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="sensorium-bench-"))
    started = time.perf_counter()
    try:
        ctx = ToolContext(
            host=ModelHost("cpu"), images=ImageStore(tmp / "images"), cache_dir=tmp / "cache"
        )
        console.log(f"encoding {image_count} synthetic images, batched and one at a time")
        folders = synthetic_corpus(tmp / "corpus", image_count)
        encode_rate, index_rate = bench_encoding(ctx, folders, tmp, not args.quick)

        query_rows = []
        for size in sizes:
            console.log(f"building an index of {size:,} random unit vectors")
            index, build_s = build_index(tmp / f"vectors-{size}", size, rng)
            console.log(f"querying it {args.queries} times, ImageIndex.search and raw Chroma")
            ours, raw = bench_queries(index, rng, args.queries)
            query_rows.append((size, build_s, ours, raw))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - started

    console.print(
        f"\n[bold]Retrieval benchmark[/] ({'quick' if args.quick else 'full'} run, "
        f"{total:.0f} s): {platform.machine()}, {os.cpu_count()} CPU(s), "
        f"torch {torch.__version__} on {torch.get_num_threads()} thread(s), "
        f"chromadb {chromadb.__version__}, "
        f"load average {load_before:.1f} -> {os.getloadavg()[0]:.1f}"
    )
    console.print(
        "Compare the ratios; absolute figures depend on the machine and its load. "
        "'per chunk': the batch 32/1 speed-up of each 32-image chunk; a wide spread means "
        "the machine's load changed the comparison (one-image batches suffer most from CPU "
        "contention), so do not read much into the ratio."
    )
    if args.quick:
        console.print("--quick: random stand-in label embeddings (the same cost per image).")

    throughput = Table(title=f"Indexing throughput ({image_count} images of {SIZE}x{SIZE})")
    for column in ("path", "batch 32 (img/s)", "batch 1 (img/s)", "ratio 32/1", "per chunk"):
        throughput.add_column(column, justify="left" if column == "path" else "right")
    for name, rate in (
        ("LiteJointEncoder.describe_images", encode_rate),
        ("index_images (files -> ImageIndex)", index_rate),
    ):
        if rate is None:
            throughput.add_row(name, "-", "-", "skipped (--quick)", "-")
            continue
        throughput.add_row(
            name,
            f"{rate['batch 32']:.1f}",
            f"{rate['batch 1']:.1f}",
            f"{rate['batch 32'] / rate['batch 1']:.2f}x",
            " ".join(f"{ratio:.2f}" for ratio in rate["chunks"]),
        )
    console.print(throughput)

    latency = Table(
        title=f"Query latency in ms, k=10, {args.queries} queries per size: "
        "ImageIndex.search (ours) vs the raw Chroma query (raw)"
    )
    for column in (
        "vectors",
        "build s",
        "vec/s",
        "ours p50",
        "ours p95",
        "raw p50",
        "raw p95",
        "ratio p50",
        "ratio p95",
    ):
        latency.add_column(column, justify="right")
    verdicts = []
    for size, build_s, ours, raw in query_rows:
        ratio50 = statistics.median(ours) / statistics.median(raw)
        ratio95 = percentile(ours, 95) / percentile(raw, 95)
        verdicts.append(ratio50 < 1.2)
        latency.add_row(
            f"{size:,}",
            f"{build_s:.1f}",
            f"{size / build_s:,.0f}",
            f"{percentile(ours, 50):.2f}",
            f"{percentile(ours, 95):.2f}",
            f"{percentile(raw, 50):.2f}",
            f"{percentile(raw, 95):.2f}",
            f"{ratio50:.2f}x",
            f"{ratio95:.2f}x",
        )
    console.print(latency)
    console.print(
        "search overhead target (p50 under 1.2x raw Chroma): "
        + ("[green]met[/]" if all(verdicts) else "[red]not met[/]")
    )


if __name__ == "__main__":
    main()
