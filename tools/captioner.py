"""The label-based captioner: a sentence from the classifier's labels and the colours."""

from __future__ import annotations

import numpy as np

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.classifier import everyday_probabilities
from sensorium.tools.colour import colour_fractions
from sensorium.tools.evidence import Evidence, ImageRef
from sensorium.tools.imagenet import class_names
from sensorium.tools.lite_models import class_probabilities


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


@expert(
    examples=[
        "Describe this image",
        "Caption this photo",
        "What is happening in this picture?",
        "Tell me about this image",
        "Give me a short description",
    ]
)
def caption(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Describe an image in one sentence (what it most likely shows, and its main colours).

    Args:
        image: the image to describe
    """
    probs = class_probabilities(ctx, image)
    grouped = everyday_probabilities(probs)
    word, mass = next(iter(grouped.items()))
    fine = class_names()[int(np.argmax(probs))]
    subject = f"{_article(word)} {word}"
    if fine.lower() != word:
        subject += f" ({fine})"
    if mass < 0.3:
        subject = f"possibly {subject}"
    pixels = np.asarray(ctx.images.load(image).resize((64, 64)))
    colours = [name for name, share in colour_fractions(pixels).items() if share >= 0.15][:2]
    sentence = f"A photo of {subject}"
    if colours:
        sentence += f", mostly {' and '.join(colours)}"
    return Evidence(
        answer=sentence + ".",
        confidence=min(1.0, mass),  # the caption is as sure as its subject
        payload={"subject": word, "label": fine, "colours": colours},
    )
