"""What kind of picture is this: a photograph, or a flat graphic? Known from the pixels alone,
so fusion can choose calibration maps fitted on the same kind of picture (a confidence of 0.85
means far more on easy-VQA's flat shapes than on photos).

The feature is the share of neighbouring pixels that differ by a little (0 < |step| <= 12 grey
levels, on a 128 x 128 nearest-neighbour thumbnail): camera noise and texture make that common
in photographs; flat fills and hard edges make it rare in drawn graphics. Chosen on training
images (easy-VQA train: at most 0.026; the photo-train set's 443 photographs: at least 0.11)
with the threshold between them, and checked on images it was not chosen on (easy-VQA test:
at most 0.023; scikit-image's photographs: 0.2 to 0.8, its binary silhouette `horse` 0.0).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image

ImageDomain = Literal["photo", "graphic"]
DOMAINS: tuple[ImageDomain, ...] = ("photo", "graphic")

GRAPHIC_BELOW = 0.06
"""Below this share of small steps between neighbouring pixels, a picture is a graphic."""


def small_step_share(image: Image.Image) -> float:
    """The share of horizontally neighbouring pixels that differ by 1 to 12 grey levels."""
    grey = image.convert("L").resize((128, 128), Image.Resampling.NEAREST)
    steps = np.abs(np.diff(np.asarray(grey, dtype=np.int16), axis=1))
    return float(((steps > 0) & (steps <= 12)).mean())


def image_domain(image: Image.Image) -> ImageDomain:
    """'graphic' for a flat drawn picture, else 'photo'."""
    return "graphic" if small_step_share(image) < GRAPHIC_BELOW else "photo"
