"""The joint image-text encoder expert: images and text in one vector space.

On the lite profile the space is MiniLM's, and images enter it through ConSE (see
`lite_models`). Zero-shot VQA and retrieval score candidates in this space.
"""

from __future__ import annotations

import numpy as np

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.evidence import Evidence, ImageRef
from sensorium.tools.imagenet import class_names
from sensorium.tools.lite_models import CONSE_TOP, class_probabilities, conse_embedding


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
