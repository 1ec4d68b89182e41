"""Evaluation metrics, each checked against a value worked out by hand in the comments."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_eval_suite import write_suite

from sensorium import Settings
from sensorium.evals import SampleRecord, load_suite
from sensorium.evals.metrics import (
    NO_TOOL,
    answer_match,
    bleu4,
    caption_tokens,
    cider_d,
    cider_d_scores,
    expected_calibration_error,
    percentile,
    recall_at_k,
    reciprocal_rank,
    reliability_bins,
    rouge_l,
    routing_metrics,
)
from sensorium.evals.metrics import vqa_accuracy as vqa
from sensorium.evals.results import ExpertAnswer
from sensorium.evals.scoring import summarise

# VQA accuracy


def ten(matching: int, answer: str = "2") -> list[str]:
    """Ten human answers, `matching` of them equal to `answer`, the others "3"."""
    return [answer] * matching + ["3"] * (10 - matching)


@pytest.mark.parametrize(
    ("matching", "expected"),
    [
        (0, 0.0),
        # 9 subsets drop a non-match: 1 match -> 1/3; 1 subset drops it: 0 -> (9/3 + 0)/10
        (1, 0.3),
        # 8 subsets keep both matches -> 2/3; 2 keep one -> 1/3: (8*2/3 + 2*1/3)/10 = 6/10
        (2, 0.6),
        # 7 subsets keep all three -> 1; 3 keep two -> 2/3: (7 + 3*2/3)/10 = 9/10
        (3, 0.9),
        # every subset keeps at least 3 matches -> 1
        (4, 1.0),
        (10, 1.0),
    ],
)
def test_vqa_leave_one_out(matching: int, expected: float) -> None:
    assert vqa("2", ten(matching)) == pytest.approx(expected)


def test_vqa_normalises_the_prediction_always() -> None:
    # The prediction loses punctuation, case, number words and articles, whatever the answers.
    assert vqa("Two.", ten(3)) == pytest.approx(0.9)  # "two" -> "2": as the 3-match case
    assert vqa("one", ["1"] * 10) == 1.0  # identical answers, but the prediction normalises
    assert vqa("A Cat", ["cat"] * 10) == 1.0
    assert vqa("dont", ["don't"] * 10) == 1.0  # a contraction restored


def test_vqa_normalises_human_answers_only_by_punctuation_and_only_when_they_differ() -> None:
    # All ten the same: compared as given, so a capital letter or a number word never matches.
    assert vqa("yes", ["Yes"] * 10) == 0.0
    assert vqa("1", ["one"] * 10) == 0.0
    # Not all the same: punctuation goes ("yes." -> "yes"), but case and number words stay.
    assert vqa("yes", ["yes."] * 3 + ["no"] * 7) == pytest.approx(0.9)
    # ... and a mark between words or at the end becomes a space, never stripped: "yes " != "yes"
    assert vqa("yes", ["yes!"] * 3 + ["no"] * 7) == 0.0
    assert vqa("yes", ["Yes"] * 3 + ["no"] * 7) == 0.0
    assert vqa("1", ["one"] * 3 + ["2"] * 7) == 0.0
    # "black-white": a mark between letters becomes a space; next to a space it goes.
    assert vqa("black white", ["black-white"] * 4 + ["red"] * 6) == 1.0
    assert vqa("black white", ["black-white"] * 10) == 0.0  # identical: left as it is


def test_vqa_leave_one_out_for_any_number_of_answers() -> None:
    assert vqa("cat", ["cat"]) == 0.0  # one answer: the one left out is the only match
    # two equal answers: each subset keeps one match -> 1/3
    assert vqa("cat", ["cat", "cat"]) == pytest.approx(1 / 3)
    # five acceptable answers, one matching: 4 subsets keep it (1/3), 1 does not: 4/15
    assert vqa("suit", ["spacesuit", "space suit", "suit", "flight suit", "orange"]) == (
        pytest.approx(4 / 15)
    )
    assert vqa("2", ["2"] * 9) == 1.0  # every subset keeps 8 matches


def test_vqa_counts_at_most_thirty_two_periods_like_the_official_script() -> None:
    # vqaEval.py passes re.UNICODE (32) as re.sub's count: the 33rd period stays.
    assert vqa("a" + "." * 33, ["a."] * 4 + ["b"] * 6) == 0.0
    assert vqa("x" + "." * 32, ["x"] * 10) == 1.0


def test_vqa_no_prediction_and_no_answers() -> None:
    assert vqa(None, ["cat"] * 10) == 0.0
    assert vqa("", [""] * 10) == 1.0  # the official script compares strings, empty ones too
    with pytest.raises(ValueError, match="at least one answer"):
        vqa("cat", [])


def test_answer_match_is_the_lenient_score_for_acceptable_answers() -> None:
    assert answer_match("Two", ["2"]) == 1.0
    assert answer_match("a cat", ["The Cat."]) == 1.0
    assert answer_match("suit", ["spacesuit", "space suit", "suit"]) == 1.0
    assert answer_match("bird", ["cat", "dog"]) == 0.0
    assert answer_match(None, ["cat"]) == 0.0
    assert answer_match("the", ["the"]) == 0.0  # normalises to nothing: no answer
    with pytest.raises(ValueError, match="at least one answer"):
        answer_match("cat", [])


# Caption tokens


def test_caption_tokens() -> None:
    assert caption_tokens("A man's dog, running-fast!\tOK") == [
        "a",
        "man's",
        "dog",
        "running",
        "fast",
        "ok",
    ]
    assert caption_tokens(" ... ") == []


# BLEU-4


def test_bleu4_by_hand_with_brevity_penalty() -> None:
    candidates = ["a cat sat on the mat", "the the the"]
    references = [["a cat sat on the red mat"], ["the dog runs fast", "a dog is running fast now"]]
    # Candidate 1 (6 tokens) against "a cat sat on the red mat" (7 tokens):
    #   1-grams 6/6; 2-grams 4/5 ("the mat" missing); 3-grams 3/4 ("on the mat" missing);
    #   4-grams 2/3 ("sat on the mat" missing).
    # Candidate 2 (3 tokens): "the" clipped to 1 (at most once in a reference) -> 1/3;
    #   "the the" 0/2; "the the the" 0/1; no 4-grams. Closest reference length: 4.
    # Corpus: p1 = 7/9, p2 = 4/7, p3 = 3/5, p4 = 2/3; product = 8/45.
    # c = 6 + 3 = 9, r = 7 + 4 = 11 -> BP = exp(1 - 11/9) = exp(-2/9).
    expected = math.exp(-2 / 9) * (8 / 45) ** 0.25
    assert bleu4(candidates, references) == pytest.approx(expected)


def test_bleu4_closest_reference_length_tie_takes_the_shorter() -> None:
    # 5 tokens, references of 4 and 6 tokens: tie -> r = 4 < c = 5 -> BP = 1; every n-gram
    # occurs in the longer reference -> all precisions 1. (Taking r = 6 would give
    # exp(1 - 6/5) < 1.)
    assert bleu4(["a b c d e"], [["a b c d", "a b c d e f"]]) == pytest.approx(1.0)


def test_bleu4_zero_precision_and_edges() -> None:
    assert bleu4(["a b c"], [["a b c"]]) == 0.0  # no 4-grams at all: p4 = 0/0 -> 0
    assert bleu4(["w x y z"], [["a b c d"]]) == 0.0
    assert bleu4([], []) == 0.0
    with pytest.raises(ValueError):
        bleu4(["a"], [])
    with pytest.raises(ValueError):
        bleu4(["a"], [[]])


# ROUGE-L


def test_rouge_l_by_hand() -> None:
    candidate = "a cat sat on the mat"  # 6 tokens
    # "the cat sat on a mat": LCS "cat sat on mat" = 4 -> P = 4/6, R = 4/6
    # "cat on mat": LCS 3 -> P = 3/6, R = 3/3 = 1
    # max P = 2/3, max R = 1: F = 2.44 * 2/3 * 1 / (1 + 1.44 * 2/3) = (4.88/3) / 1.96
    expected = (1 + 1.2**2) * (2 / 3) / (1 + 1.2**2 * (2 / 3))
    assert expected == pytest.approx(4.88 / 5.88)
    assert rouge_l(candidate, ["the cat sat on a mat", "cat on mat"]) == pytest.approx(expected)


def test_rouge_l_edges() -> None:
    assert rouge_l("a cat", ["a cat"]) == pytest.approx(1.0)
    # P = R: F = (1 + b^2) P^2 / ((1 + b^2) P) = P = 1/2
    assert rouge_l("a dog", ["a cat"]) == pytest.approx(0.5)
    assert rouge_l("dog", ["cat"]) == 0.0
    assert rouge_l("", ["cat"]) == 0.0
    with pytest.raises(ValueError):
        rouge_l("cat", [])


# CIDEr-D


def test_cider_d_by_hand_two_images() -> None:
    candidates = ["a dog runs", "a cat"]
    references = [["a dog", "dog runs"], ["a cat sits"]]
    # N = 2. df("a") = 2 (both reference sets) -> weight log 2 - log 2 = 0; every other
    # n-gram has df 1 or 0 -> weight L = log 2. Length penalty p = exp(-1/72) everywhere
    # (length differences are all +-1, sigma = 6).
    p = math.exp(-1 / 72)
    # Image 1, candidate 1-grams {a: 0, dog: L, runs: L} (norm L*sqrt2),
    #   2-grams {a dog: L, dog runs: L} (norm L*sqrt2), 3-grams {a dog runs: L}, no 4-grams.
    #   vs "a dog": n=1 L^2 / (L*sqrt2 * L) = 1/sqrt2; n=2 1/sqrt2; n=3 0 (empty reference)
    #   vs "dog runs": n=1 2L^2 / (L*sqrt2 * L*sqrt2) = 1; n=2 L^2 / (L*sqrt2 * L) = 1/sqrt2
    #   -> 10 * p * (1/sqrt2 + 1/sqrt2 + 1 + 1/sqrt2) / 4 n-grams / 2 references
    image_1 = 10 * p * (1 + 3 / math.sqrt(2)) / 8
    # Image 2, "a cat" vs "a cat sits": n=1 {a: 0, cat: L} vs {a: 0, cat: L, sits: L}
    #   -> L^2 / (L * L*sqrt2) = 1/sqrt2; n=2 {a cat: L} vs {a cat: L, cat sits: L} -> 1/sqrt2
    #   -> 10 * p * (2/sqrt2) / 4
    image_2 = 10 * p * math.sqrt(2) / 4
    assert cider_d_scores(candidates, references) == pytest.approx([image_1, image_2])
    assert cider_d(candidates, references) == pytest.approx((image_1 + image_2) / 2)
    assert image_1 == pytest.approx(3.8478, abs=1e-4)


def test_cider_d_identical_beats_unrelated() -> None:
    references = [
        ["a man riding a horse on the beach"],
        ["two dogs playing in the snow"],
        ["a plate of food on a table"],
    ]
    same = ["a man riding a horse on the beach", "two dogs playing in the snow", "x"]
    other = ["a red bus parked by the road", "a bowl of soup", "x"]
    assert cider_d_scores(same, references)[0] > cider_d_scores(other, references)[0]
    assert cider_d(same, references) > cider_d(other, references)


def test_cider_d_edges() -> None:
    assert cider_d_scores(["a cat"], [["a cat"]]) == [0.0]  # one image: log N = 0
    assert cider_d([], []) == 0.0
    assert cider_d_scores(["", "a cat"], [["a dog"], ["a cat"]])[0] == 0.0
    with pytest.raises(ValueError):
        cider_d(["a", "b"], [["a"]])
    with pytest.raises(ValueError):
        cider_d_scores(["a"], [[]])


# Retrieval


def test_recall_at_k() -> None:
    ranked = ["d", "a", "x", "b", "c"]
    assert recall_at_k(ranked, {"a", "b", "c"}, 1) == 0.0  # "d" is not relevant
    assert recall_at_k(ranked, {"a", "b", "c"}, 2) == pytest.approx(1 / 3)  # "a"
    assert recall_at_k(ranked, {"a", "b", "c"}, 4) == pytest.approx(2 / 3)  # "a", "b"
    assert recall_at_k(ranked, {"a", "b", "c"}, 50) == 1.0
    with pytest.raises(ValueError):
        recall_at_k(ranked, set(), 1)
    with pytest.raises(ValueError):
        recall_at_k(ranked, {"a"}, 0)


def test_reciprocal_rank() -> None:
    assert reciprocal_rank(["d", "a", "b"], {"a", "b"}) == pytest.approx(1 / 2)  # "a" at 2
    assert reciprocal_rank(["a"], {"a"}) == 1.0
    assert reciprocal_rank(["x", "y"], {"a"}) == 0.0
    assert reciprocal_rank([], {"a"}) == 0.0


# Routing


def test_routing_metrics_by_hand() -> None:
    metrics = routing_metrics(
        [
            ({"caption"}, {"caption"}),  # exact
            ({"caption", "colours"}, {"caption"}),
            ({"classify"}, ["classify", "retrieve"]),
            ({"answer_question"}, {"caption"}),
        ]
    )
    assert (metrics.total, metrics.exact, metrics.exact_accuracy) == (4, 1, 0.25)
    assert list(metrics.per_tool) == [
        "answer_question",
        "caption",
        "classify",
        "colours",
        "retrieve",
    ]
    caption = metrics.per_tool["caption"]
    # expected in pairs 1, 2; chosen in 1, 2, 4; both in 1, 2 -> P = 2/3, R = 2/2
    assert (caption.support, caption.predicted) == (2, 3)
    assert caption.precision == pytest.approx(2 / 3)
    assert caption.recall == 1.0
    colours = metrics.per_tool["colours"]  # expected once, never chosen -> P = 0.0 by convention
    assert (colours.precision, colours.recall, colours.support, colours.predicted) == (0, 0, 1, 0)
    retrieve = metrics.per_tool["retrieve"]  # chosen once, never expected -> R = 0.0 by convention
    assert (retrieve.precision, retrieve.recall, retrieve.support, retrieve.predicted) == (
        0,
        0,
        0,
        1,
    )
    classify = metrics.per_tool["classify"]
    assert (classify.precision, classify.recall) == (1.0, 1.0)


def test_routing_metrics_empty() -> None:
    metrics = routing_metrics([])
    assert (metrics.total, metrics.exact, metrics.exact_accuracy, metrics.per_tool) == (
        0,
        0,
        0.0,
        {},
    )


def test_routing_metrics_score_requests_that_need_no_expert() -> None:
    metrics = routing_metrics(
        [
            ([], []),  # declined, as expected: exact
            ([], ["caption"]),  # an expert ran where none should
            (["classify"], []),  # nothing ran where classify should
            ([], None),  # failed before choosing: never exact, chooses nothing
            (["colours"], ["colours"]),  # exact
        ]
    )
    assert (metrics.total, metrics.exact, metrics.exact_accuracy) == (5, 2, 0.4)
    assert list(metrics.per_tool) == [NO_TOOL, "caption", "classify", "colours"]
    none = metrics.per_tool[NO_TOOL]
    # no expert expected in pairs 1, 2, 4; none chosen in 1, 3 (4 chose nothing at all)
    # -> P = 1/2, R = 1/3
    assert (none.support, none.predicted) == (3, 2)
    assert none.precision == 0.5
    assert none.recall == pytest.approx(1 / 3)
    caption = metrics.per_tool["caption"]  # chosen once, never expected: R = 0.0, no division
    assert (caption.precision, caption.recall, caption.support, caption.predicted) == (0, 0, 0, 1)
    classify = metrics.per_tool["classify"]  # expected once, never chosen: P = 0.0
    assert (classify.precision, classify.recall, classify.support, classify.predicted) == (
        0,
        0,
        1,
        0,
    )


def test_routing_metrics_when_nothing_is_ever_expected_or_chosen() -> None:
    metrics = routing_metrics([([], []), ((), set())])
    assert (metrics.exact, metrics.exact_accuracy) == (2, 1.0)
    assert list(metrics.per_tool) == [NO_TOOL]
    none = metrics.per_tool[NO_TOOL]
    assert (none.precision, none.recall, none.support, none.predicted) == (1.0, 1.0, 2, 2)
    only_failed = routing_metrics([([], None)])
    assert (only_failed.exact_accuracy, only_failed.per_tool[NO_TOOL].precision) == (0.0, 0.0)


def test_an_agent_run_scores_each_part_on_the_rows_that_give_it(tmp_path: Path) -> None:
    rows = [
        {"id": "a1", "request": "What is the capital of France?", "expected_tools": []},
        {"id": "a2", "request": "Describe it", "expected_tools": ["caption"]},
        {"id": "a3", "request": "What animal?", "image": "chelsea.jpg", "answers": ["cat"]},
        {"id": "a4", "request": "Draw me a horse", "expected_tools": []},
    ]
    suite = load_suite(write_suite(tmp_path, rows, task="agent"))

    def record(sample: str, chosen: list[str], **fields: Any) -> SampleRecord:
        return SampleRecord(key=f"k:{sample}", id=sample, task="agent", chosen=chosen, **fields)

    records = [
        record("a1", []),  # declined as expected
        record("a2", ["caption"], fused=ExpertAnswer(answer="a cat", confidence=0.5)),
        record("a3", ["classify"], fused=ExpertAnswer(answer="cat", confidence=0.9, score=1.0)),
        record("a4", [], error="RuntimeError: boom"),  # crashed before planning: a miss
    ]
    results = summarise(suite, records, Settings(), "digest")
    # routing: a1, a2 and a4 give expected_tools (a4's [] is scored, a3's absence is not)
    assert results.counts["routing"] == 3
    assert results.metrics["routing"]["exact_match"] == pytest.approx(2 / 3)
    assert results.metrics[f"tool:{NO_TOOL}"] == {"precision": 1.0, "recall": 0.5, "support": 2.0}
    # answers: only a3 gives them; a2's caption is not an answer scored 0
    assert results.counts["fused"] == 1
    assert results.metrics["fused"]["accuracy"] == 1.0


# Percentile


def test_percentile_by_hand() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # sorted: 1, 2, 3, 4
    assert percentile(values, 50) == pytest.approx(2.5)  # h = 3 * 0.5 = 1.5 -> 2 + 0.5
    assert percentile(values, 25) == pytest.approx(1.75)  # h = 0.75 -> 1 + 0.75
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 95) == 7.0


@pytest.mark.parametrize("q", [0, 1, 10, 33.3, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    values = [0.12, 3.5, 0.7, 2.2, 9.1, 0.7, 4.4, 1.0, 6.25, 0.05, 8.0]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_errors() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


# Calibration


def test_reliability_bins_and_ece_by_hand() -> None:
    confidences = [0.1, 0.2, 0.6, 0.9, 1.0]
    correct = [0.0, 1.0, 0.5, 1.0, 0.0]
    table = reliability_bins(confidences, correct, bins=4)
    # bin = int(4c): 0.1 -> 0, 0.2 -> 0, 0.6 -> 2, 0.9 -> 3, 1.0 -> 4 -> last bin (3)
    assert [(b.lower, b.upper, b.count) for b in table] == [
        (0.0, 0.25, 2),
        (0.25, 0.5, 0),
        (0.5, 0.75, 1),
        (0.75, 1.0, 2),
    ]
    assert [b.mean_confidence for b in table] == pytest.approx([0.15, 0.0, 0.6, 0.95])
    assert [b.accuracy for b in table] == pytest.approx([0.5, 0.0, 0.5, 0.5])
    # ECE = 2/5 * |0.5 - 0.15| + 1/5 * |0.5 - 0.6| + 2/5 * |0.5 - 0.95|
    #     = 0.14 + 0.02 + 0.18 = 0.34
    ece = expected_calibration_error(confidences, correct, bins=4)
    assert ece == pytest.approx(0.34)


def test_calibration_edges() -> None:
    assert expected_calibration_error([], []) == 0.0
    assert len(reliability_bins([], [])) == 10
    assert expected_calibration_error([1.0, 1.0], [1.0, 1.0]) == 0.0  # perfectly calibrated
    with pytest.raises(ValueError):
        expected_calibration_error([0.5], [1.0, 0.0])
    with pytest.raises(ValueError):
        expected_calibration_error([1.5], [1.0])
    with pytest.raises(ValueError):
        expected_calibration_error([-0.1], [1.0])
    with pytest.raises(ValueError):
        reliability_bins([0.5], [2.0])
