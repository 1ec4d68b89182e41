"""The standard experts on every device this machine has, in the host's dtype for it (float16
on CUDA, float32 elsewhere), alone and micro-batched. On a CPU-only machine this covers the
CPU; on a GPU machine the same tests cover the accelerator path."""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from devices import DEVICES
from PIL import Image

from sensorium.tools import ImageStore, ModelHost, Tool, ToolContext
from sensorium.tools.blip_experts import blip_answer, blip_caption
from sensorium.tools.clip_experts import clip_answer, clip_classify, clip_embed, embed_images
from sensorium.tools.hf_models import StandardModels, batched, load_pretrained
from sensorium.tools.profiles import EXPERT_MODELS
from sensorium.tools.vilt_expert import answer_probabilities, vilt_answer

CHELSEA = Path(__file__).resolve().parents[1] / "examples" / "images" / "chelsea.jpg"
ROLES = ("clip", "blip_caption", "blip_vqa", "vilt_vqa")


def device_ctx(tiny: dict[str, Path], root: Path, host: ModelHost) -> ToolContext:
    models = StandardModels(**{role: str(tiny[role]) for role in ROLES})
    return ToolContext(
        host=host, images=ImageStore(root / "images"), cache_dir=root / "cache", models=models
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "tool", [clip_classify, clip_answer, clip_embed, blip_caption, blip_answer, vilt_answer]
)
def test_each_standard_expert_runs_on_the_device_in_its_dtype(
    device: str, tool: Tool, tiny: dict[str, Path], tmp_path: Path
) -> None:
    host = ModelHost(device)
    ctx = device_ctx(tiny, tmp_path, host)
    arguments = {"image": ctx.images.add(CHELSEA)}
    if tool.takes_question:
        arguments["question"] = "What animal is this?"
    evidence = tool.run(ctx, arguments)
    assert evidence.error is None, evidence.error
    assert math.isfinite(evidence.confidence) and 0.0 <= evidence.confidence <= 1.0
    assert evidence.payload["device"].startswith(device)
    model = load_pretrained(ctx, EXPERT_MODELS[tool.name]).model
    assert model.device.type == device and model.dtype == host.dtype
    assert host.dtype == (torch.float16 if device == "cuda" else torch.float32)


@pytest.mark.parametrize("device", DEVICES)
def test_batched_outputs_match_alone_on_the_device(
    device: str, tiny: dict[str, Path], tmp_path: Path
) -> None:
    """ViLT's answer probabilities and CLIP's embeddings, 4 concurrent requests in one batch,
    against each alone (within float16 rounding on CUDA)."""
    host = ModelHost(device, max_batch=4, max_wait_ms=60_000)
    ctx = device_ctx(tiny, tmp_path, host)
    rng = np.random.default_rng(3)
    shapes = [(40, 96), (96, 40), (64, 64), (33, 120)]
    images = [Image.fromarray(rng.integers(0, 256, (*s, 3), dtype=np.uint8)) for s in shapes]
    questions = ["What is it?", "Is this a red cat on the dog?", "Is it red?", "What animal?"]
    tolerance = 2e-3 if host.dtype == torch.float16 else 1e-5
    cases = [
        ("vilt_vqa", answer_probabilities, list(zip(images, questions, strict=True))),
        ("clip", embed_images, images),
    ]
    for role, run, items in cases:
        bundle = load_pretrained(ctx, role)  # type: ignore[arg-type]
        alone = [np.asarray(run(bundle, [item])[0], dtype=np.float32) for item in items]  # type: ignore[operator]
        with ThreadPoolExecutor(len(items)) as pool:
            futures = [pool.submit(batched, ctx, role, run, item) for item in items]  # type: ignore[arg-type]
            together = [np.asarray(f.result(timeout=120), dtype=np.float32) for f in futures]
        for want, got in zip(alone, together, strict=True):
            np.testing.assert_allclose(got, want, atol=tolerance, rtol=tolerance)
    sizes = [list(b.batch_sizes) for b in host.batchers().values()]
    assert sizes == [[4], [4]]
    host.close()
