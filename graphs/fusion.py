"""Decision-level fusion: several experts answered; decide, and say how sure and who agreed.

Each expert's answer is normalised (official VQA rules) and grouped with equal answers. The
support of a group is a linear opinion pool: the sum of weight x confidence over the experts
that gave it, divided by the total weight of the experts that answered. A linear pool never
claims more certainty than its most certain voter, which keeps the decision's confidence
honest when weak experts agree by accident (correlated errors are the rule, not the exception).

An open answer also supports the more general answers it implies ("egyptian cat" is a cat), so
experts that answer at different specificity agree instead of splitting the vote.

Silence is not evidence: a language prior (how often each answer is right for this kind of
question) only breaks ties between answers that experts gave; it never answers alone, never
votes, and is never named. And a confidence is a probability the system can defend: a
decision is never surer than the surest calibrated expert behind it, and no confidence
reaches 0 or 1 (no finite evidence makes an answer certain).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import cache, lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from sensorium.graphs.calibration import CalibrationMap
from sensorium.graphs.normalize import normalise_answer
from sensorium.tools import Evidence, UserError

CONFIDENCE_CEILING = 0.99
CONFIDENCE_FLOOR = 0.01
"""No calibrated or fused confidence exceeds the ceiling, and no decision's falls below the
floor: a map fitted on finitely many answers cannot defend 100%, nor a decision 0%. (A vote
may be calibrated down to 0: its expert is nearly always wrong there, and it adds nothing.)"""


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
    calibration: dict[str, CalibrationMap] = Field(
        default_factory=dict,
        description="per expert: its confidence -> the probability it is right (from a "
        "weights file; none: the expert's own confidence)",
    )
    kind_calibration: dict[str, dict[str, CalibrationMap]] = Field(
        default_factory=dict, description="per question kind, per expert; overrides `calibration`"
    )
    fused_calibration: CalibrationMap | None = Field(
        None, description="the pooled support of the decided answer -> its confidence"
    )
    prior: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="per question kind: answer -> its share of the training answers; it "
        "breaks ties between answers experts gave, and never answers alone (from a weights "
        "file)",
    )

    domains: dict[str, FittedWeights] = Field(
        default_factory=dict,
        description="per kind of picture ('photo', 'graphic'): a fit of its own, used for "
        "decisions about such pictures in place of the fit above (from a weights file)",
    )

    builtin_fit: bool = Field(
        True,
        description="without a weights_file: use the maps, prior and weights that ship for the "
        "profile (fitted on the built-in training data; none ship for 'standard'); false: the "
        "experts' own confidences, equal weights, no prior",
    )

    # What configuration set before any fit was merged beneath it, and each domain's settings.
    _configured: dict[str, Any] = PrivateAttr(default_factory=dict)
    _per_domain: dict[str, FusionSettings] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _load_weights_file(self) -> FusionSettings:
        if self.weights_file is not None:
            self._merge(read_weights_file(self.weights_file))
        return self

    def for_profile(self, profile: str) -> FusionSettings:
        """These settings with the profile's built-in fit beneath them, where one ships and
        neither a weights file nor `builtin_fit = false` says otherwise."""
        fitted = builtin_fit(profile) if self.builtin_fit and self.weights_file is None else None
        if fitted is None:
            return self
        merged = self.model_copy(deep=True)
        merged._merge(fitted)
        return merged

    def for_domain(self, domain: str | None) -> FusionSettings:
        """These settings for decisions about one kind of picture: its own fit where one was
        made (calibration does not travel across domains), else these."""
        key = domain or ""
        fit = self.domains.get(key)
        if fit is None:
            return self
        if key not in self._per_domain:
            chosen = self.model_copy(deep=True)
            chosen._merge(fit)
            self._per_domain[key] = chosen
        return self._per_domain[key]

    def _merge(self, fitted: FittedWeights) -> None:
        """Take a fit's values where configuration set none (configured keys win). A later
        merge (a domain's fit) replaces the earlier fit's values, never configured ones."""
        own = self._configured = self._configured or {
            name: getattr(self, name) for name in _FITTED_FIELDS
        } | {"threshold_configured": "abstain_below" in self.model_fields_set}
        self.weights = fitted.weights | own["weights"]
        self.kind_weights = fitted.kind_weights | own["kind_weights"]
        if fitted.abstain_below is not None and not own["threshold_configured"]:
            self.abstain_below = fitted.abstain_below
        else:
            self.abstain_below = own["abstain_below"]
        self.calibration = fitted.calibration | own["calibration"]
        self.kind_calibration = fitted.kind_calibration | own["kind_calibration"]
        self.fused_calibration = own["fused_calibration"] or fitted.fused_calibration
        self.prior = fitted.prior | own["prior"]
        self.domains = fitted.domains | own["domains"]
        self._per_domain = {}

    def __eq__(self, other: object) -> bool:
        """Equal when they say the same (not when they were assembled the same way)."""
        if not isinstance(other, FusionSettings):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    __hash__ = None  # type: ignore[assignment]  # mutable, like every pydantic model

    def prior_share(self, answer: str, kind: str | None) -> float:
        """How often a (normalised) answer was right for this kind of question in training
        (0 without a prior): a tie-breaker between answers experts gave, never a vote."""
        return self.prior.get(kind or "", {}).get(answer, 0.0)

    def knows(self, expert: str) -> bool:
        """True when a fit calibrated this expert (overall or for some kind of question)."""
        return expert in self.calibration or any(
            expert in m for m in self.kind_calibration.values()
        )

    def calibrated(self, expert: str, confidence: float, kind: str | None = None) -> float:
        """An expert's confidence as the probability that it is right, where a map was fitted
        (else its own), at most CONFIDENCE_CEILING."""
        calibration = self.kind_calibration.get(kind or "", {}).get(expert)
        calibration = calibration or self.calibration.get(expert)
        value = calibration(confidence) if calibration is not None else confidence
        return min(CONFIDENCE_CEILING, value)

    def weight(self, expert: str, kind: str | None = None) -> float:
        """The reliability weight of an expert (for a kind of question, where fitted)."""
        if kind is not None and expert in self.kind_weights.get(kind, {}):
            return self.kind_weights[kind][expert]
        return self.weights.get(expert, self.default_weight)


class FittedWeights(BaseModel):
    """The content of a weights file: what `sensorium eval calibrate` learned from a run."""

    weights: dict[str, float] = Field(default_factory=dict)
    kind_weights: dict[str, dict[str, float]] = Field(default_factory=dict)
    abstain_below: float | None = Field(
        None, ge=0.0, le=1.0, description="the threshold the fit chose (None: keep the configured)"
    )
    calibration: dict[str, CalibrationMap] = Field(default_factory=dict)
    kind_calibration: dict[str, dict[str, CalibrationMap]] = Field(default_factory=dict)
    fused_calibration: CalibrationMap | None = None
    prior: dict[str, dict[str, float]] = Field(default_factory=dict)
    domains: dict[str, FittedWeights] = Field(
        default_factory=dict,
        description="per kind of picture ('photo', 'graphic'): a fit made on that domain's "
        "samples alone, used for its decisions in place of this one",
    )
    fitted_on: dict[str, object] = Field(
        default_factory=dict, description="the run, its samples and the scores behind the fit"
    )


_FITTED_FIELDS = (
    "abstain_below",
    "weights",
    "kind_weights",
    "calibration",
    "kind_calibration",
    "fused_calibration",
    "prior",
    "domains",
)


@cache
def builtin_fit(profile: str) -> FittedWeights | None:
    """The fit that ships for a profile (`graphs/data/fusion-PROFILE.json`), if one does."""
    resource = files("sensorium.graphs") / "data" / f"fusion-{profile}.json"
    if not resource.is_file():
        return None
    return FittedWeights.model_validate_json(resource.read_text(encoding="utf-8"))


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
    confidence: float = Field(
        description="the probability that this answer is right: the expert's own confidence "
        "through its calibration map (the one confidence shown for it)"
    )
    raw_confidence: float = Field(0.0, description="the expert's own, uncalibrated confidence")
    call_id: str | None = Field(None, description="the tool call whose evidence this is")
    weight: float
    supports_answer: bool = Field(
        False,
        description="counts toward the decided answer (or best guess): gave it, or a more "
        "specific form of it",
    )


class Decision(BaseModel):
    """The fused answer for one image (or for the question when no image is involved)."""

    answer: str | None = Field(None, description="the decided answer (None when abstaining)")
    confidence: float = Field(0.0, ge=0.0, le=1.0)
    agreement: float = Field(
        0.0, ge=0.0, le=1.0, description="share of the voters' weight behind the answer"
    )
    abstained: bool = True
    best_guess: str | None = Field(None, description="the leading answer, even when abstaining")
    runner_up: str | None = Field(
        None, description="the best competing answer (not a more specific or general form)"
    )
    runner_up_confidence: float = 0.0
    more_specific: str | None = Field(
        None, description="the best-supported more specific form of the answer that was given"
    )
    more_specific_confidence: float = 0.0
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
            confidence=settings.calibrated(e.expert, e.confidence, kind),
            raw_confidence=e.confidence,
            call_id=e.call_id,
            weight=settings.weight(e.expert, kind),
        )
        for e in items
        if e.ok and e.answer is not None and e.answer.strip()
    ]
    votes = [v for v in votes if v.normalised and v.weight > 0]
    if not votes:
        return Decision(image=image, reason=_silence(items))
    total_weight = sum(v.weight for v in votes)
    answers = {v.normalised for v in votes}
    # The more general answers each answer implies, among those given.
    implied = {
        a: _general_forms(a) & answers if kind not in _CLOSED_KINDS else frozenset()
        for a in answers
    }
    support: dict[str, float] = defaultdict(float)
    backing: dict[str, float] = defaultdict(float)
    surest: dict[str, float] = defaultdict(float)  # the surest voter behind each answer
    shown: dict[str, str] = {}
    for vote in votes:
        for answer in {vote.normalised} | implied[vote.normalised]:
            support[answer] += vote.weight * vote.confidence / total_weight
            backing[answer] += vote.weight / total_weight
            surest[answer] = max(surest[answer], vote.confidence)
        # Show the answer as the most confident voter wrote it.
        best = shown.get(vote.normalised)
        if best is None or vote.confidence > _confidence_of(votes, vote.normalised, best):
            shown[vote.normalised] = vote.answer
    prior = {answer: settings.prior_share(answer, kind) for answer in answers}
    winner, runner_up, more_specific = _rank(support, implied, prior)
    for vote in votes:
        vote.supports_answer = winner in {vote.normalised} | implied[vote.normalised]
    # The fused map was learned from the decisions of the experts the fit saw; a decision
    # where an expert it never saw votes keeps the pooled support (calibrated votes or not).
    fitted = settings.fused_calibration is not None and all(settings.knows(v.expert) for v in votes)
    fused_map = (settings.fused_calibration if fitted else None) or CalibrationMap()

    def confidence_of(answer: str) -> float:
        # Never surer than the surest calibrated expert behind the answer: agreement between
        # experts whose errors correlate is no evidence beyond its best member.
        return _bounded(min(fused_map(min(1.0, support[answer])), surest[answer]))

    confidence = confidence_of(winner)
    abstained = confidence < settings.abstain_below
    agree = sum(v.supports_answer for v in votes)
    refined = sum(v.supports_answer and v.normalised != winner for v in votes)
    reason = (
        f"confidence {confidence:.2f} is below the abstention threshold "
        f"{settings.abstain_below:.2f}"
        if abstained
        else f"{agree} of {len(votes)} experts agree"
        + (f", {refined} more specifically" if refined else "")
    )
    return Decision(
        answer=None if abstained else shown[winner],
        confidence=confidence,
        agreement=min(1.0, backing[winner]),
        abstained=abstained,
        best_guess=shown[winner],
        runner_up=shown[runner_up] if runner_up else None,
        runner_up_confidence=confidence_of(runner_up) if runner_up else 0.0,
        more_specific=shown[more_specific] if more_specific else None,
        more_specific_confidence=confidence_of(more_specific) if more_specific else 0.0,
        votes=votes,
        image=image,
        reason=reason,
    )


def _silence(items: list[Evidence]) -> str:
    """Why nobody answered, naming who was asked: the user learns it cannot be told from the
    image, not a guess."""
    failed = list(dict.fromkeys(e.expert for e in items if e.error))
    silent = sorted({e.expert for e in items if not e.error} - set(failed))
    if failed and not silent:
        return f"no expert answered ({', '.join(failed)} failed)"
    if silent:
        also = f"; {', '.join(failed)} failed" if failed else ""
        return f"none of the experts asked could tell from the image: {', '.join(silent)}{also}"
    return "no expert was asked"


def _bounded(confidence: float) -> float:
    return min(CONFIDENCE_CEILING, max(CONFIDENCE_FLOOR, confidence))


def _rank(
    support: dict[str, float], implied: dict[str, frozenset[str]], prior: dict[str, float]
) -> tuple[str, str | None, str | None]:
    """The best-supported answer (ties: the one the prior favours), its best competitor
    (neither a more specific nor a more general form of it), and its best-supported more
    specific form."""
    ranked = sorted(implied, key=lambda key: (-round(support[key], 9), -prior[key], key))
    winner = ranked[0]
    # A more specific answer that is as well supported as its general form says more.
    equal = [
        a for a in ranked if winner in implied[a] and math.isclose(support[a], support[winner])
    ]
    winner = min(equal, key=lambda a: (-len(implied[a]), a)) if equal else winner
    specific = [a for a in ranked if winner in implied[a]]
    related = {winner, *specific, *implied[winner]}
    competing = [a for a in ranked if a not in related]
    return winner, competing[0] if competing else None, specific[0] if specific else None


def _confidence_of(votes: list[Vote], normalised: str, answer: str) -> float:
    return max(v.confidence for v in votes if v.normalised == normalised and v.answer == answer)


def fuse_by_image(
    evidence: Iterable[Evidence],
    settings: FusionSettings | None = None,
    kind: str | None = None,
    domain_of: Callable[[str], str | None] | None = None,
) -> list[Decision]:
    """One decision per image, in the order the images first appear; `domain_of` says what
    kind of picture an image is (its sha256 -> 'photo' or 'graphic'), which picks the fit."""
    settings = settings or FusionSettings()
    groups: dict[str | None, list[Evidence]] = {}
    for item in evidence:
        groups.setdefault(item.image, []).append(item)
    return [
        fuse(items, settings.for_domain(domain_of(image) if domain_of and image else None), kind)
        for image, items in groups.items()
    ]


# Specificity. An open answer implies more general answers: English noun phrases put the head
# last ("egyptian cat", "red car"), and ImageNet names its classes' everyday words ("tabby" is
# a cat, "golden retriever" a dog). Yes/no and counts never generalise.
_CLOSED_KINDS = frozenset({"yes_no", "count"})
_NEGATIONS = frozenset({"not", "no", "non", "never", "without", "neither", "nor", "nothing"})
# A phrase with a conjunction or preposition is not modifier + head: "black and white" is not
# white, "cat on mat" is not a mat.
_LINKS = frozenset(
    {"and", "or", "but", "&", "plus", "versus", "vs", "than", "like", "as", "of", "on", "in",
     "at", "by", "for", "from", "to", "into", "onto", "off", "with", "under", "over", "near",
     "behind", "above", "below", "beside", "between", "inside", "outside", "through"}
)  # fmt: skip
_GREYS = frozenset({"grey", "gray"})


@lru_cache(maxsize=4096)
def _general_forms(answer: str) -> frozenset[str]:
    """The more general answers a normalised answer implies ("egyptian cat" -> {"cat"})."""
    forms: set[str] = set()
    todo = [answer]
    while todo:
        for parent in _parents(todo.pop()) - forms - {answer}:
            forms.add(parent)
            todo.append(parent)
    return frozenset(forms)


def _parents(answer: str) -> set[str]:
    words = answer.split()
    if not words or answer in ("yes", "no") or any(ch.isdigit() for ch in answer):
        return set()
    lexicon = _imagenet_lexicon()
    everyday = lexicon.everyday.get(answer, frozenset())
    parents = set(everyday - {answer}) if len(everyday) == 1 else set()
    # ImageNet's table decides for the animals it names: a guinea pig is no pig, a sea lion
    # no lion, a German shepherd a dog but no shepherd.
    if len(words) > 1 and answer not in lexicon.animal_names and _has_head(words):
        head = " ".join(words[1:])
        colours = _colour_words()
        is_blend = words[0] in colours and set(words[1:]) <= colours  # "black white"
        is_pun = answer in lexicon.everyday and head in lexicon.animal_words  # "hot dog"
        if not (is_blend or is_pun):
            parents.add(head)
    return parents - {"yes", "no"}


def _has_head(words: list[str]) -> bool:
    """True when the phrase reads as modifiers + head noun, so dropping a modifier keeps its
    meaning ("small red car" -> "red car")."""
    if any(w in _NEGATIONS or w in _LINKS or w.endswith("n't") for w in words):
        return False
    # A participle after the first word opens a clause: "man riding horse" is no horse.
    return not any(w.endswith("ing") for w in words[1:-1])


class _Lexicon(NamedTuple):
    # ImageNet class name or synonym -> the everyday words of the classes it names, or the
    # name itself where the everyday word is one of the class's names (a synonym is no more
    # general: "hotdog" for "hot dog", "cougar" for "puma")
    everyday: dict[str, frozenset[str]]
    animal_names: frozenset[str]  # the names of animal classes
    animal_words: frozenset[str]  # those names and their everyday words ("cat", "dog")


@cache
def _imagenet_lexicon() -> _Lexicon:
    from sensorium.tools.imagenet import everyday_name, is_animal

    text = files("sensorium.tools").joinpath("data/imagenet_classes.txt").read_text("utf-8")
    everyday: dict[str, set[str]] = defaultdict(set)
    animal_names: set[str] = set()
    animal_words: set[str] = set()
    for index, line in enumerate(line for line in text.splitlines() if line.strip()):
        names = [normalise_answer(name) for name in line.split("\t", 1)[1].split(",")]
        word = normalise_answer(everyday_name(index))
        for name in names:
            everyday[name].add(name if word in names else word)
        if is_animal(index):
            animal_names.update(names)
            animal_words.update(names, [word])
    return _Lexicon(
        {name: frozenset(words) for name, words in everyday.items()},
        frozenset(animal_names),
        frozenset(animal_words),
    )


@cache
def _colour_words() -> frozenset[str]:
    from sensorium.tools.colour import COLOUR_NAMES

    return frozenset(COLOUR_NAMES) | _GREYS
