"""The OCR reader: the text in an image, line by line, with RapidOCR (PP-OCRv4 detection,
orientation and recognition models in ONNX, shipped inside its wheel; runs offline on CPU).

Its confidence is the recogniser's: each line's score (the mean of its characters' top
probabilities), averaged over the lines weighted by their length, so a long line read surely
outweighs a stray mark read doubtfully.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.errors import ModelUnavailableError
from sensorium.tools.evidence import Evidence, ImageRef

MIN_LINE_SCORE = 0.5  # below this a "line" is usually texture read as letters


def ocr_engine(ctx: ToolContext) -> Any:
    """The process's RapidOCR engine (loaded once, in the model host)."""

    def load(device: object) -> Any:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError:
            raise ModelUnavailableError(
                "the OCR reader needs rapidocr-onnxruntime: pip install 'sensorium[ocr]'"
            ) from None
        return RapidOCR(text_score=MIN_LINE_SCORE)

    return ctx.host.get("rapidocr", load)


def read_lines(ctx: ToolContext, image: ImageRef) -> list[dict[str, Any]]:
    """Each line of text found, top to bottom: its text, score and box (four corners)."""
    pixels = np.asarray(ctx.images.load(image))
    found, _ = ocr_engine(ctx)(pixels)
    return [
        {
            "text": str(text),
            "score": float(score),
            "box": [[round(float(x), 1), round(float(y), 1)] for x, y in box],
        }
        for box, text, score in found or []
        if str(text).strip() and float(score) >= MIN_LINE_SCORE
    ]


def text_confidence(lines: list[dict[str, Any]]) -> float:
    """The lines' scores averaged, weighted by how many characters each holds."""
    weights = [len(line["text"].strip()) for line in lines]
    if not sum(weights):
        return 0.0
    total = sum(w * float(line["score"]) for w, line in zip(weights, lines, strict=True))
    return total / sum(weights)


@expert(
    examples=[
        "What does the text say?",
        "Read this page",
        "What does the sign say?",
        "What is written here?",
        "Transcribe the text in this image",
        "What is the title on this cover?",
        "Can you read the words in this picture?",
    ]
)
def read_text(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Read the text in an image (printed words, signs, labels, pages), line by line.

    Args:
        image: the image to read
    """
    lines = read_lines(ctx, image)
    if not lines:
        return Evidence(payload={"lines": [], "skipped": "no text found in the image"})
    return Evidence(
        answer="\n".join(line["text"] for line in lines),
        confidence=text_confidence(lines),
        payload={"lines": lines},
    )
