"""The zero-shot detector (standard profile): boxes for named things, with OWL-ViT or OWLv2
through transformers, and the presence, counting and location questions they answer.
Concurrent requests share a forward pass through the host's micro-batcher.

A box's score is the model's sigmoid probability that the box shows the label. Boxes below
`THRESHOLD` are dropped, then overlapping boxes of one label are merged (non-maximum
suppression). Confidence: for "is there a dog?", the best box's score (yes) or one minus it
(no); for "how many coins?", the mean score of the boxes counted (or, for none, one minus the
best score); for "where is the cat?", the best box's score.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
from PIL import Image

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.evidence import Evidence, ImageRef
from sensorium.tools.hf_models import Pretrained, batched, load_pretrained
from sensorium.tools.questions import is_negated, question_kind, yes_no_subject

THRESHOLD = 0.1  # OWL-ViT's own examples keep boxes above 0.1
NMS_IOU = 0.3
_HOW_MANY = re.compile(
    r"how many (?:of )?(?:the )?(?P<thing>[a-z][a-z -]*?)"
    r"(?: (?:are|is|can|do|does|in|on|there|you)\b|\?|$)",
    re.I,
)
_WHERE = re.compile(
    r"where (?:is|are) (?:the |a |an |my )?(?P<thing>[a-z][a-z -]*?)\s*(?:\?|$| in )", re.I
)


def detect_boxes(
    ctx: ToolContext, image: ImageRef, labels: list[str]
) -> tuple[list[dict[str, Any]], float]:
    """Boxes (label, score, [x0, y0, x1, y1] in pixels) above the threshold after suppression,
    best first, and the best score of any box (kept or not)."""
    pixels = ctx.images.load(image)
    scores, boxes = batched(ctx, "detector", box_scores, (pixels, tuple(labels)))
    best_any = float(scores.max()) if scores.size else 0.0
    found: list[dict[str, Any]] = []
    for index in np.argsort(-scores.max(axis=1)):
        label = int(scores[index].argmax())
        score = float(scores[index, label])
        if score < THRESHOLD:
            break
        box = boxes[index]
        if any(f["label"] == labels[label] and _iou(f["box"], box) > NMS_IOU for f in found):
            continue
        corners = [round(float(v), 1) for v in box]
        found.append({"label": labels[label], "score": score, "box": corners})
    return found, best_any


def box_scores(
    model: Pretrained, items: list[tuple[Image.Image, tuple[str, ...]]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each (image, labels): per candidate box, each label's probability (the sigmoid of
    its logit), and the box's corners in the image's pixels. One forward pass for the batch:
    label lists are padded to one length by repeating their last label (a query's logits do
    not depend on the other queries), and the padding is cut off again."""
    width = max(len(labels) for _, labels in items)
    queries = [
        f"a photo of a {label}"
        for _, labels in items
        for label in (*labels, *[labels[-1]] * (width - len(labels)))
    ]
    texts = model.texts(queries, padding="max_length")
    inputs = model.images([pixels for pixels, _ in items]) | {
        k: v for k, v in texts.items() if k in ("input_ids", "attention_mask")
    }
    with torch.inference_mode():
        output = model.model(**inputs)
    results = []
    for row, (pixels, labels) in enumerate(items):
        logits = output.logits[row, :, : len(labels)].float()
        probabilities = torch.sigmoid(logits).cpu().numpy()
        cx, cy, w, h = output.pred_boxes[row].float().cpu().numpy().T
        # OWLv2 pads the image to a square before resizing; OWL-ViT stretches it.
        width_px, height_px = pixels.size
        if model.model_type == "owlv2":
            width_px = height_px = max(pixels.size)
        corners = np.stack(
            [
                (cx - w / 2) * width_px,
                (cy - h / 2) * height_px,
                (cx + w / 2) * width_px,
                (cy + h / 2) * height_px,
            ],
            axis=1,
        )
        results.append((probabilities, corners))
    return results


@expert(
    examples=[
        "How many coins are there?",
        "Is there a dog in this picture?",
        "Where is the cat?",
        "Find the cars in this photo",
        "Count the people",
        "Draw boxes around the birds",
    ]
)
def detect(
    ctx: ToolContext, image: ImageRef, labels: list[str] | None = None, question: str = ""
) -> Evidence:
    """Find named things in an image: boxes and scores, to tell whether something is there,
    how many there are, and where.

    Args:
        image: the image to look in
        labels: what to look for, e.g. ["coin"] (default: the thing the question names)
        question: the user's question ("How many coins are there?")
    """
    wanted = [label.strip() for label in labels or [] if label.strip()] or _things_asked(question)
    if not wanted:
        return Evidence(
            payload={"skipped": "say what to look for (labels, or a question naming it)"}
        )
    found, best_any = detect_boxes(ctx, image, wanted)
    model = load_pretrained(ctx, "detector")
    payload: dict[str, Any] = model.payload() | {"labels": wanted, "boxes": found}
    kind = question_kind(question) if question else "other"
    scores = [f["score"] for f in found]
    if kind == "count":
        confidence = float(np.mean(scores)) if scores else 1 - best_any
        return Evidence(answer=str(len(found)), confidence=confidence, payload=payload)
    if kind == "yes_no":
        best = max(scores, default=best_any)
        answer, confidence = ("yes", best) if found else ("no", 1 - best)
        if is_negated(question):
            answer = "no" if answer == "yes" else "yes"
        return Evidence(answer=answer, confidence=confidence, payload=payload)
    if question and _WHERE.search(question):
        if not found:
            return Evidence(answer="not found", confidence=1 - best_any, payload=payload)
        stored = ctx.images.ref(image.sha256)  # the size from the header: no second decode
        where = _position(found[0]["box"], (stored.width, stored.height))
        return Evidence(answer=where, confidence=found[0]["score"], payload=payload)
    counts: dict[str, int] = {}
    for box in found:
        counts[box["label"]] = counts.get(box["label"], 0) + 1
    answer = ", ".join(f"{n} {label}" for label, n in counts.items()) or "none found"
    return Evidence(
        answer=answer,
        confidence=float(np.mean(scores)) if scores else 1 - best_any,
        payload=payload,
    )


def _things_asked(question: str) -> list[str]:
    """The thing a presence, counting or location question names ("coins" -> "coin")."""
    for pattern in (_HOW_MANY, _WHERE):
        if match := pattern.search(question):
            return [_singular(match.group("thing").strip())]
    subject = yes_no_subject(question) if question else None
    return [subject] if subject else []


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _position(box: list[float], size: tuple[int, int]) -> str:
    """Where a box's centre lies, in words ("top left", "centre", ...)."""
    x = (box[0] + box[2]) / 2 / size[0]
    y = (box[1] + box[3]) / 2 / size[1]
    column = "left" if x < 1 / 3 else "right" if x > 2 / 3 else ""
    row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else ""
    return " ".join(part for part in (row, column) if part) or "centre"


def _iou(a: list[float], b: Any) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0
