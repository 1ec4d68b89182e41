"""The retriever expert: finds images in the user's indexed collection by text or by example.

Each hit is put in the image store, so the planner can hand the retrieved images to other
experts in the same turn ("find my photos of cats and describe the first one").
"""

from __future__ import annotations

import re
from pathlib import Path

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.encoder import LiteJointEncoder, compose_query
from sensorium.tools.errors import ImageInputError, UserError
from sensorium.tools.evidence import Evidence, ImageRef
from sensorium.tools.questions import split_search_request

_POINTER = re.compile(
    r"\b(?:which of my (?:photos|pictures|images)\s+)?(?:looks?\s+like|like|similar\s+to)\s+"
    r"(?:this|these)(?:\s+(?:one|ones|image|photo|picture))?",
    re.IGNORECASE,
)
_FILLER = re.compile(r"\b(?:but|and|that|which|is|are|one|ones|of|my|me|some)\b", re.IGNORECASE)


@expert(
    examples=[
        "Find my photos of cats",
        "Show me pictures of the beach",
        "Search my images for a red car",
        "Which of my photos looks like this one?",
        "Find pictures like this but at night",
    ],
    answers_questions=False,
)
def retrieve(
    ctx: ToolContext, question: str, image: ImageRef | None = None, k: int = 5
) -> Evidence:
    """Find images in the user's indexed collection that match a description or an example.

    Args:
        question: the request; its search phrase ("find my photos of cats" -> "cats") is used
        image: an example image to search by (combined with the text when both are given)
        k: how many images to return
    """
    if ctx.open_index is None:
        raise UserError("no image index is configured; run `sensorium index FOLDER` first")
    index = ctx.open_index()
    if index.count() == 0:
        raise UserError("the image index is empty; run `sensorium index FOLDER` first")
    encoder = ctx.joint_encoder() if ctx.joint_encoder else LiteJointEncoder(ctx)
    phrase, _ = split_search_request(question)
    if image is None:
        vector = encoder.encode_texts([phrase])[0]
    else:
        # "like this but at night": the image, modified by whatever words remain.
        image_vector = encoder.encode_images([ctx.images.load(image)])[0]
        modifier = _POINTER.sub(" ", phrase)
        modifier = " ".join(_FILLER.sub(" ", modifier).split()).strip(" ?.,!")
        vector = (
            compose_query(image_vector, encoder.encode_texts([modifier])[0])
            if modifier
            else image_vector
        )
    hits = index.search(vector, k)
    found: list[dict[str, object]] = []
    for hit in hits:
        try:
            ref = ctx.images.add(hit.path)
        except ImageInputError:
            continue  # the file is gone or unreadable since indexing; `index --prune` cleans up
        found.append(hit.model_dump() | {"image": ref.model_dump(), "name": Path(hit.path).name})
    if not found:
        return Evidence(answer="no matching images", confidence=0.0, payload={"hits": []})
    listing = ", ".join(f"{h['name']} ({float(h['score']):.2f})" for h in found)  # type: ignore[arg-type]
    return Evidence(
        answer=f"{len(found)} images: {listing}",
        # Cosine similarity of the best hit: how well anything in the collection matches.
        confidence=max(0.0, min(1.0, float(found[0]["score"]))),  # type: ignore[arg-type]
        payload={"query": phrase, "hits": found},
    )
