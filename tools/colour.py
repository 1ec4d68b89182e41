"""The colour expert: named dominant colours from pixel statistics (no model needed)."""

from __future__ import annotations

import re

import numpy as np

from sensorium.tools.base import ToolContext, expert
from sensorium.tools.evidence import Evidence, ImageRef
from sensorium.tools.questions import is_negated, question_kind

COLOUR_NAMES = (
    "black", "white", "gray", "red", "orange", "yellow", "green", "blue", "purple", "pink",
    "brown",
)  # fmt: skip


def colour_fractions(rgb: np.ndarray) -> dict[str, float]:
    """Fraction of pixels of each basic colour name, largest first, for an (H, W, 3) uint8."""
    pixels = rgb.reshape(-1, 3).astype(np.float32) / 255.0
    high, low = pixels.max(1), pixels.min(1)
    chroma = high - low
    saturation = np.where(high > 0, chroma / np.maximum(high, 1e-6), 0.0)
    hue = _hue_degrees(pixels, high, chroma)
    names = np.full(len(pixels), "", dtype=object)
    hue_names = np.select(
        [hue < 15, hue < 40, hue < 70, hue < 170, hue < 260, hue < 290, hue < 335],
        ["red", "orange", "yellow", "green", "blue", "purple", "pink"],
        "red",
    )
    names[:] = hue_names
    brownish = (hue < 45) & (high < 0.65) & (saturation > 0.25)
    names[brownish] = "brown"
    names[(saturation < 0.18) | (chroma < 0.08)] = "gray"
    names[(saturation < 0.18) & (high > 0.85)] = "white"
    names[high < 0.18] = "black"
    values, counts = np.unique(names.astype(str), return_counts=True)
    fractions = {str(v): float(c) / len(pixels) for v, c in zip(values, counts, strict=True)}
    return dict(sorted(fractions.items(), key=lambda item: -item[1]))


def background_colour(rgb: np.ndarray) -> str | None:
    """The colour of the image's border when one colour covers most of it, else None."""
    border = np.concatenate(
        [rgb[:2].reshape(-1, 3), rgb[-2:].reshape(-1, 3), rgb[:, :2].reshape(-1, 3),
         rgb[:, -2:].reshape(-1, 3)]
    )  # fmt: skip
    name, share = next(iter(colour_fractions(border[None]).items()))
    return name if share >= 0.6 else None


def object_fractions(rgb: np.ndarray) -> dict[str, float] | None:
    """Colour shares among the pixels that are not the background (a plain border colour),
    or None when there is no such background or almost nothing else."""
    background = background_colour(rgb)
    if background is None:
        return None
    rest = {k: v for k, v in colour_fractions(rgb).items() if k != background}
    total = sum(rest.values())
    if total < 0.02:
        return None
    return {k: v / total for k, v in rest.items()}


def names_an_object(question: str) -> bool:
    """True when a colour question is about a thing ("the triangle", "a red car"), not about
    the whole picture ("What colour is this?", "Which colours dominate this photo?")."""
    words = re.findall(r"[a-z]+", _MONOCHROME.sub(" ", question.lower()))
    return any(w not in _NOT_OBJECTS and w not in COLOUR_NAMES and w != "grey" for w in words)


_NOT_OBJECTS = frozenset({
    "what", "which", "whats", "is", "are", "was", "were", "be", "the", "a", "an", "this",
    "that", "these", "those", "it", "its", "of", "in", "on", "there", "here", "colour",
    "color", "colours", "colors", "coloured", "colored", "hue", "shade", "shades", "image",
    "photo", "picture", "pic", "does", "do", "did", "have", "has", "main", "dominant",
    "dominate", "dominates", "mostly", "mainly", "most", "primary", "background", "scene",
    "please", "tell", "me", "you", "can", "could", "show", "s", "any", "some", "and", "or",
    "how", "would", "describe", "not", "no",
})  # fmt: skip


# "Is this photo black and white?" asks whether the picture has colour at all, not whether
# black is its dominant colour.
_MONOCHROME = re.compile(r"black(?: and |\s*&\s*|-and-)white|gr[ae]yscale|monochrome|b\s*&\s*w")
_MONOCHROME_SHARE = 0.95  # of black, white and gray pixels: JPEG noise tints a few


def _monochrome(fractions: dict[str, float]) -> tuple[str, float]:
    """yes/no for "is it black and white?", surer the further from the threshold it is."""
    share = sum(fractions.get(name, 0.0) for name in ("black", "white", "gray"))
    margin = abs(share - _MONOCHROME_SHARE) / (1 - _MONOCHROME_SHARE)
    return ("yes" if share >= _MONOCHROME_SHARE else "no"), 0.5 + 0.5 * min(1.0, margin)


def _hue_degrees(pixels: np.ndarray, high: np.ndarray, chroma: np.ndarray) -> np.ndarray:
    r, g, b = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    safe = np.maximum(chroma, 1e-6)
    hue = np.where(
        high == r, ((g - b) / safe) % 6, np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4)
    )
    return np.asarray(hue * 60.0)


@expert(
    examples=[
        "What colour is this?",
        "What color is the car?",
        "Which colours dominate this photo?",
        "Is it red?",
    ]
)
def colours(ctx: ToolContext, image: ImageRef, question: str = "", top_k: int = 3) -> Evidence:
    """Name the dominant colours of an image from its pixels (basic colour terms).

    Args:
        image: the image to look at
        question: the user's question; a yes/no question about one colour gets yes/no
        top_k: how many colours to report
    """
    pixels = np.asarray(ctx.images.load(image).resize((64, 64)))
    fractions = colour_fractions(pixels)
    top = dict(list(fractions.items())[: max(1, top_k)])
    payload: dict[str, object] = {"colours": {k: round(v, 4) for k, v in top.items()}}
    # "What colour is the triangle?" asks about a thing: on a plain background, answer
    # from the pixels that are not background (the background would win on area alone).
    if question and names_an_object(question):
        if background_colour(pixels) is None:
            # No plain background sets the thing apart: the picture's dominant colour would be
            # the cat's only by luck, and a confident guess outvotes better experts.
            reason = "cannot tell the thing asked about from the rest of the picture"
            return Evidence(payload=payload | {"skipped": reason})
        if objects := object_fractions(pixels):
            fractions = objects
            payload["object_colours"] = {k: round(v, 4) for k, v in list(objects.items())[:top_k]}
    words = re.findall(r"[a-z]+", question.lower().replace("grey", "gray"))
    asked = [c for c in COLOUR_NAMES if c in words]
    kind = question_kind(question) if question else "colour"
    if kind == "yes_no" and (asked or _MONOCHROME.search(question.lower())):
        if _MONOCHROME.search(question.lower()):
            answer, confidence = _monochrome(fractions)
        else:
            share = fractions.get(asked[0], 0.0)
            # "Is it red?" is yes when red is the dominant colour, confidence from its share.
            dominant = next(iter(fractions))
            answer = "yes" if dominant == asked[0] or share >= 0.4 else "no"
            confidence = max(share, 1 - share) if answer == "no" else max(share, 0.5)
        if is_negated(question):
            answer = "no" if answer == "yes" else "yes"
        return Evidence(answer=answer, confidence=min(1.0, confidence), payload=payload)
    if kind not in ("colour", "describe", "other"):
        # "What shape is this?" or "Is this a cat?": pixels alone cannot say.
        return Evidence(payload=payload | {"skipped": "not a question about colour"})
    name, share = next(iter(fractions.items()))
    return Evidence(answer=name, confidence=share, payload=payload)
