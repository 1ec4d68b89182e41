"""Calibration maps: an expert's own confidence in, the probability that it is right out.

An expert's confidence comes from its model's probabilities, which are rarely calibrated: a
zero-shot VQA model that says 0.9 may be right half the time. `sensorium eval calibrate` fits
one map per expert (and per question kind where data allows) from a run's records, and fusion
applies it before pooling, so votes weigh what they are worth and the fused confidence means
what it says. Two families, chosen per expert on held-out samples (see `fit_map`):

- Platt scaling: sigmoid(a * logit(p) + b), two parameters, smooth, safe on little data;
- isotonic regression (pool adjacent violators): any monotone map, needs more data.

Targets may be fractional (the official VQA accuracy gives 0.3, 0.6, ...): both fits minimise
the squared error (Brier score) or log loss against them, which is what "calibrated" means for
a fractional outcome.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

_EPS = 1e-6


class CalibrationMap(BaseModel):
    """A monotone map from raw to calibrated confidence."""

    method: Literal["identity", "platt", "isotonic"] = "identity"
    a: float = Field(1.0, description="platt: slope on logit(p)")
    b: float = Field(0.0, description="platt: intercept")
    xs: list[float] = Field(default_factory=list, description="isotonic: knots, increasing")
    ys: list[float] = Field(default_factory=list, description="isotonic: values at the knots")
    samples: int = Field(0, description="how many answers it was fitted on")

    def __call__(self, confidence: float) -> float:
        p = min(1.0, max(0.0, float(confidence)))
        if self.method == "platt":
            return _sigmoid(self.a * _logit(p) + self.b)
        if self.method == "isotonic" and self.xs:
            return float(np.interp(p, self.xs, self.ys))
        return p


def fit_platt(confidences: Sequence[float], targets: Sequence[float]) -> CalibrationMap:
    """Platt scaling by Newton's method on the log loss (targets in [0, 1])."""
    x = np.array([_logit(c) for c in confidences])
    y = np.clip(np.asarray(targets, dtype=float), 0.0, 1.0)
    a, b = 1.0, 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(a * x + b, -50.0, 50.0)))
        w = np.maximum(p * (1 - p), 1e-9)
        gradient = np.array([np.sum((p - y) * x), np.sum(p - y)])
        hessian = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        hessian += np.eye(2) * 1e-6  # a single distinct confidence leaves it singular
        step = np.linalg.solve(hessian, gradient)
        a, b = a - float(step[0]), b - float(step[1])
        if np.max(np.abs(step)) < 1e-8:
            break
    if a < 0:  # confidence that anti-correlates with being right says nothing: a constant
        a, b = 0.0, _logit(float(np.mean(y)))
    return CalibrationMap(method="platt", a=a, b=b, samples=len(y))


def fit_isotonic(confidences: Sequence[float], targets: Sequence[float]) -> CalibrationMap:
    """Isotonic regression (pool adjacent violators), linear between block centres."""
    order = np.argsort(np.asarray(confidences, dtype=float), kind="stable")
    x = np.asarray(confidences, dtype=float)[order]
    y = np.clip(np.asarray(targets, dtype=float)[order], 0.0, 1.0)
    # blocks of (sum of y, count, sum of x); merge while a block's mean falls below the last's
    blocks: list[list[float]] = []
    for xi, yi in zip(x, y, strict=True):
        blocks.append([yi, 1.0, xi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            y2, n2, x2 = blocks.pop()
            blocks[-1] = [blocks[-1][0] + y2, blocks[-1][1] + n2, blocks[-1][2] + x2]
    xs = [sx / n for _, n, sx in blocks]
    ys = [sy / n for sy, n, _ in blocks]
    return CalibrationMap(method="isotonic", xs=xs, ys=ys, samples=len(y))


def fit_map(
    confidences: Sequence[float], targets: Sequence[float], *, min_samples: int = 20
) -> CalibrationMap:
    """The family that predicts held-out outcomes best (Brier score), refitted on all data.

    Every fifth sample (a stable split) is held out while the candidates are fitted on the
    rest; with fewer than `min_samples` answers the identity map is kept.
    """
    if len(confidences) < min_samples:
        return CalibrationMap(samples=len(confidences))
    pairs = list(zip(confidences, targets, strict=True))
    test = [p for i, p in enumerate(pairs) if _held_out(i)]
    train = [p for i, p in enumerate(pairs) if not _held_out(i)]
    fits = {"identity": lambda c, t: CalibrationMap(), "platt": fit_platt}
    if len(train) >= 2 * min_samples:  # isotonic overfits small samples
        fits["isotonic"] = fit_isotonic
    scores = {}
    for name, fit in fits.items():
        fitted = fit([c for c, _ in train], [t for _, t in train])
        scores[name] = brier([fitted(c) for c, _ in test], [t for _, t in test])
    best = min(scores, key=lambda name: (scores[name], name != "identity"))
    chosen = fits[best]([c for c, _ in pairs], [t for _, t in pairs])
    return chosen.model_copy(update={"samples": len(pairs)})


def brier(confidences: Sequence[float], targets: Sequence[float]) -> float:
    """Mean squared difference between confidence and outcome (0 for no data)."""
    if not confidences:
        return 0.0
    return float(np.mean((np.asarray(confidences) - np.asarray(targets)) ** 2))


def _held_out(index: int) -> bool:
    return int(hashlib.sha256(str(index).encode()).hexdigest()[:8], 16) % 5 == 0


def _logit(p: float) -> float:
    p = min(1 - _EPS, max(_EPS, p))
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
