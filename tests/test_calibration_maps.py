"""Calibration maps: Platt and isotonic fits recover known miscalibration, the family is
chosen on held-out samples, fusion pools calibrated confidences, and `eval calibrate` reports
the calibration error before and after on its held-out split."""

from __future__ import annotations

import math
import random

import pytest

from sensorium import FusionSettings
from sensorium.evals import calibrate
from sensorium.evals.calibrate import fit_prior
from sensorium.evals.metrics import expected_calibration_error
from sensorium.evals.results import ExpertAnswer, SampleRecord
from sensorium.graphs import fuse
from sensorium.graphs.calibration import CalibrationMap, fit_isotonic, fit_map, fit_platt
from sensorium.tools import Evidence


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def overconfident(n: int, seed: int = 0) -> tuple[list[float], list[float]]:
    """Confidences whose true rate of being right is sigmoid(0.5 * logit(c) - 1)."""
    rng = random.Random(seed)
    confidences = [rng.uniform(0.05, 0.99) for _ in range(n)]
    truth = [1 / (1 + math.exp(-(0.5 * logit(c) - 1))) for c in confidences]
    return confidences, [float(rng.random() < t) for t in truth]


def yes_no(n: int, truth: str, experts: dict[str, ExpertAnswer]) -> SampleRecord:
    return SampleRecord(
        key=f"k:{n}",
        id=f"s{n}",
        task="vqa",
        kind="yes_no",
        expected=[truth],
        experts=experts,
        answer_metric="answer_match",
    )


def test_platt_recovers_the_slope_and_intercept() -> None:
    confidences, outcomes = overconfident(4000)
    fitted = fit_platt(confidences, outcomes)
    assert fitted.a == pytest.approx(0.5, abs=0.1) and fitted.b == pytest.approx(-1.0, abs=0.15)


def test_isotonic_pools_adjacent_violators() -> None:
    fitted = fit_isotonic([0.1, 0.2, 0.3, 0.4], [0.0, 1.0, 0.0, 1.0])
    # (0.2, 1) and (0.3, 0) violate the order: pooled into one block at x = 0.25, y = 0.5.
    assert fitted.xs == pytest.approx([0.1, 0.25, 0.4]) and fitted.ys == [0.0, 0.5, 1.0]
    assert fitted(0.175) == pytest.approx(0.25)  # linear between block centres
    assert all(a <= b for a, b in zip(fitted.ys, fitted.ys[1:], strict=False))


def test_fit_map_keeps_the_identity_without_data_and_calibrates_with_it() -> None:
    assert fit_map([0.9] * 5, [1.0] * 5).method == "identity"
    confidences, outcomes = overconfident(2000, seed=1)
    fitted = fit_map(confidences, outcomes)
    assert fitted.method in ("platt", "isotonic") and fitted.samples == 2000
    test_c, test_o = overconfident(2000, seed=2)  # fresh data, the same miscalibration
    before = expected_calibration_error(test_c, test_o)
    after = expected_calibration_error([fitted(c) for c in test_c], test_o)
    assert before > 0.15 and after < 0.05


def test_fusion_pools_calibrated_confidences_and_calibrates_the_decision() -> None:
    evidence = [
        Evidence(expert="boastful", answer="cat", confidence=0.99),
        Evidence(expert="modest", answer="dog", confidence=0.6),
    ]
    assert fuse(evidence).answer == "cat"
    humbled = CalibrationMap(method="platt", a=1.0, b=-6.0)  # 0.99 -> about 0.25
    settings = FusionSettings(calibration={"boastful": humbled, "modest": CalibrationMap()})
    decision = fuse(evidence, settings)
    assert decision.answer == "dog"
    assert {v.expert: v.confidence for v in decision.votes}["boastful"] == pytest.approx(
        humbled(0.99)
    )
    halved = CalibrationMap(method="isotonic", xs=[0.0, 1.0], ys=[0.0, 0.5])
    plain = fuse(evidence, settings)
    again = fuse(evidence, settings.model_copy(update={"fused_calibration": halved}))
    assert again.confidence == pytest.approx(plain.confidence / 2)


def test_calibrate_fits_maps_and_reports_the_error_before_and_after() -> None:
    rng = random.Random(3)
    records = []
    for n in range(400):
        confidence = rng.uniform(0.5, 1.0)  # says 0.5-1.0, right a third as often
        right = rng.random() < confidence / 3
        said = "yes" if right else "no"
        expert = ExpertAnswer(answer=said, confidence=confidence, score=float(right))
        records.append(yes_no(n, "yes", {"boastful": expert}))
    result = calibrate(records)
    assert result.weights.calibration["boastful"].method != "identity"
    assert result.weights.fused_calibration is not None
    held_out = result.held_out
    assert held_out is not None
    assert held_out.ece_as_run["boastful"] > 0.3
    assert held_out.ece_fitted["boastful"] < 0.1


def test_the_prior_is_each_kind_s_answer_shares() -> None:
    records = [
        SampleRecord(key=f"k:{n}", id=f"s{n}", task="vqa", kind=kind, expected=[truth])
        for n, (kind, truth) in enumerate(
            [("yes_no", "yes")] * 3 + [("yes_no", "No")] + [("count", "2")] * 2
        )
    ]
    prior = fit_prior(records)
    assert prior == {"count": {"2": 1.0}, "yes_no": {"no": 0.25, "yes": 0.75}}
    settings = FusionSettings(prior=prior)
    assert settings.prior_share("yes", "yes_no") == 0.75
    assert settings.prior_share("yes", "colour") == 0.0  # no prior for a kind never seen


def test_silence_is_not_evidence_the_prior_only_breaks_ties_between_experts() -> None:
    settings = FusionSettings(prior={"yes_no": {"yes": 0.7, "no": 0.3}})
    # One expert, unsure: its answer stands; the prior adds no vote and no name.
    unsure = fuse(
        [Evidence(expert="answer_question", answer="no", confidence=0.3)], settings, "yes_no"
    )
    assert unsure.answer == "no" and [v.expert for v in unsure.votes] == ["answer_question"]
    assert unsure.reason == "1 of 1 experts agree"
    # Every expert silent: an abstention that names who was asked, never the prior's answer.
    silent = [
        Evidence(expert="classify", answer=None, confidence=0.0),
        Evidence(expert="answer_question", answer=None, confidence=0.0),
    ]
    nobody = fuse(silent, settings, "yes_no")
    assert nobody.abstained and nobody.answer is None and nobody.best_guess is None
    assert nobody.votes == []
    assert nobody.reason == (
        "none of the experts asked could tell from the image: answer_question, classify"
    )
    assert fuse([], settings, "yes_no").reason == "no expert was asked"
    # Two experts disagreeing equally: the prior breaks the tie, without raising confidence.
    split = [
        Evidence(expert="answer_question", answer="no", confidence=0.6),
        Evidence(expert="classify", answer="yes", confidence=0.6),
    ]
    tied = fuse(split, settings, "yes_no")
    assert tied.best_guess == "yes" and tied.confidence <= 0.6
    assert fuse(split, FusionSettings(prior={"yes_no": {"no": 0.9}}), "yes_no").best_guess == "no"


def test_the_blind_prior_is_a_baseline_beside_fusion_never_a_voter() -> None:
    rng = random.Random(4)
    records = []
    for n in range(200):
        truth = "yes" if rng.random() < 0.8 else "no"  # most answers are "yes"
        said = rng.choice(["yes", "no"])  # an expert that guesses, confidently
        expert = ExpertAnswer(answer=said, confidence=0.9, score=float(said == truth))
        records.append(yes_no(n, truth, {"guesser": expert}))
    result = calibrate(records)
    assert result.fitted.prior == pytest.approx(0.8, abs=0.06)  # reported as the baseline
    assert set(result.fitted.experts) == {"guesser"}
    # Fusion answers only what the guesser said (or abstains): the prior cannot answer for it.
    assert result.fitted.fused_fitted <= result.fitted.experts["guesser"] + 1e-9
    assert result.held_out is not None and result.held_out.prior is not None
    assert result.weights.prior["yes_no"]["yes"] > 0.7


def test_the_fused_map_applies_only_to_decisions_of_experts_the_fit_saw() -> None:
    from sensorium.graphs.fusion import fuse
    from sensorium.tools import Evidence

    fitted = FusionSettings(
        calibration={"seen": CalibrationMap()},  # identity, but fitted
        fused_calibration=CalibrationMap(method="platt", a=1.0, b=-3.0),  # pulls support down
    )
    seen = fuse([Evidence(expert="seen", answer="cat", confidence=0.6)], fitted)
    unseen = fuse([Evidence(expert="plugin", answer="cat", confidence=0.6)], fitted)
    assert seen.confidence < 0.1  # the fit's map
    assert unseen.confidence == pytest.approx(0.6)  # a map learned elsewhere does not apply
