"""The ViLT VQA expert (standard profile): a classifier over a fixed answer vocabulary.

ViLT reads the image patches and the question in one transformer and scores every answer
in its vocabulary (`id2label`, 3,129 answers for the VQAv2 checkpoint); the softmax over
those scores gives each answer's probability, and the top one is the answer.
"""

from __future__ import annotations

import torch
from PIL import Image

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.evidence import Evidence, ImageRef
from sensorium.tools.hf_models import Pretrained, batched, load_pretrained

TOP_ANSWERS = 5  # how many runners-up the payload lists


@expert(
    examples=[
        "How many cats are there?",
        "What colour is the bus?",
        "Is there a dog in the picture?",
        "What is the man holding?",
    ]
)
def vilt_answer(ctx: ToolContext, image: ImageRef, question: str) -> Evidence:
    """Answer a short question about an image with ViLT (picks from a fixed answer vocabulary).

    Args:
        image: the image the question is about
        question: the question, in plain language
    """
    if not question.strip():
        raise ValueError("vilt_answer needs a question; pass the user's question")
    probs = batched(ctx, "vilt_vqa", answer_probabilities, (ctx.images.load(image), question))
    bundle = load_pretrained(ctx, "vilt_vqa")
    top = probs.topk(min(TOP_ANSWERS, probs.numel()))
    labels = bundle.model.config.id2label
    ranked = zip(top.values.tolist(), top.indices.tolist(), strict=True)
    answers = {labels[index]: round(p, 4) for p, index in ranked}
    return Evidence(
        answer=labels[int(top.indices[0])],
        confidence=float(top.values[0]),
        payload={"answers": answers} | bundle.payload(),
    )


def answer_probabilities(
    bundle: Pretrained, pairs: list[tuple[Image.Image, str]]
) -> list[torch.Tensor]:
    """P(answer) over the answer vocabulary for each (image, question), in one forward pass.

    Images of different shapes are padded to the largest, and questions to the longest; the
    pixel and attention masks keep the padding out, so each row scores as it would alone.
    """
    inputs = bundle.images([image for image, _ in pairs])
    inputs |= bundle.texts([question.strip() for _, question in pairs])
    with torch.inference_mode():
        logits = bundle.model(**inputs).logits
    return list(logits.float().softmax(-1).cpu())
