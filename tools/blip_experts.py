"""BLIP experts (standard profile): a captioner and a generative VQA model.

Both decode greedily, and both report how sure the model was of the words it wrote: the
geometric mean of the probabilities of the generated tokens (end token included), read from
the raw logits, i.e. exp(mean token log-probability).
"""

from __future__ import annotations

from typing import Any

import torch

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.evidence import Evidence, ImageRef
from sensorium.tools.hf_models import (
    Pretrained,
    generated_log_probs,
    load_pretrained,
    sequence_confidence,
)

MAX_CAPTION_TOKENS = 30
MAX_ANSWER_TOKENS = 10  # VQA answers are a word or three


def generate_text(
    bundle: Pretrained, inputs: dict[str, torch.Tensor], max_new_tokens: int
) -> tuple[str, float, dict[str, Any]]:
    """Greedy `generate`, then (text, confidence, details): the decoded words, exp(mean token
    log-probability) of the generated tokens, and the numbers behind it."""
    with torch.inference_mode():
        output = bundle.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            num_beams=1,
            do_sample=False,
            output_logits=True,  # raw logits: the model's probabilities, before any processor
            return_dict_in_generate=True,
        )
    stop_id = bundle.model.config.text_config.sep_token_id  # BLIP ends a text with [SEP]
    tokens, log_probs = generated_log_probs(output.sequences, output.logits, [stop_id])
    text = bundle.tokenizer.decode(tokens, skip_special_tokens=True).strip()
    details = {
        "tokens": len(tokens),
        "mean_log_prob": round(float(log_probs.mean()), 4) if tokens else None,
    }
    return text, sequence_confidence(log_probs), details


def _said(text: str, confidence: float, payload: dict[str, Any]) -> Evidence:
    if not text:  # only the end token, or only special tokens: nothing to vote with
        return Evidence(payload=payload | {"skipped": "the model generated no words"})
    return Evidence(answer=text, confidence=confidence, payload=payload)


@expert(
    examples=[
        "Describe this image",
        "Caption this photo with BLIP",
        "Write a caption for this picture",
        "What is happening in this picture?",
    ]
)
def blip_caption(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Describe an image in one sentence with BLIP (a learnt image captioner).

    Args:
        image: the image to describe
    """
    bundle = load_pretrained(ctx, "blip_caption")
    inputs = bundle.images([ctx.images.load(image)])
    text, confidence, details = generate_text(bundle, inputs, MAX_CAPTION_TOKENS)
    return _said(text, confidence, details | bundle.payload())


@expert(
    examples=[
        "What is the cat doing?",
        "What colour is the car?",
        "How many people are in the photo?",
        "Is the man wearing a hat?",
    ]
)
def blip_answer(ctx: ToolContext, image: ImageRef, question: str) -> Evidence:
    """Answer a question about an image in a few words with BLIP VQA (open-ended, generative).

    Args:
        image: the image the question is about
        question: the question, in plain language
    """
    if not question.strip():
        raise ValueError("blip_answer needs a question; pass the user's question")
    bundle = load_pretrained(ctx, "blip_vqa")
    encoded = bundle.texts([question.strip()])
    inputs = bundle.images([ctx.images.load(image)]) | {
        name: encoded[name]
        for name in ("input_ids", "attention_mask")  # no token types
    }
    text, confidence, details = generate_text(bundle, inputs, MAX_ANSWER_TOKENS)
    return _said(text, confidence, details | bundle.payload())
