"""Learned fusion: fitted weights never lose to the best single expert where they were fitted,
per-kind weights where a kind has data, and weights files that configuration can point to."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorium import FusionSettings, Settings, UserError
from sensorium.evals import calibrate, check_weights, held_out_split
from sensorium.evals.calibrate import replay
from sensorium.evals.results import ExpertAnswer, SampleRecord
from sensorium.tools.profiles import ROLES


def record(n: int, kind: str, truth: str, votes: dict[str, tuple[str, float]]) -> SampleRecord:
    experts = {
        name: ExpertAnswer(answer=answer, confidence=confidence, score=float(answer == truth))
        for name, (answer, confidence) in votes.items()
    }
    return SampleRecord(
        key=f"k:{n}",
        id=f"s{n}",
        task="vqa",
        kind=kind,
        expected=[truth],
        experts=experts,
        answer_metric="answer_match",  # one acceptable answer
    )


def specialists(count: int = 40) -> list[SampleRecord]:
    """`colours` is right on colour questions, `classify` on animals; each is confidently wrong
    outside its speciality, and a third expert is a confident coin flip."""
    records = []
    for n in range(count):
        if n % 2:
            votes = {"colours": ("red", 0.6), "classify": ("cat", 0.9), "noise": ("blue", 0.95)}
            records.append(record(n, "colour", "red", votes))
        else:
            votes = {"colours": ("gray", 0.9), "classify": ("dog", 0.6), "noise": ("cow", 0.95)}
            records.append(record(n, "animal", "dog", votes))
    return records


def test_fitted_fusion_beats_every_single_expert_and_uniform_fusion() -> None:
    records = specialists()
    uniform = sum(replay(r, FusionSettings()) for r in records) / len(records)
    result = calibrate(records, min_kind_samples=10)
    assert uniform == 0.0  # the confident coin flip wins every uniform vote
    assert result.fitted.experts["colours"] == result.fitted.experts["classify"] == 0.5
    assert result.fitted.prior == 1.0  # one answer per kind here: a perfect blind baseline
    assert "prior" not in result.fitted.experts  # a baseline, never an expert
    assert result.fitted.fused_fitted == 1.0  # each expert trusted in its speciality
    # Calibrated per kind, each expert's confidence says how often it is right there.
    fitted = FusionSettings.model_validate(
        result.weights.model_dump(exclude={"fitted_on", "abstain_below"})
    )
    assert fitted.calibrated("noise", 0.95, "colour") < 0.1
    assert fitted.calibrated("colours", 0.6, "colour") > fitted.calibrated(
        "classify", 0.9, "colour"
    )
    assert result.held_out is not None and result.held_out.fused_fitted == 1.0


def test_per_kind_maps_separate_experts_whose_confidence_never_varies() -> None:
    # Every expert always says 0.9: only per-kind calibration (or weights) can tell them apart.
    records = [
        record(
            n, r.kind or "", r.expected[0], {e: (a.answer or "", 0.9) for e, a in r.experts.items()}
        )
        for n, r in enumerate(specialists())
    ]
    result = calibrate(records, min_kind_samples=10)
    assert result.fitted.fused_fitted == 1.0
    assert result.held_out is not None and result.held_out.fused_fitted == 1.0


def test_without_enough_data_per_kind_weights_are_global() -> None:
    result = calibrate(specialists(), min_kind_samples=1000)
    assert result.weights.kind_weights == {}
    assert result.fitted.fused_fitted >= result.fitted.best_single_accuracy


@pytest.mark.parametrize("seed", range(5))
def test_fitted_fusion_never_scores_below_the_best_single_expert(seed: int) -> None:
    import random

    rng = random.Random(seed)
    answers = ["red", "blue", "cat", "dog"]
    records = [
        record(
            n,
            rng.choice(["colour", "animal", "yes_no"]),
            rng.choice(answers),
            {e: (rng.choice(answers), rng.random()) for e in ("a", "b", "c")},
        )
        for n in range(60)
    ]
    result = calibrate(records, min_kind_samples=10)
    assert result.fitted.fused_fitted >= result.fitted.best_single_accuracy


def test_too_few_samples_is_a_clear_error() -> None:
    with pytest.raises(UserError, match="at least 10 scored samples"):
        calibrate(specialists(4))


def test_configuration_reads_a_weights_file(tmp_path: Path) -> None:
    path = tmp_path / "weights.json"
    path.write_text(calibrate(specialists(), min_kind_samples=10).weights.model_dump_json())
    fusion = FusionSettings(weights_file=path, weights={"noise": 0.5})
    assert fusion.weight("noise") == 0.5  # configuration wins over the file
    assert fusion.calibrated("noise", 0.95, "colour") < 0.1  # the file's maps
    settings = Settings(fusion={"weights_file": str(path)})  # type: ignore[arg-type]
    assert settings.fusion.kind_calibration and settings.fusion.fused_calibration


def test_an_abstention_scores_nothing_and_a_fitted_threshold_travels_in_the_file(
    tmp_path: Path,
) -> None:
    unsure = record(0, "animal", "cat", {"classify": ("cat", 0.1)})  # right, but at 10%
    assert replay(unsure, FusionSettings()) == 0.0  # fusion abstains: the user got no answer
    assert replay(unsure, FusionSettings(abstain_below=0.0)) == 1.0
    path = tmp_path / "weights.json"
    path.write_text('{"weights": {"classify": 1.0}, "abstain_below": 0.0}')
    assert FusionSettings(weights_file=path).abstain_below == 0.0
    assert FusionSettings(weights_file=path, abstain_below=0.4).abstain_below == 0.4  # config wins
    assert FusionSettings().abstain_below == 0.25


def test_a_missing_or_broken_weights_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found; write one with `sensorium eval calibrate"):
        FusionSettings(weights_file=tmp_path / "none.json")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(UserError, match=r"broken\.json is unreadable"):
        FusionSettings(weights_file=broken)


def test_a_kind_with_few_samples_gets_no_prior() -> None:
    records = [*specialists(40), record(99, "count", "2", {"colours": ("red", 0.5)})]
    prior = calibrate(records, min_kind_samples=10).weights.prior
    assert set(prior) == {"animal", "colour"}  # one counting question is no prior
    assert prior["animal"] == {"dog": 1.0}


def test_fitting_on_the_train_split_writes_what_the_held_out_split_scores() -> None:
    records = specialists(200)
    result = calibrate(records, holdout=0.3, min_kind_samples=10, fit_on="train")
    held_out = held_out_split(records, 0.3)
    assert result.held_out is not None and result.weights.fitted_on["split"] == "train"
    assert result.weights.fitted_on["samples"] == len(records) - len(held_out)
    # The file written scores on the held-out samples exactly what the report said.
    checked = check_weights(held_out, result.weights)
    assert checked.fused_fitted == result.held_out.fused_fitted
    assert checked.ece_fitted == result.held_out.ece_fitted
    everything = calibrate(records, holdout=0.3, min_kind_samples=10)
    assert everything.weights.fitted_on["samples"] == len(records)


def test_checking_weights_scores_them_beside_the_experts_and_the_prior() -> None:
    weights = calibrate(specialists(), min_kind_samples=10).weights
    # New data where the noise expert happens to be right.
    fresh = [
        record(n, "colour", "red", {"colours": ("red", 0.6), "noise": ("red", 0.95)})
        for n in range(100, 120)
    ]
    checked = check_weights(fresh, weights)
    assert checked.samples == 20 and checked.fused_fitted == 1.0
    assert checked.prior == 1.0 and checked.experts["noise"] == 1.0
    # Its map learned that it is always wrong; here it is right: the check shows the fit
    # does not transfer to this data.
    assert checked.ece_fitted["noise"] > 0.9 > 0.1 > checked.ece_as_run["noise"]
    with pytest.raises(UserError, match="no scored samples"):
        check_weights([], weights)


def test_the_lite_profile_ships_a_fit_for_its_own_experts(tmp_path: Path) -> None:
    lite = Settings().fusion
    experts = {name for names in ROLES["lite"].values() for name in names}
    assert lite.calibration and lite.prior and lite.fused_calibration
    assert {"answer_question", "colours"} <= set(lite.calibration) <= experts
    assert set(lite.weights) <= experts  # a renamed expert must not lose its map silently
    assert lite.calibrated("answer_question", 0.99) < 0.99  # it claims more than it is right
    assert Settings(profile="standard").fusion.calibration == {}  # none ships for standard
    assert Settings(fusion={"builtin_fit": False}).fusion.calibration == {}  # type: ignore[arg-type]
    own = tmp_path / "weights.json"
    own.write_text('{"weights": {"classify": 2.0}}')
    replaced = Settings(fusion={"weights_file": str(own)}).fusion  # type: ignore[arg-type]
    assert replaced.calibration == {} and replaced.weights == {"classify": 2.0}
    configured = Settings(fusion={"abstain_below": 0.3, "weights": {"colours": 0.5}})  # type: ignore[arg-type]
    assert configured.fusion.abstain_below == 0.3 and configured.fusion.weight("colours") == 0.5
    assert configured.fusion.calibration == lite.calibration
    assert Settings.model_validate(configured.model_dump()).fusion == configured.fusion
