"""Decision-level fusion: several experts answered; decide, and say how sure and who agreed.

Each expert's answer is normalised (official VQA rules) and grouped with equal answers. The
support of a group is a linear opinion pool: the sum of weight x confidence over the experts
that gave it, divided by the total weight of the experts that answered. A linear pool never
claims more certainty than its most certain voter, which keeps the decision's confidence
honest when weak experts agree by accident (correlated errors are the rule, not the exception).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sensorium.graphs.normalize import normalise_answer
from sensorium.tools import Evidence, UserError


class FusionSettings(BaseModel):
    """How much each expert is trusted, and when to abstain.

    Weights come from configuration or from a weights file written by
    `sensorium eval calibrate`; keys set in configuration win over the file's.
    """

    model_config = ConfigDict(extra="forbid")  # a misspelt `[fusion]` key must not pass silently

    weights: dict[str, float] = Field(
        default_factory=dict, description="reliability weight per expert name (default 1.0)"
    )
    kind_weights: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="per question kind (yes_no, colour, count, ...): weight per expert; "
        "overrides `weights` for questions of that kind",
    )
    weights_file: Path | None = Field(
        None, description="a JSON file of fitted weights (from `sensorium eval calibrate`)"
    )
    default_weight: float = Field(1.0, ge=0.0)
    abstain_below: float = Field(
        0.25, ge=0.0, le=1.0, description="abstain when the decision's confidence is lower"
    )

    @model_validator(mode="after")
    def _load_weights_file(self) -> FusionSettings:
        if self.weights_file is not None:
            fitted = read_weights_file(self.weights_file)
            self.weights = fitted.weights | self.weights
            self.kind_weights = fitted.kind_weights | self.kind_weights
        return self

    def weight(self, expert: str, kind: str | None = None) -> float:
        """The reliability weight of an expert (for a kind of question, where fitted)."""
        if kind is not None and expert in self.kind_weights.get(kind, {}):
            return self.kind_weights[kind][expert]
        return self.weights.get(expert, self.default_weight)


class FittedWeights(BaseModel):
    """The content of a weights file: what `sensorium eval calibrate` learned from a run."""

    weights: dict[str, float] = Field(default_factory=dict)
    kind_weights: dict[str, dict[str, float]] = Field(default_factory=dict)
    fitted_on: dict[str, object] = Field(
        default_factory=dict, description="the run, its samples and the scores behind the fit"
    )


def read_weights_file(path: Path) -> FittedWeights:
    """Read a weights file; a missing or malformed one is a `UserError` naming it."""
    try:
        return FittedWeights.model_validate(json.loads(Path(path).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise UserError(
            f"fusion weights file {path} not found; write one with `sensorium eval calibrate RUN`"
        ) from None
    except (OSError, ValueError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UserError(f"fusion weights file {path} is unreadable: {first}") from None


class Vote(BaseModel):
    """One expert's contribution to a decision."""

    expert: str
    answer: str
    normalised: str
    confidence: float
    weight: float


class Decision(BaseModel):
    """The fused answer for one image (or for the question when no image is involved)."""

    answer: str | None = Field(None, description="the decided answer (None when abstaining)")
    confidence: float = Field(0.0, ge=0.0, le=1.0)
    agreement: float = Field(
        0.0, ge=0.0, le=1.0, description="share of the voters' weight behind the answer"
    )
    abstained: bool = True
    best_guess: str | None = Field(None, description="the leading answer, even when abstaining")
    runner_up: str | None = None
    runner_up_confidence: float = 0.0
    votes: list[Vote] = Field(default_factory=list)
    image: str | None = Field(None, description="sha256 of the image decided about")
    reason: str = ""


def fuse(
    evidence: Iterable[Evidence], settings: FusionSettings | None = None, kind: str | None = None
) -> Decision:
    """Fuse answers about one image into a `Decision`; failed evidence casts no vote.

    `kind` is the question's kind (`sensorium.tools.questions.question_kind`), which selects
    per-kind weights where they were fitted.
    """
    settings = settings or FusionSettings()
    items = list(evidence)
    image = next((e.image for e in items if e.image), None)
    votes = [
        Vote(
            expert=e.expert,
            answer=e.answer,
            normalised=normalise_answer(e.answer),
            confidence=e.confidence,
            weight=settings.weight(e.expert, kind),
        )
        for e in items
        if e.ok and e.answer is not None and e.answer.strip()
    ]
    votes = [v for v in votes if v.normalised and v.weight > 0]
    if not votes:
        failed = [e.expert for e in items if e.error]
        reason = (
            f"no expert answered ({', '.join(failed)} failed)"
            if failed
            else "no expert could answer this question"
        )
        return Decision(image=image, reason=reason)
    total_weight = sum(v.weight for v in votes)
    support: dict[str, float] = defaultdict(float)
    backing: dict[str, float] = defaultdict(float)
    shown: dict[str, str] = {}
    for vote in votes:
        support[vote.normalised] += vote.weight * vote.confidence / total_weight
        backing[vote.normalised] += vote.weight / total_weight
        # Show the answer as the most confident voter wrote it.
        best = shown.get(vote.normalised)
        if best is None or vote.confidence > _confidence_of(votes, vote.normalised, best):
            shown[vote.normalised] = vote.answer
    ranked = sorted(support, key=lambda key: (-support[key], key))
    winner = ranked[0]
    confidence = min(1.0, support[winner])
    runner_up = ranked[1] if len(ranked) > 1 else None
    abstained = confidence < settings.abstain_below
    reason = (
        f"confidence {confidence:.2f} is below the abstention threshold "
        f"{settings.abstain_below:.2f}"
        if abstained
        else f"{len([v for v in votes if v.normalised == winner])} of {len(votes)} experts agree"
    )
    return Decision(
        answer=None if abstained else shown[winner],
        confidence=confidence,
        agreement=min(1.0, backing[winner]),
        abstained=abstained,
        best_guess=shown[winner],
        runner_up=shown[runner_up] if runner_up else None,
        runner_up_confidence=min(1.0, support[runner_up]) if runner_up else 0.0,
        votes=votes,
        image=image,
        reason=reason,
    )


def _confidence_of(votes: list[Vote], normalised: str, answer: str) -> float:
    return max(v.confidence for v in votes if v.normalised == normalised and v.answer == answer)


def fuse_by_image(
    evidence: Iterable[Evidence], settings: FusionSettings | None = None, kind: str | None = None
) -> list[Decision]:
    """One decision per image, in the order the images first appear."""
    groups: dict[str | None, list[Evidence]] = {}
    for item in evidence:
        groups.setdefault(item.image, []).append(item)
    return [fuse(items, settings, kind) for items in groups.values()]
