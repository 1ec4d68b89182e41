"""Learned fusion: fit per-expert (and per question kind) reliability weights from a run.

A run records every expert's answer and confidence on every sample, so fusion can be
replayed offline under any weights. The fit replays a small family of candidates and keeps
the one that scores best:

- uniform weights (what fusion does without evidence);
- each expert's accuracy raised to a power p in (1, 2, 4, 8): larger p trusts the best
  expert more and lets a weak expert's vote count for less;
- the same, per question kind, for kinds with enough samples (`min_kind_samples`);
- the best expert alone (per kind where data allows, else overall), never abstaining.

Candidates are scored on what the user would have been told: an abstention scores 0. The
last candidate reproduces the best single expert of each kind, so on the data it was
fitted on, fusion with the chosen weights never scores below the best single expert. Whether
that generalises is measured on a held-out split: weights fitted on the rest, scored on it.

Before the weights, each expert gets a calibration map (`sensorium.graphs.calibration`):
its confidence -> how often it was right, per question kind where data allows; fusion pools
the calibrated confidences, and a last map calibrates the pooled support of the decided
answer. The held-out split reports the expected calibration error (ECE) before and after.

A language prior is fitted too: per question kind, the share of each answer among the samples
(their most common acceptable answer). It is no expert: silence is not evidence, so it only
breaks ties between answers experts gave, and never answers alone. Its blind accuracy
(always the most common answer: "yes", "2", "white") is reported as the baseline fusion must
beat. A kind needs `min_kind_samples` samples to get a prior: three questions about animals
are no prior.

`check_weights` scores a fit on runs it was not fitted on; the lite profile's built-in fit
(`make fusion-fit`) is checked that way on easy-VQA's test split.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from sensorium.evals.metrics import (
    ANSWER_METRICS,
    ReliabilityBin,
    expected_calibration_error,
    reliability_bins,
)
from sensorium.evals.results import SampleRecord
from sensorium.evals.runner import RECORDS_FILE, read_records
from sensorium.graphs import Decision, FittedWeights, FusionSettings, fuse, normalise_answer
from sensorium.graphs.calibration import CalibrationMap, fit_map
from sensorium.tools import Evidence, UserError

POWERS = (1, 2, 4, 8)

ABSTAIN_MARGIN = 0.01
"""How much accuracy never abstaining must add before a fit gives up abstaining."""

FitOn = Literal["all", "train"]


class Candidate(BaseModel):
    """One way of weighing the experts, with its name for the report."""

    name: str
    weights: dict[str, float]
    kind_weights: dict[str, dict[str, float]] = {}
    abstain_below: float | None = None  # None: the default threshold
    calibration: dict[str, CalibrationMap] = {}
    kind_calibration: dict[str, dict[str, CalibrationMap]] = {}
    fused_calibration: CalibrationMap | None = None
    prior: dict[str, dict[str, float]] = {}
    domains: dict[str, FittedWeights] = {}

    def settings(self) -> FusionSettings:
        """Fusion settings that apply these weights and maps (unknown experts get none)."""
        settings = FusionSettings(
            weights=self.weights,
            kind_weights=self.kind_weights,
            default_weight=0.0,
            calibration=self.calibration,
            kind_calibration=self.kind_calibration,
            fused_calibration=self.fused_calibration,
            prior=self.prior,
            domains=self.domains,
        )
        if self.abstain_below is not None:
            settings.abstain_below = self.abstain_below
        return settings


class SplitScores(BaseModel):
    """Accuracy on one split: each expert alone, fusion as run, and fusion with fitted weights."""

    samples: int
    experts: dict[str, float]
    fused_as_run: float
    fused_fitted: float
    best_single: str | None
    best_single_accuracy: float
    prior: float | None = None  # the blind baseline: always the kind's most common answer
    ece_as_run: dict[str, float] = {}
    ece_fitted: dict[str, float] = {}
    reliability_as_run: dict[str, list[ReliabilityBin]] = {}
    reliability_fitted: dict[str, list[ReliabilityBin]] = {}


class Calibration(BaseModel):
    """The chosen weights, and how they score where they were fitted and on held-out data."""

    weights: FittedWeights
    chosen: str
    fitted: SplitScores
    held_out: SplitScores | None
    domains: dict[str, Calibration] = {}  # each kind of picture's own fit, where data allows


def load_run_records(run_dir: Path) -> list[SampleRecord]:
    """The records of a run folder (written by `eval run`), in file order."""
    manifest = run_dir / "run.json"
    if not manifest.is_file():
        raise UserError(f"{run_dir} is not a run folder (no run.json); give one from `eval run`")
    key = json.loads(manifest.read_text(encoding="utf-8"))["key"]
    return list(read_records(run_dir / RECORDS_FILE, key).values())


MIN_DOMAIN_SAMPLES = 100
"""Samples a kind of picture needs for a fit of its own (else the pooled fit serves it)."""


def calibrate(
    records: Sequence[SampleRecord],
    *,
    holdout: float = 0.3,
    min_kind_samples: int = 20,
    fit_on: FitOn = "all",
    min_domain_samples: int = MIN_DOMAIN_SAMPLES,
) -> Calibration:
    """Fit maps, a prior and weights; measure generalisation by refitting without a held-out
    split. `fit_on="train"` writes that refit (the held-out samples never seen), so the
    held-out scores are the written weights' own; "all" writes the fit on every sample.

    Calibration does not travel across domains: where the records come from more than one
    kind of picture (photo, graphic), each with `min_domain_samples` scored samples gets a fit
    of its own the same way (its own held-out split), which fusion uses for such pictures."""
    pooled = _calibrate(records, holdout, min_kind_samples, fit_on)
    by_domain: dict[str, list[SampleRecord]] = defaultdict(list)
    for record in records:
        if record.domain and record.expected and record.experts and not record.error:
            by_domain[record.domain].append(record)
    if len(by_domain) < 2:
        return pooled
    domains = {
        domain: _calibrate(group, holdout, min_kind_samples, fit_on)
        for domain, group in sorted(by_domain.items())
        if len(group) >= min_domain_samples
    }
    pooled.weights.domains = {domain: fit.weights for domain, fit in domains.items()}
    return pooled.model_copy(update={"domains": domains})


def _calibrate(
    records: Sequence[SampleRecord], holdout: float, min_kind_samples: int, fit_on: FitOn
) -> Calibration:
    usable = [r for r in records if r.expected and r.experts and not r.error]
    if len(usable) < 10:
        raise UserError(
            f"calibration needs at least 10 scored samples with expert answers; the run has "
            f"{len(usable)} (run a vqa or agent suite with answers, without --limit that small)"
        )
    held_out = None
    test = held_out_split(usable, holdout)
    train = [r for r in usable if not _in_holdout(r.id, holdout)]
    if fit_on == "train" and (len(test) < 5 or len(train) < 10):
        raise UserError(
            f"--fit-on train needs at least 10 training and 5 held-out samples; the split has "
            f"{len(train)} and {len(test)} (give more samples or a larger --holdout)"
        )
    fitted_records = train if fit_on == "train" else usable
    prior = fit_prior(fitted_records, min_kind_samples)
    chosen = _fit(fitted_records, min_kind_samples, prior)
    fitted = _split_scores(fitted_records, chosen, _best_expert(fitted_records))
    if len(test) >= 5 and len(train) >= 10:
        train_prior = fit_prior(train, min_kind_samples)  # the held-out answers stay unseen
        train_fit = chosen if fit_on == "train" else _fit(train, min_kind_samples, train_prior)
        held_out = _split_scores(test, train_fit, _best_expert(train))
    weights = FittedWeights(
        weights=chosen.weights,
        kind_weights=chosen.kind_weights,
        abstain_below=chosen.abstain_below,
        calibration=chosen.calibration,
        kind_calibration=chosen.kind_calibration,
        fused_calibration=chosen.fused_calibration,
        prior=prior,
        fitted_on={
            "samples": len(fitted_records),
            "candidate": chosen.name,
            "split": "train" if fit_on == "train" else "all",
            "holdout": holdout,
        },
    )
    return Calibration(weights=weights, chosen=chosen.name, fitted=fitted, held_out=held_out)


def check_weights(records: Sequence[SampleRecord], weights: FittedWeights) -> SplitScores:
    """Score fitted weights on records they may not have seen: each expert, the prior and
    fusion as run and with the weights, with the calibration error before and after."""
    usable = [r for r in records if r.expected and r.experts and not r.error]
    if not usable:
        raise UserError("the run has no scored samples with expert answers to check weights on")
    candidate = Candidate(name="the weights file", **weights.model_dump(exclude={"fitted_on"}))
    return _split_scores(usable, candidate, _best_expert(usable))


def fit_prior(records: Sequence[SampleRecord], min_samples: int = 1) -> dict[str, dict[str, float]]:
    """Per question kind, each answer's share of the samples (by their most common acceptable
    answer, normalised); kinds with fewer than `min_samples` answered samples are left out (a
    share of three questions is no prior)."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in records:
        answers = [normalise_answer(a) for a in record.expected if a.strip()]
        if answers and record.kind:
            counts[record.kind][max(set(answers), key=lambda a: (answers.count(a), a))] += 1
    return {
        kind: {answer: n / sum(by.values()) for answer, n in sorted(by.items())}
        for kind, by in sorted(counts.items())
        if sum(by.values()) >= min_samples
    }


def prior_accuracy(records: Sequence[SampleRecord], prior: dict[str, dict[str, float]]) -> float:
    """The blind baseline: the score of always answering the kind's most common answer (no
    answer for a kind without a prior, which scores 0)."""
    if not records:
        return 0.0
    total = 0.0
    for record in records:
        shares = prior.get(record.kind or "")
        if shares:
            total += _score(record, max(shares.items(), key=lambda item: (item[1], item[0]))[0])
    return total / len(records)


def replay(record: SampleRecord, settings: FusionSettings) -> float:
    """The sample's score, by its suite's answer metric, had fusion used these settings (an
    abstention scores 0: the user was told nothing)."""
    decision = _decide(record, settings)
    return _score(record, None if decision.abstained else decision.answer)


def _decide(record: SampleRecord, settings: FusionSettings) -> Decision:
    settings = settings.for_domain(record.domain)
    evidence = [
        Evidence(
            expert=name, answer=answer.answer, confidence=answer.confidence, error=answer.error
        )
        for name, answer in record.experts.items()
    ]
    return fuse(evidence, settings, record.kind)


def _score(record: SampleRecord, answer: str | None) -> float:
    return ANSWER_METRICS[record.answer_metric or "vqa_accuracy"](answer, record.expected)


def _fit(
    records: list[SampleRecord], min_kind_samples: int, prior: dict[str, dict[str, float]]
) -> Candidate:
    calibration, kind_calibration = _expert_maps(records, min_kind_samples)
    scored: list[tuple[float, Candidate]] = []
    for candidate in _candidates(records, min_kind_samples):
        candidate = _with_fused_map(
            records,
            candidate.model_copy(
                update={
                    "calibration": calibration,
                    "kind_calibration": kind_calibration,
                    "prior": prior,
                }
            ),
        )
        score = _accuracy(records, candidate)
        if candidate.abstain_below is None:
            # An abstention scores 0, so never abstaining scores higher wherever a guess is
            # sometimes right; but "I am not sure" about a guess right less often than the
            # threshold says is worth more to a user than a sliver of accuracy. Never
            # abstaining must earn its place by a clear gain.
            never = candidate.model_copy(
                update={"name": f"{candidate.name}, never abstaining", "abstain_below": 0.0}
            )
            never_score = _accuracy(records, never)
            if never_score > score + ABSTAIN_MARGIN:
                candidate, score = never, never_score
        scored.append((score, candidate))
    return max(enumerate(scored), key=lambda item: (item[1][0], -item[0]))[1][1]  # ties: earlier


def _with_fused_map(records: list[SampleRecord], candidate: Candidate) -> Candidate:
    """The candidate with a map from the pooled support of the leading answer to how often
    that answer was right (the threshold then applies to calibrated confidences)."""
    settings = candidate.settings()
    decided = [(r, _decide(r, settings)) for r in records]
    pairs = [(d.confidence, _score(r, d.best_guess)) for r, d in decided if d.best_guess]
    fused = fit_map([c for c, _ in pairs], [t for _, t in pairs])
    return candidate.model_copy(update={"fused_calibration": fused})


def _expert_maps(
    records: list[SampleRecord], min_kind_samples: int
) -> tuple[dict[str, CalibrationMap], dict[str, dict[str, CalibrationMap]]]:
    """Each expert's map, and per question kind where it answered `min_kind_samples` times."""
    answers: dict[str, list[tuple[float, float, str]]] = defaultdict(list)
    for record in records:
        for name, answer in record.experts.items():
            if answer.answer and not answer.error and answer.score is not None:
                answers[name].append((answer.confidence, answer.score, record.kind or "other"))
    overall = {
        name: fit_map([c for c, _, _ in rows], [t for _, t, _ in rows])
        for name, rows in sorted(answers.items())
    }
    per_kind: dict[str, dict[str, CalibrationMap]] = defaultdict(dict)
    for name, rows in answers.items():
        for kind in sorted({k for _, _, k in rows}):
            group = [(c, t) for c, t, k in rows if k == kind]
            if len(group) >= min_kind_samples:
                fitted = fit_map([c for c, _ in group], [t for _, t in group])
                if fitted.method != "identity":
                    per_kind[kind][name] = fitted
    return overall, dict(per_kind)


def _candidates(records: list[SampleRecord], min_kind_samples: int) -> list[Candidate]:
    experts = sorted({name for r in records for name in r.experts})
    overall = _accuracies(records, experts)
    by_kind: dict[str, list[SampleRecord]] = defaultdict(list)
    for record in records:
        by_kind[record.kind or "other"].append(record)
    kinds = {
        kind: _accuracies(group, experts)
        for kind, group in sorted(by_kind.items())
        if len(group) >= min_kind_samples
    }
    candidates = [Candidate(name="uniform", weights=dict.fromkeys(experts, 1.0))]
    for power in POWERS:
        candidates.append(
            Candidate(
                name=f"accuracy^{power}",
                weights={e: overall[e] ** power for e in experts},
            )
        )
        if kinds:
            candidates.append(
                Candidate(
                    name=f"accuracy^{power} per kind",
                    weights={e: overall[e] ** power for e in experts},
                    kind_weights={
                        k: {e: acc[e] ** power for e in experts} for k, acc in kinds.items()
                    },
                )
            )
    best = max(experts, key=lambda e: overall[e])
    # An abstention scores 0 (the user was told nothing), so only a best expert that always
    # answers reproduces that expert's accuracy.
    candidates.append(
        Candidate(
            name="best expert per kind" if kinds else "best expert",
            abstain_below=0.0,
            weights={e: float(e == best) for e in experts},
            kind_weights={
                k: {e: float(e == max(experts, key=lambda x: acc[x])) for e in experts}
                for k, acc in kinds.items()
            },
        )
    )
    return candidates


def _accuracies(records: list[SampleRecord], experts: list[str]) -> dict[str, float]:
    totals = dict.fromkeys(experts, 0.0)
    for record in records:
        for name, answer in record.experts.items():
            totals[name] += answer.score or 0.0
    return {name: total / len(records) for name, total in totals.items()}


def _accuracy(records: list[SampleRecord], candidate: Candidate) -> float:
    settings = candidate.settings()
    return sum(replay(r, settings) for r in records) / len(records)


def _best_expert(records: list[SampleRecord]) -> str:
    experts = sorted({name for r in records for name in r.experts})
    accuracy = _accuracies(records, experts)
    return max(experts, key=lambda e: accuracy[e])


def _split_scores(records: list[SampleRecord], chosen: Candidate, best: str) -> SplitScores:
    experts = _accuracies(records, sorted({name for r in records for name in r.experts}))
    as_run, calibrated = _outcomes(records, None), _outcomes(records, chosen)
    return SplitScores(
        ece_as_run=_ece(as_run),
        ece_fitted=_ece(calibrated),
        reliability_as_run=_bins(as_run),
        reliability_fitted=_bins(calibrated),
        samples=len(records),
        experts=experts,
        fused_as_run=sum((r.fused.score or 0.0) if r.fused else 0.0 for r in records)
        / len(records),
        fused_fitted=_accuracy(records, chosen),
        best_single=best,
        best_single_accuracy=experts.get(best, 0.0),
        prior=prior_accuracy(records, chosen.prior) if chosen.prior else None,
    )


Outcomes = dict[str, list[tuple[float, float]]]


def _ece(outcomes: Outcomes) -> dict[str, float]:
    return {
        name: expected_calibration_error([c for c, _ in rows], [t for _, t in rows])
        for name, rows in outcomes.items()
    }


def _bins(outcomes: Outcomes) -> dict[str, list[ReliabilityBin]]:
    return {
        name: reliability_bins([c for c, _ in rows], [t for _, t in rows])
        for name, rows in outcomes.items()
    }


def _outcomes(records: list[SampleRecord], chosen: Candidate | None) -> Outcomes:
    """(confidence, score) per expert and fused over the answers given: raw (`chosen` None,
    fusion as run) or through the chosen maps and weights."""
    settings = chosen.settings() if chosen is not None else None
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in records:
        for name, answer in record.experts.items():
            if answer.answer and not answer.error and answer.score is not None:
                confidence = answer.confidence
                if settings is not None:
                    own = settings.for_domain(record.domain)
                    confidence = own.calibrated(name, confidence, record.kind)
                pairs[name].append((confidence, answer.score))
        if settings is None and record.fused and record.fused.answer:
            if not record.fused.abstained:
                pairs["fused"].append((record.fused.confidence, record.fused.score or 0.0))
        elif settings is not None:
            decision = _decide(record, settings)
            if not decision.abstained and decision.answer:
                pairs["fused"].append((decision.confidence, _score(record, decision.answer)))
    return dict(sorted(pairs.items()))


def held_out_split(records: Sequence[SampleRecord], share: float) -> list[SampleRecord]:
    """The records `calibrate` holds out with this share (the same on every machine)."""
    return [r for r in records if _in_holdout(r.id, share)]


def _in_holdout(sample_id: str, share: float) -> bool:
    """A stable split: the same samples are held out on every machine and every call."""
    return int(hashlib.sha256(sample_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share
