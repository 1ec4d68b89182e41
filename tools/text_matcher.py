"""The text matcher: which of the user's indexed texts (captions, descriptions, notes) fits an
image, found in the joint space. The best text is its answer, so a caption chosen from a
collection can vote beside the captioner; every hit comes back with its id and score."""

from __future__ import annotations

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.encoder import LiteJointEncoder
from sensorium.tools.errors import UserError
from sensorium.tools.evidence import Evidence, ImageRef


@expert(
    examples=[
        "Which of my captions fits this picture?",
        "Find the caption that matches this photo",
        "Which of my product descriptions matches this image?",
        "Which text in my collection goes with this image?",
        "Which entry of my text collection matches this picture?",
    ]
)
def match_text(ctx: ToolContext, image: ImageRef, k: int = 5) -> Evidence:
    """Find the texts in the user's indexed collection (captions, descriptions, notes) that
    fit an image best.

    Args:
        image: the image to find texts for
        k: how many texts to return
    """
    if ctx.open_text_index is None:
        raise UserError("no text collection is configured; run `sensorium index-texts FILE` first")
    index = ctx.open_text_index()
    if index.count() == 0:
        raise UserError("the text collection is empty; run `sensorium index-texts FILE` first")
    encoder = ctx.joint_encoder() if ctx.joint_encoder else LiteJointEncoder(ctx)
    hits = index.search(encoder.encode_images([ctx.images.load(image)])[0], max(1, k))
    if not hits:
        return Evidence(payload={"hits": [], "skipped": "no text matched"})
    return Evidence(
        answer=hits[0].text,
        # The cosine similarity of the best text: how well anything in the collection fits.
        confidence=max(0.0, min(1.0, hits[0].score)),
        payload={"hits": [hit.model_dump() for hit in hits]},
    )
