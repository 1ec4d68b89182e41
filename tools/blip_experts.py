"""BLIP experts (standard profile): a captioner and a generative VQA model.

Both decode greedily, and both report how sure the model was of the words it wrote: the
geometric mean of the probabilities of the generated tokens (end token included), read from
the raw logits, i.e. exp(mean token log-probability).
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.evidence import Evidence, ImageRef
from sensorium.tools.hf_models import (
    Pretrained,
    batched,
    generated_log_probs,
    load_pretrained,
    sequence_confidence,
)

MAX_CAPTION_TOKENS = 30
MAX_ANSWER_TOKENS = 10  # VQA answers are a word or three


Said = tuple[str, float, dict[str, Any]]  # text, confidence, the numbers behind it
_GREEDY = {
    "num_beams": 1,
    "do_sample": False,
    "output_logits": True,  # raw logits: the model's probabilities, before any processor
    "return_dict_in_generate": True,
}


def decoded(bundle: Pretrained, output: Any) -> list[Said]:
    """Per row of a greedy `generate` output: the decoded words, exp(mean token
    log-probability) of the generated tokens, and the numbers behind it."""
    stop_id = bundle.model.config.text_config.sep_token_id  # BLIP ends a text with [SEP]
    said: list[Said] = []
    for row in range(output.sequences.shape[0]):
        tokens, log_probs = generated_log_probs(output.sequences, output.logits, [stop_id], row)
        text = bundle.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        details = {
            "tokens": len(tokens),
            "mean_log_prob": round(float(log_probs.mean()), 4) if tokens else None,
        }
        said.append((text, sequence_confidence(log_probs), details))
    return said


def captions(bundle: Pretrained, images: list[Image.Image]) -> list[Said]:
    """Greedy BLIP captions for a batch of images (one `generate`)."""
    with torch.inference_mode():
        output = bundle.model.generate(
            **bundle.images(images), max_new_tokens=MAX_CAPTION_TOKENS, **_GREEDY
        )
    return decoded(bundle, output)


def answers(bundle: Pretrained, pairs: list[tuple[Image.Image, str]]) -> list[Said]:
    """Greedy BLIP VQA answers for a batch of (image, question) pairs: one `generate` per
    question length.

    Why not one for all: BLIP's answer decoder attends to every position of the encoded
    question, padding included (transformers passes it no question mask), so a short question
    padded in a batch would get a different answer than alone. Questions of one length need
    no padding, so they share a pass exactly.
    """
    questions = [question.strip() for _, question in pairs]
    lengths = [
        len(ids)
        for ids in bundle.tokenizer(questions, truncation=True, max_length=bundle.max_text_length)[
            "input_ids"
        ]
    ]
    said: dict[int, Said] = {}
    for length in dict.fromkeys(lengths):
        rows = [i for i, n in enumerate(lengths) if n == length]
        encoded = bundle.texts([questions[i] for i in rows])
        inputs = bundle.images([pairs[i][0] for i in rows]) | {
            name: encoded[name]
            for name in ("input_ids", "attention_mask")  # no token types
        }
        with torch.inference_mode():
            output = bundle.model.generate(**inputs, max_new_tokens=MAX_ANSWER_TOKENS, **_GREEDY)
        said |= dict(zip(rows, decoded(bundle, output), strict=True))
    return [said[i] for i in range(len(pairs))]


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
    text, confidence, details = batched(ctx, "blip_caption", captions, ctx.images.load(image))
    return _said(text, confidence, details | load_pretrained(ctx, "blip_caption").payload())


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
    pair = (ctx.images.load(image), question)
    text, confidence, details = batched(ctx, "blip_vqa", answers, pair)
    return _said(text, confidence, details | load_pretrained(ctx, "blip_vqa").payload())
