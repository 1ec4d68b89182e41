"""Concurrent requests to one transformers expert share a forward pass (the host's
micro-batcher), and each request gets what it would have got alone.

Every request goes through the real expert on a tiny random checkpoint. The images differ in
shape and the questions in length, so the batch needs padding and masks: a batch that let a
row read another row's padding would change its answer or its confidence.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sensorium.tools import Evidence, ImageRef, ImageStore, ModelHost, Tool, ToolContext
from sensorium.tools.blip_experts import blip_answer, blip_caption
from sensorium.tools.clip_experts import clip_embed
from sensorium.tools.hf_models import StandardModels, load_pretrained
from sensorium.tools.profiles import EXPERT_MODELS
from sensorium.tools.vilt_expert import vilt_answer

REQUESTS = 4
# Two of one length (they share BLIP's pass), two longer ones of different lengths.
QUESTIONS = ("What is it?", "Is this a red cat on the dog?", "Is it red?", "What animal is this?")
ROLES = ("clip", "blip_caption", "blip_vqa", "vilt_vqa")


def make_ctx(tiny: dict[str, Path], root: Path, host: ModelHost) -> ToolContext:
    models = StandardModels(**{role: str(tiny[role]) for role in ROLES})
    return ToolContext(
        host=host, images=ImageStore(root / "images"), cache_dir=root / "cache", models=models
    )


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four photos of different shapes: wide, tall, square, and a thin strip."""
    folder = tmp_path_factory.mktemp("shapes")
    rng = np.random.default_rng(7)
    paths = []
    for index, (width, height) in enumerate([(96, 40), (40, 96), (64, 64), (120, 33)]):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        path = folder / f"shape-{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def arguments(tool: Tool, image: ImageRef, index: int) -> dict[str, Any]:
    wanted = {"image": image}
    if tool.takes_question:
        wanted["question"] = QUESTIONS[index]
    return wanted


def same(alone: Evidence, batched: Evidence) -> None:
    assert batched.error is None, batched.error
    assert batched.answer == alone.answer
    assert batched.confidence == pytest.approx(alone.confidence, rel=2e-5, abs=1e-7)


@pytest.mark.parametrize("tool", [vilt_answer, blip_answer, blip_caption, clip_embed])
def test_concurrent_requests_share_one_batch_and_match_alone(
    tool: Tool, tiny: dict[str, Path], images: list[Path], tmp_path: Path
) -> None:
    alone_ctx = make_ctx(tiny, tmp_path / "alone", ModelHost("cpu", max_batch=1))
    alone_refs = [alone_ctx.images.add(path) for path in images]
    alone = [tool.run(alone_ctx, arguments(tool, ref, i)) for i, ref in enumerate(alone_refs)]
    assert alone_ctx.host.batchers() == {}  # batching off: no batcher, no worker thread

    # A batch closes when REQUESTS items are in, however long that takes (up to a minute).
    host = ModelHost("cpu", max_batch=REQUESTS, max_wait_ms=60_000)
    ctx = make_ctx(tiny, tmp_path / "batched", host)
    refs = [ctx.images.add(path) for path in images]
    load_pretrained(ctx, EXPERT_MODELS[tool.name])  # so the batch forms while none loads
    with ThreadPoolExecutor(REQUESTS) as pool:
        futures = [
            pool.submit(tool.run, ctx, arguments(tool, ref, i)) for i, ref in enumerate(refs)
        ]
        batched = [future.result(timeout=120) for future in futures]
    for want, got in zip(alone, batched, strict=True):
        same(want, got)
    (batcher,) = host.batchers().values()
    assert list(batcher.batch_sizes)[-1] == REQUESTS
    host.close()


def test_one_request_in_a_batch_failing_does_not_fail_the_others(
    tiny: dict[str, Path], images: list[Path], tmp_path: Path
) -> None:
    """A missing question is refused in the caller's thread, before the batch forms."""
    host = ModelHost("cpu", max_batch=2, max_wait_ms=200)
    ctx = make_ctx(tiny, tmp_path, host)
    ref = ctx.images.add(images[0])
    with ThreadPoolExecutor(2) as pool:
        good = pool.submit(vilt_answer.run, ctx, {"image": ref, "question": "What is it?"})
        bad = pool.submit(vilt_answer.run, ctx, {"image": ref, "question": "   "})
        assert good.result(timeout=60).error is None
        assert "needs a question" in (bad.result(timeout=60).error or "")
    host.close()
