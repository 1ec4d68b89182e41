"""The VLM expert's transformers backend: `[models] vlm` on the model host, greedy decoding,
each answer token's log-probability read from the raw logits."""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from sensorium.tools.base import ToolContext
from sensorium.tools.hf_models import generated_log_probs, load_pretrained


def generate_answer(
    ctx: ToolContext, pixels: Image.Image, prompt: str, max_new_tokens: int = 48
) -> tuple[str, list[float], dict[str, Any]]:
    """The model's answer to `prompt` about `pixels`, its tokens' log-probabilities, and where
    it ran."""
    model = load_pretrained(ctx, "vlm")
    processor = model.processor
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[text], images=[[pixels.convert("RGB")]], return_tensors="pt")
    inputs = {
        k: v.to(model.device, model.model.dtype) if v.is_floating_point() else v.to(model.device)
        for k, v in inputs.items()
        if isinstance(v, torch.Tensor)
    }
    stop_ids = _stop_ids(model.model, processor.tokenizer)
    with ctx.host.inference():
        output = model.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
    tokens, log_probs = generated_log_probs(output.sequences, output.logits, stop_ids)
    answer = processor.tokenizer.decode(tokens, skip_special_tokens=True)
    return answer, [float(v) for v in log_probs], model.payload()


def _stop_ids(model: Any, tokenizer: Any) -> list[int]:
    configured = model.generation_config.eos_token_id
    ids = configured if isinstance(configured, list) else [configured]
    return [int(i) for i in {*ids, tokenizer.eos_token_id} if i is not None]
