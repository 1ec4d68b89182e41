"""Learned fusion: fitted weights never lose to the best single expert where they were fitted,
per-kind weights where a kind has data, and weights files that configuration can point to."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensorium import FusionSettings, Settings, UserError
from sensorium.evals import calibrate
from sensorium.evals.calibrate import replay
from sensorium.evals.results import ExpertAnswer, SampleRecord


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
    assert result.fitted.best_single == "prior"  # one answer per kind here: a perfect prior
    assert result.fitted.fused_fitted == 1.0
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
