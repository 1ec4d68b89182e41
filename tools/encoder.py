"""The joint image-text encoder expert: images and text in one vector space.

On the lite profile the space is MiniLM's, and images enter it through ConSE (see
`lite_models`). Zero-shot VQA and retrieval score candidates in this space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.evidence import Evidence, ImageRef
from sensorium.tools.imagenet import class_names
from sensorium.tools.lite_models import (
    CONSE_TOP,
    class_probabilities,
    class_probabilities_batch,
    conse_embedding,
    conse_vectors,
    embed_texts,
)


@expert(
    examples=[
        "Embed this image",
        "Compute an embedding vector for this photo",
        "Which concepts is this image close to?",
    ],
    answers_questions=False,
)
def embed_image(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Map an image into the joint image-text space; reports the concepts that place it there.

    Args:
        image: the image to embed
    """
    vector, mass = conse_embedding(ctx, image)
    probs = class_probabilities(ctx, image)
    concepts = [class_names()[i] for i in np.argsort(probs)[::-1][:3]]
    return Evidence(
        answer=f"{len(vector)}-d embedding near: {', '.join(concepts)}",
        # How much of the classifier's belief the embedding is built from.
        confidence=min(1.0, mass),
        payload={
            "dimension": len(vector),
            "space": f"all-MiniLM-L6-v2 (ConSE, top {CONSE_TOP} labels)",
            "concepts": concepts,
            "vector": [round(float(x), 5) for x in vector],
        },
    )


ENCODER_ID = "conse:efficientnet-lite0+all-MiniLM-L6-v2"
_PHOTO_PREFIX = ("a photo", "a picture", "an image", "photo of", "picture of", "image of")


class JointEncoder(Protocol):
    """A joint image-text space: what search, the index and image references need."""

    id: str
    dimension: int

    def describe_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, list[str]]:
        """Unit vectors for a batch of images, and each one's top labels."""
        ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Unit vectors for a batch of images."""
        ...

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for text queries."""
        ...


class LiteJointEncoder:
    """The lite profile's joint space: ConSE images and MiniLM text, 384 dimensions."""

    id = ENCODER_ID
    dimension = 384

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx

    def describe_images(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, list[str]]:
        """Unit vectors for a batch of images (one forward pass), and each one's top labels."""
        probs = class_probabilities_batch(self.ctx, list(images))
        names = class_names()
        labels = [", ".join(names[i] for i in np.argsort(row)[::-1][:3]) for row in probs]
        return conse_vectors(self.ctx, probs), labels

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Unit vectors for a batch of images."""
        return self.describe_images(images)[0]

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for text queries, phrased like the label prompts images are built from."""
        phrased = [
            text if text.lower().startswith(_PHOTO_PREFIX) else f"a photo of {text}"
            for text in texts
        ]
        return embed_texts(self.ctx, phrased)


def compose_query(
    image_vector: np.ndarray, text_vector: np.ndarray, text_weight: float = 0.5
) -> np.ndarray:
    """Feature-level fusion of an image and a text that modifies it: the normalised weighted
    sum of their unit vectors ("this photo, but at night")."""
    mixed = (1 - text_weight) * image_vector + text_weight * text_vector
    return (mixed / (np.linalg.norm(mixed) + 1e-12)).astype(np.float32)
