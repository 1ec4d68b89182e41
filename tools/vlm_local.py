"""The VLM expert's transformers backend: `[models] vlm` on the model host, greedy decoding,
each answer token's log-probability read from the raw logits. Concurrent requests share one
`generate` through the host's micro-batcher (prompts left-padded, with their masks)."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from sensorium.tools.base import ToolContext
from sensorium.tools.hf_models import Pretrained, batched, generated_log_probs, load_pretrained

MAX_NEW_TOKENS = 48
Said = tuple[str, list[float]]


def generate_answer(
    ctx: ToolContext, pixels: Image.Image, prompt: str
) -> tuple[str, list[float], dict[str, Any]]:
    """The model's answer to `prompt` about `pixels`, its tokens' log-probabilities, and where
    it ran."""
    text, log_probs = batched(ctx, "vlm", answers, (pixels.convert("RGB"), prompt))
    return text, log_probs, load_pretrained(ctx, "vlm").payload()


def answers(model: Pretrained, items: list[tuple[Image.Image, str]]) -> list[Said]:
    """Greedy answers for a batch of (image, prompt): one `generate`, each row's tokens up to
    its own stop token."""
    processor = model.processor
    processor.tokenizer.padding_side = "left"  # generation continues from the right edge
    texts = [
        processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
            add_generation_prompt=True,
        )
        for _, prompt in items
    ]
    inputs = processor(
        text=texts, images=[[image] for image, _ in items], padding=True, return_tensors="pt"
    )
    inputs = {
        k: v.to(model.device, model.model.dtype) if v.is_floating_point() else v.to(model.device)
        for k, v in inputs.items()
        if isinstance(v, torch.Tensor)
    }
    with torch.inference_mode():
        output = model.model.generate(
            **inputs,
            max_new_tokens=MAX_NEW_TOKENS,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
    stop_ids = _stop_ids(model.model, processor.tokenizer)
    said = []
    for row in range(len(items)):
        tokens, log_probs = generated_log_probs(output.sequences, output.logits, stop_ids, row)
        text = processor.tokenizer.decode(tokens, skip_special_tokens=True)
        said.append((text, [float(v) for v in log_probs]))
    return said


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return [int(i) for i in {*ids, tokenizer.eos_token_id} if i is not None]
