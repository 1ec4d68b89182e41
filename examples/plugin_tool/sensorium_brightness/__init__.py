"""A Sensorium expert that says whether an image is dark, dim or bright.

It measures the mean luminance of the image (ITU-R BT.601 luma, 0 = black, 1 = white) and
places it in one of three bands. The confidence says how far the mean lies from the band
edges: a soft (logistic) edge of width `SOFTNESS` turns the distance into a probability for
each band, so an image right on an edge gets about 0.5 and one deep inside a band gets
close to 1.
"""

from __future__ import annotations

import math

import numpy as np

from sensorium import Evidence, ImageRef, ToolContext, expert

DARK_BELOW = 0.2  # mean luminance under this is "dark"
BRIGHT_FROM = 0.4  # at or over this is "bright"; in between is "dim"
SOFTNESS = 0.05  # how sharp the band edges are, in luminance units


def _above(value: float, edge: float) -> float:
    """P(the mean is above `edge`), with a logistic edge of width SOFTNESS."""
    return 1.0 / (1.0 + math.exp(-(value - edge) / SOFTNESS))


def band_probabilities(mean: float) -> dict[str, float]:
    """Probability of each band for a mean luminance in [0, 1]; they sum to 1."""
    above_dark, above_dim = _above(mean, DARK_BELOW), _above(mean, BRIGHT_FROM)
    return {"dark": 1.0 - above_dark, "dim": above_dark - above_dim, "bright": above_dim}


@expert(
    examples=[
        "How bright is this image?",
        "Is this picture too dark?",
        "Is the photo underexposed or overexposed?",
        "How light or dark is this image?",
    ]
)
def brightness(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Say whether an image is dark, dim or bright, from its mean luminance.

    Args:
        image: the image to measure
    """
    pixels = np.asarray(ctx.images.load(image).convert("L"), dtype=np.float64)
    mean = float(pixels.mean()) / 255.0
    probabilities = band_probabilities(mean)
    band = max(probabilities, key=lambda name: probabilities[name])
    return Evidence(
        answer=band,
        confidence=probabilities[band],
        payload={
            "mean_luminance": round(mean, 4),
            "bands": {name: round(p, 4) for name, p in probabilities.items()},
        },
    )
