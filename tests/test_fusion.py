"""Decision-level fusion and the VQA answer normalisation it groups answers by.

Every number below is worked out by hand from the linear pool: a group's support is the sum of
weight x confidence over its voters, divided by the total weight of all voters.
"""

from __future__ import annotations

import random

import pytest

from sensorium.graphs import Decision, FusionSettings, fuse, fuse_by_image, normalise_answer
from sensorium.tools import Evidence

SHA_A = "a" * 64
SHA_B = "b" * 64


def said(expert: str, answer: str, confidence: float, image: str | None = None) -> Evidence:
    return Evidence(expert=expert, answer=answer, confidence=confidence, image=image)


def failed(expert: str, error: str = "RuntimeError: model missing") -> Evidence:
    return Evidence(expert=expert, error=error)


# Normalisation: the official VQA evaluation rules.


@pytest.mark.parametrize(
    ("answer", "normalised"),
    [
        ("Two", "2"),
        ("two", "2"),
        ("ten", "10"),
        ("eleven", "eleven"),  # the official map stops at ten
        ("none", "0"),
        ("zero", "0"),
        ("two dogs", "2 dogs"),
        ("a dog.", "dog"),
        ("an apple", "apple"),
        ("The Cat", "cat"),
        ("the", ""),
        ("dont", "don't"),
        ("Dont", "don't"),
        ("don't", "don't"),
        ("isnt", "isn't"),
        ("its", "its"),  # not in the contraction map
        ("yes!", "yes"),
        ("Yes.", "yes"),
        ("What?", "what"),
        ("yes, it is", "yes it is"),
        ("black-white", "black white"),
        ("black - white", "black white"),
        ("black/white", "black white"),
        ("(red)", "red"),
        ("1,000", "1000"),
        ("10,000 people", "10000 people"),
        ("3.5", "3.5"),
        ("3.", "3"),
        ("  red\tand\nwhite  ", "red and white"),
        ("", ""),
    ],
)
def test_normalise_answer_follows_the_vqa_rules(answer: str, normalised: str) -> None:
    assert normalise_answer(answer) == normalised


def test_a_digit_comma_deletes_other_punctuation_like_the_official_script() -> None:
    # The official script drops (rather than spaces) every mark once a digit comma appears.
    assert normalise_answer("1,000 black-white") == "1000 blackwhite"


# Fusion.


def test_unanimous_experts() -> None:
    decision = fuse([said("classify", "cat", 0.9), said("answer_question", "cat", 0.7)])
    assert decision.answer == "cat"
    assert not decision.abstained
    assert decision.confidence == pytest.approx((0.9 + 0.7) / 2)
    assert decision.agreement == pytest.approx(1.0)
    assert decision.best_guess == "cat"
    assert decision.runner_up is None
    assert decision.runner_up_confidence == 0.0
    assert decision.reason == "2 of 2 experts agree"
    assert [(v.expert, v.normalised, v.weight) for v in decision.votes] == [
        ("classify", "cat", 1.0),
        ("answer_question", "cat", 1.0),
    ]


def test_conflict_goes_to_the_more_confident_expert() -> None:
    decision = fuse([said("classify", "cat", 0.9), said("answer_question", "dog", 0.4)])
    assert decision.answer == "cat"
    assert decision.confidence == pytest.approx(0.9 / 2)
    assert decision.agreement == pytest.approx(0.5)
    assert decision.runner_up == "dog"
    assert decision.runner_up_confidence == pytest.approx(0.4 / 2)
    assert decision.reason == "1 of 2 experts agree"


def test_weights_can_flip_the_decision() -> None:
    evidence = [said("classify", "cat", 0.8), said("answer_question", "dog", 0.6)]

    plain = fuse(evidence)
    assert (plain.answer, plain.runner_up) == ("cat", "dog")
    assert plain.confidence == pytest.approx(0.4)

    trusted = fuse(evidence, FusionSettings(weights={"answer_question": 3.0}))
    # total weight 4: dog 3 x 0.6 / 4 = 0.45, cat 1 x 0.8 / 4 = 0.2
    assert trusted.answer == "dog"
    assert trusted.confidence == pytest.approx(0.45)
    assert trusted.agreement == pytest.approx(0.75)
    assert trusted.runner_up == "cat"
    assert trusted.runner_up_confidence == pytest.approx(0.2)
    assert [v.weight for v in trusted.votes] == [1.0, 3.0]


def test_default_weight_applies_to_experts_without_one() -> None:
    evidence = [said("classify", "cat", 0.8), said("answer_question", "dog", 0.6)]
    settings = FusionSettings(weights={"classify": 1.0}, default_weight=2.0)
    decision = fuse(evidence, settings)
    # total weight 3: dog 2 x 0.6 / 3 = 0.4, cat 0.8 / 3
    assert decision.answer == "dog"
    assert decision.confidence == pytest.approx(0.4)
    assert decision.runner_up_confidence == pytest.approx(0.8 / 3)


def test_zero_weight_expert_casts_no_vote() -> None:
    evidence = [said("classify", "cat", 0.8), said("answer_question", "dog", 0.9)]
    decision = fuse(evidence, FusionSettings(weights={"answer_question": 0.0}))
    assert decision.answer == "cat"
    assert decision.confidence == pytest.approx(0.8)
    assert [v.expert for v in decision.votes] == ["classify"]


def test_surface_forms_of_one_answer_are_grouped() -> None:
    evidence = [
        said("answer_question", "Two", 0.6),
        said("classify", "2", 0.5),
        said("caption", "three", 0.9),
    ]
    decision = fuse(evidence)
    # "Two" and "2" pool: (0.6 + 0.5) / 3 beats "three" at 0.9 / 3.
    assert decision.answer == "Two"  # shown as its most confident voter wrote it
    assert decision.confidence == pytest.approx(1.1 / 3)
    assert decision.agreement == pytest.approx(2 / 3)
    assert decision.runner_up == "three"
    assert decision.runner_up_confidence == pytest.approx(0.3)
    assert [v.normalised for v in decision.votes] == ["2", "2", "3"]
    assert decision.reason == "2 of 3 experts agree"


def test_grouped_answer_is_shown_as_the_most_confident_voter_wrote_it() -> None:
    first = fuse([said("a", "a dog.", 0.4), said("b", "Dog", 0.8), said("c", "the dog", 0.6)])
    assert first.answer == "Dog"
    second = fuse([said("b", "Dog", 0.8), said("a", "a dog.", 0.4)])
    assert second.answer == "Dog"


def test_agreement_is_the_weight_share_behind_the_answer() -> None:
    evidence = [
        said("classify", "red", 0.5),
        said("colours", "Red", 0.9),
        said("answer_question", "blue", 0.8),
    ]
    decision = fuse(evidence, FusionSettings(weights={"classify": 2.0}))
    # total weight 4: red (2 x 0.5 + 0.9) / 4 = 0.475 with weight 3 of 4; blue 0.8 / 4
    assert decision.answer == "Red"
    assert decision.confidence == pytest.approx(0.475)
    assert decision.agreement == pytest.approx(0.75)
    assert decision.runner_up_confidence == pytest.approx(0.2)


def test_runner_up_is_the_second_best_group_by_support_not_by_votes() -> None:
    evidence = [
        said("a", "cat", 0.9),
        said("b", "dog", 0.7),
        said("c", "fox", 0.4),
        said("d", "fox", 0.2),
    ]
    decision = fuse(evidence, FusionSettings(abstain_below=0.2))
    # total weight 4: cat 0.225, dog 0.175, fox (0.4 + 0.2) / 4 = 0.15 despite two voters
    assert decision.answer == "cat"
    assert decision.confidence == pytest.approx(0.225)
    assert decision.agreement == pytest.approx(0.25)
    assert decision.runner_up == "dog"
    assert decision.runner_up_confidence == pytest.approx(0.175)


def test_ties_do_not_depend_on_the_order_experts_finished() -> None:
    evidence = [said("a", "cat", 0.5), said("b", "dog", 0.5)]
    forwards = fuse(evidence, FusionSettings(abstain_below=0.0))
    backwards = fuse(list(reversed(evidence)), FusionSettings(abstain_below=0.0))
    assert forwards.answer == backwards.answer
    assert forwards.runner_up == backwards.runner_up


def test_abstains_below_the_threshold_but_keeps_the_best_guess() -> None:
    decision = fuse([said("classify", "cat", 0.3), said("answer_question", "dog", 0.25)])
    # cat 0.3 / 2 = 0.15 < 0.25
    assert decision.abstained
    assert decision.answer is None
    assert decision.best_guess == "cat"
    assert decision.confidence == pytest.approx(0.15)
    assert decision.runner_up == "dog"
    assert decision.runner_up_confidence == pytest.approx(0.125)
    assert decision.reason == "confidence 0.15 is below the abstention threshold 0.25"
    assert len(decision.votes) == 2


def test_threshold_is_configurable_and_inclusive() -> None:
    evidence = [said("classify", "cat", 0.3), said("answer_question", "dog", 0.25)]
    assert fuse(evidence, FusionSettings(abstain_below=0.1)).answer == "cat"
    at_threshold = fuse([said("classify", "cat", 0.5)], FusionSettings(abstain_below=0.5))
    assert not at_threshold.abstained
    assert at_threshold.answer == "cat"
    cautious = fuse([said("classify", "cat", 0.5)], FusionSettings(abstain_below=0.75))
    assert cautious.abstained
    assert cautious.reason == "confidence 0.50 is below the abstention threshold 0.75"


def test_failed_evidence_casts_no_vote() -> None:
    evidence = [
        said("classify", "cat", 0.6),
        failed("caption"),
        Evidence(expert="answer_question", answer="dog", confidence=0.9, error="TimeoutError: x"),
    ]
    decision = fuse(evidence)
    assert [v.expert for v in decision.votes] == ["classify"]
    assert decision.answer == "cat"
    assert decision.confidence == pytest.approx(0.6)  # the failed experts add no weight
    assert decision.agreement == pytest.approx(1.0)
    assert decision.runner_up is None


@pytest.mark.parametrize("empty", ["", "   ", "the", "?!"])
def test_empty_answers_cast_no_vote(empty: str) -> None:
    decision = fuse([said("classify", "cat", 0.6), said("caption", empty, 0.9)])
    assert [v.expert for v in decision.votes] == ["classify"]
    assert decision.confidence == pytest.approx(0.6)


def test_no_evidence_at_all_abstains() -> None:
    decision = fuse([])
    assert isinstance(decision, Decision)
    assert decision.abstained
    assert decision.answer is None
    assert decision.best_guess is None
    assert decision.confidence == 0.0
    assert decision.votes == []
    assert decision.reason == "no expert was asked"


def test_only_failures_abstain_naming_the_failed_experts() -> None:
    decision = fuse([failed("caption"), failed("answer_question")])
    assert decision.abstained
    assert decision.answer is None
    assert decision.reason == "no expert answered (caption, answer_question failed)"


def test_decision_carries_the_image_it_is_about() -> None:
    decision = fuse([said("classify", "cat", 0.9, image=SHA_A)])
    assert decision.image == SHA_A
    assert fuse([failed("caption")]).image is None


def test_fuse_by_image_decides_each_image_in_order() -> None:
    evidence = [
        said("classify", "dog", 0.8, image=SHA_B),
        said("classify", "cat", 0.7, image=SHA_A),
        said("answer_question", "Dog", 0.6, image=SHA_B),
        Evidence(expert="answer_question", error="RuntimeError: boom", image=SHA_A),
    ]
    decisions = fuse_by_image(evidence)
    assert [d.image for d in decisions] == [SHA_B, SHA_A]
    assert [d.answer for d in decisions] == ["dog", "cat"]
    assert decisions[0].confidence == pytest.approx((0.8 + 0.6) / 2)
    assert decisions[1].confidence == pytest.approx(0.7)
    assert [v.expert for v in decisions[1].votes] == ["classify"]


def test_fuse_by_image_passes_settings_and_handles_no_evidence() -> None:
    evidence = [said("classify", "dog", 0.4, image=SHA_A)]
    assert fuse_by_image(evidence, FusionSettings(abstain_below=0.5))[0].abstained
    assert fuse_by_image([]) == []


def test_decision_is_never_more_confident_than_its_most_confident_voter() -> None:
    rng = random.Random(7)
    answers = ["cat", "Cat", "a cat", "egyptian cat", "tabby", "dog", "two", "2", "red", "dark red"]
    experts = ["classify", "caption", "colours", "answer_question", "plugin"]
    for _ in range(300):
        evidence = [
            said(expert, rng.choice(answers), rng.random())
            for expert in rng.sample(experts, rng.randint(1, len(experts)))
        ]
        weights = {expert: rng.uniform(0.0, 5.0) for expert in experts if rng.random() < 0.5}
        decision = fuse(evidence, FusionSettings(weights=weights, abstain_below=0.0))
        if not decision.votes:
            continue
        assert decision.confidence <= max(v.confidence for v in decision.votes) + 1e-12
        assert decision.runner_up_confidence <= decision.confidence + 1e-12
        assert decision.more_specific_confidence <= decision.confidence + 1e-12
        assert 0.0 < decision.agreement <= 1.0 + 1e-12
        assert decision.answer is not None


def random_turns(seed: int, count: int = 300) -> list[tuple[list[Evidence], str]]:
    rng = random.Random(seed)
    answers = ["cat", "egyptian cat", "dog", "yes", "no", "2", "two", "red", "white", "circle"]
    experts = ["classify", "caption", "colours", "answer_question", "plugin"]
    kinds = ["yes_no", "count", "colour", "shape", "what", "animal", "other"]
    return [
        (
            [
                said(expert, rng.choice(answers), rng.choice([0.0, 1.0, rng.random()]))
                for expert in rng.sample(experts, rng.randint(1, len(experts)))
            ],
            rng.choice(kinds),
        )
        for _ in range(count)
    ]


def fit_written_by_calibrate() -> FusionSettings:
    """A fit `eval calibrate` writes, from records where the experts are mostly wrong."""
    from sensorium.evals.calibrate import calibrate
    from sensorium.evals.results import ExpertAnswer, SampleRecord

    rng = random.Random(3)
    records = []
    for n in range(300):
        truth = rng.choice(["yes", "no"])
        experts = {
            name: ExpertAnswer(answer=said, confidence=rng.random(), score=float(said == truth))
            for name in ("answer_question", "classify")
            for said in [rng.choice(["yes", "no"])]
        }
        records.append(
            SampleRecord(
                key=f"k:{n}", id=f"s{n}", task="vqa", kind="yes_no", expected=[truth],
                experts=experts, answer_metric="answer_match",
            )
        )  # fmt: skip
    weights = calibrate(records, min_kind_samples=20).weights
    return FusionSettings.model_validate(
        weights.model_dump(exclude={"fitted_on"}, exclude_none=True)
    )


@pytest.mark.parametrize("fit", ["shipped", "written by eval calibrate"])
def test_a_fitted_decision_is_never_surer_than_its_surest_calibrated_expert(fit: str) -> None:
    from sensorium.graphs.fusion import CONFIDENCE_CEILING, CONFIDENCE_FLOOR

    settings = (
        FusionSettings().for_profile("lite") if fit == "shipped" else fit_written_by_calibrate()
    )
    assert settings.fused_calibration is not None  # the fit's maps are loaded
    settings = settings.model_copy(update={"abstain_below": 0.0})
    for evidence, kind in random_turns(11):
        decision = fuse(evidence, settings, kind)
        supporters = [v.confidence for v in decision.votes if v.supports_answer]
        # (a decision says at least the floor, even when its experts are nearly always wrong)
        bound = max([*supporters, CONFIDENCE_FLOOR])
        assert decision.confidence <= bound + 1e-12, (evidence, kind, decision)
        assert CONFIDENCE_FLOOR <= decision.confidence <= CONFIDENCE_CEILING
        assert all(v.confidence <= CONFIDENCE_CEILING for v in decision.votes)
        assert f"{decision.confidence:.0%}" not in ("0%", "100%")


# Answers at different specificity: a more specific answer supports its general form.


def test_a_more_specific_answer_supports_its_general_form() -> None:
    decision = fuse([said("classify", "cat", 0.96), said("answer_question", "Egyptian cat", 1.0)])
    # "cat" is backed by both experts: (0.96 + 0.99) / 2 (no expert is taken at 100%);
    # "egyptian cat" by one: 0.99 / 2.
    assert decision.answer == "cat"
    assert decision.confidence == pytest.approx(0.975)
    assert decision.agreement == pytest.approx(1.0)
    assert decision.more_specific == "Egyptian cat"
    assert decision.more_specific_confidence == pytest.approx(0.495)
    assert decision.runner_up is None  # a more specific reading is not a competing answer
    assert decision.runner_up_confidence == 0.0
    assert [(v.expert, v.supports_answer) for v in decision.votes] == [
        ("classify", True),
        ("answer_question", True),
    ]
    assert decision.reason == "2 of 2 experts agree, 1 more specifically"


def test_a_modifier_makes_an_answer_more_specific() -> None:
    decision = fuse([said("a", "red car", 0.7), said("b", "a car", 0.6)])
    assert (decision.answer, decision.more_specific) == ("a car", "red car")
    assert decision.confidence == pytest.approx(0.65)


def test_a_chain_of_modifiers_supports_every_general_form() -> None:
    decision = fuse(
        [said("a", "small red car", 0.9), said("b", "red car", 0.6), said("c", "car", 0.3)]
    )
    assert decision.answer == "car"
    assert decision.confidence == pytest.approx(1.8 / 3)
    assert decision.more_specific == "red car"  # backed by "small red car" too
    assert decision.more_specific_confidence == pytest.approx(1.5 / 3)


def test_imagenet_names_support_their_everyday_word() -> None:
    tabby = fuse([said("classify", "cat", 0.6), said("answer_question", "tabby", 0.7)])
    assert (tabby.answer, tabby.confidence) == ("cat", pytest.approx(0.65))
    retriever = fuse([said("a", "golden retriever", 0.8), said("b", "dog", 0.5)])
    assert (retriever.answer, retriever.more_specific) == ("dog", "golden retriever")


def test_the_specific_answer_with_the_most_support_backs_its_general_form() -> None:
    evidence = [
        said("answer_question", "Egyptian cat", 0.9),
        said("vqa", "dog", 0.8),
        said("classify", "cat", 0.3),
    ]
    decision = fuse(evidence)
    # Alone, "egyptian cat" (0.9 / 3) leads "dog" (0.8 / 3) and "cat" (0.3 / 3); "cat" is
    # backed by both cat answers: (0.9 + 0.3) / 3.
    assert decision.answer == "cat"
    assert decision.confidence == pytest.approx(0.4)
    assert decision.agreement == pytest.approx(2 / 3)
    assert decision.runner_up == "dog"
    assert decision.runner_up_confidence == pytest.approx(0.8 / 3)
    assert decision.more_specific == "Egyptian cat"
    assert decision.more_specific_confidence == pytest.approx(0.3)
    assert [v.supports_answer for v in decision.votes] == [True, False, True]
    assert decision.reason == "2 of 3 experts agree, 1 more specifically"


def test_the_general_form_wins_even_when_most_experts_were_more_specific() -> None:
    evidence = [
        said("a", "egyptian cat", 0.9),
        said("b", "egyptian cat", 0.8),
        said("c", "cat", 0.3),
    ]
    decision = fuse(evidence)
    # cat (0.9 + 0.8 + 0.3) / 3 is better supported than egyptian cat (0.9 + 0.8) / 3.
    assert (decision.answer, decision.more_specific) == ("cat", "egyptian cat")
    assert (decision.confidence, decision.more_specific_confidence) == pytest.approx(
        (2 / 3, 1.7 / 3)
    )
    assert decision.reason == "3 of 3 experts agree, 2 more specifically"


def test_a_specific_answer_as_well_supported_as_its_general_form_is_named() -> None:
    decision = fuse([said("a", "cat", 0.0), said("b", "egyptian cat", 0.8)])
    assert decision.answer == "egyptian cat"
    assert decision.confidence == pytest.approx(0.4)
    assert (decision.runner_up, decision.more_specific) == (None, None)


def test_weights_count_toward_the_general_form() -> None:
    evidence = [said("a", "egyptian cat", 0.8), said("b", "cat", 0.5), said("c", "dog", 0.9)]
    decision = fuse(evidence, FusionSettings(weights={"a": 2.0}))
    # total weight 4: cat (2 x 0.8 + 0.5) / 4 with weight 3 of 4; dog 0.9 / 4
    assert decision.answer == "cat"
    assert decision.confidence == pytest.approx(2.1 / 4)
    assert decision.agreement == pytest.approx(0.75)
    assert decision.runner_up_confidence == pytest.approx(0.9 / 4)


def test_a_weak_merged_answer_still_abstains() -> None:
    decision = fuse([said("a", "cat", 0.2), said("b", "egyptian cat", 0.2)])
    assert decision.abstained
    assert decision.answer is None
    assert decision.best_guess == "cat"
    assert decision.confidence == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("specific", "general"),
    [
        ("dog", "cat"),  # unrelated
        ("not red", "red"),  # a negation is no modifier
        ("no cat", "cat"),
        ("black and white", "white"),  # a conjunction: both colours, not one
        ("black-white", "white"),  # two colour names together are a blend
        ("cat on a mat", "mat"),  # the head of a phrase with a preposition comes first
        ("man riding horse", "horse"),  # a clause, not modifiers
        ("12", "2"),  # numbers
        ("2 cats", "cats"),
        ("definitely yes", "yes"),  # yes/no never generalise
        ("guinea pig", "pig"),  # ImageNet's table decides for the animals it names
        ("sea lion", "lion"),
        ("hot dog", "dog"),  # an ImageNet object is no animal
        ("teddy bear", "bear"),
    ],
)
def test_answers_that_do_not_imply_each_other_split_the_vote(specific: str, general: str) -> None:
    decision = fuse([said("a", specific, 0.6), said("b", general, 0.5)])
    assert decision.answer == specific
    assert decision.confidence == pytest.approx(0.3)
    assert decision.runner_up == general
    assert decision.more_specific is None
    assert [v.supports_answer for v in decision.votes] == [True, False]


@pytest.mark.parametrize("kind", ["yes_no", "count"])
def test_closed_questions_never_merge_answers(kind: str) -> None:
    decision = fuse([said("a", "red car", 0.6), said("b", "car", 0.5)], kind=kind)
    assert (decision.answer, decision.runner_up) == ("red car", "car")
    assert decision.confidence == pytest.approx(0.3)


def test_shades_of_a_colour_support_the_colour() -> None:
    decision = fuse([said("colours", "red", 0.5), said("answer_question", "dark red", 0.6)])
    assert (decision.answer, decision.more_specific) == ("red", "dark red")
