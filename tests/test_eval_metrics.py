"""Evaluation metrics, each checked against a value worked out by hand in the comments."""

from __future__ import annotations

import math
import random
import re
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


def test_vqa_when_the_human_answers_all_agree_nothing_is_normalised() -> None:
    # vqaEval.py (a013f00) only strips tabs, newlines and outer spaces, on both sides.
    assert vqa("two", ["two"] * 10) == 1.0
    assert vqa("2", ["two"] * 10) == 0.0  # no number words
    assert vqa("one", ["1"] * 10) == 0.0
    assert vqa("Yes", ["yes"] * 10) == 0.0  # no lower case
    assert vqa("Yes.", ["yes"] * 10) == 0.0  # no punctuation
    assert vqa("yes!", ["yes"] * 10) == 0.0  # GT-Vision-Lab/VQA issue 14: as intended
    assert vqa("Black.", ["black"] * 10) == 0.0
    assert vqa("A Cat", ["cat"] * 10) == 0.0  # no articles
    assert vqa("dont", ["don't"] * 10) == 0.0  # no contractions
    assert vqa("black-white", ["black-white"] * 10) == 1.0
    assert vqa("black white", ["black-white"] * 10) == 0.0
    assert vqa("  yes\n", ["yes"] * 10) == 1.0  # whitespace does go
    assert vqa("yes", ["\tyes "] * 10) == 1.0
    # "Agree" is judged after the whitespace step: these ten agree, so "Yes" stays "Yes".
    assert vqa("Yes", ["yes"] * 9 + [" yes"]) == 0.0


def test_vqa_when_the_human_answers_differ_both_sides_are_normalised() -> None:
    three = ["3"] * 7  # the other seven answers; 3 matches of 10 score 0.9
    assert vqa("2", ["two"] * 3 + three) == pytest.approx(0.9)  # number words, both sides
    assert vqa("Two.", ["2"] * 3 + three) == pytest.approx(0.9)
    assert vqa("none", ["0"] * 3 + three) == pytest.approx(0.9)  # GT-Vision-Lab/VQA issue 7
    assert vqa("yes", ["Yes"] * 3 + three) == pytest.approx(0.9)  # lower case
    assert vqa("yes", ["yes!"] * 3 + three) == pytest.approx(0.9)  # "yes " -> "yes"
    assert vqa("Yes.", ["yes"] * 3 + three) == pytest.approx(0.9)
    assert vqa("cat", ["a cat"] * 3 + three) == pytest.approx(0.9)  # articles
    assert vqa("The Cat", ["cat"] * 3 + three) == pytest.approx(0.9)
    assert vqa("dont", ["don't"] * 3 + three) == pytest.approx(0.9)  # contractions
    # A mark touching a space goes; between letters it becomes a space.
    assert vqa("black white", ["black-white"] * 4 + ["red"] * 6) == 1.0
    assert vqa("black white", ["black - white"] * 4 + ["red"] * 6) == 1.0
    assert vqa("red blue", ["red,blue"] * 4 + ["x"] * 6) == 1.0
    # Once a digit comma appears, every mark is deleted: "1,000" -> "1000".
    assert vqa("1000", ["1,000"] * 4 + ["x"] * 6) == 1.0
    assert vqa("1,000 black-white", ["1000 blackwhite"] * 4 + ["x"] * 6) == 1.0
    # Periods go unless a digit follows: "3.5" stays, "3." and "x.y" lose theirs.
    assert vqa("3.5", ["3.5"] * 4 + ["x"] * 6) == 1.0
    assert vqa("35", ["3.5"] * 4 + ["x"] * 6) == 0.0
    assert vqa("3", ["3."] * 4 + ["x"] * 6) == 1.0
    assert vqa("xy", ["x.y"] * 4 + ["z"] * 6) == 1.0
    # The apostrophe and colon are not punctuation to it.
    assert vqa("2:50", ["2:50"] * 4 + ["x"] * 6) == 1.0
    assert vqa("girls", ["girl's"] * 4 + ["x"] * 6) == 0.0


def test_vqa_keeps_the_quirks_of_the_reference_tables() -> None:
    three = ["x"] * 7
    # Its contraction table has "Im" in capitals, looked up with lower-cased words: never hit.
    assert vqa("im", ["i'm"] * 3 + three) == 0.0
    assert vqa("i'm", ["I'm"] * 3 + three) == pytest.approx(0.9)
    # ... and "somebody'd" -> "somebodyd", the wrong way round.
    assert vqa("somebody'd", ["somebodyd"] * 3 + three) == pytest.approx(0.9)
    # An answer that is only an article normalises to "", and so does an empty prediction.
    assert vqa("", ["the"] * 3 + three) == pytest.approx(0.9)
    # The Python 2 script's \d is ASCII: a period before "٣" (an Arabic-Indic 3) goes.
    assert vqa("x٣", ["x.٣"] * 3 + three) == pytest.approx(0.9)


def test_vqa_leave_one_out_for_any_number_of_answers() -> None:
    assert vqa("cat", ["cat"]) == 0.0  # one answer: the one left out is the only match
    # two equal answers: each subset keeps one match -> 1/3
    assert vqa("cat", ["cat", "cat"]) == pytest.approx(1 / 3)
    # five answers, one matching: 4 subsets keep it (1/3), 1 does not: 4/15
    assert vqa("suit", ["spacesuit", "space suit", "suit", "flight suit", "orange"]) == (
        pytest.approx(4 / 15)
    )
    assert vqa("2", ["2"] * 9) == 1.0  # every subset keeps 8 matches


def test_vqa_counts_at_most_thirty_two_periods_like_the_official_script() -> None:
    # vqaEval.py passes re.UNICODE (32) as re.sub's count: the 33rd period stays.
    assert vqa("x" + "." * 32, ["x"] * 4 + ["y"] * 6) == 1.0
    assert vqa("x" + "." * 33, ["x"] * 4 + ["y"] * 6) == 0.0
    assert vqa("x" + "." * 32, ["x"] * 10) == 0.0  # answers agree: no periods go at all


def test_vqa_no_prediction_and_no_answers() -> None:
    assert vqa(None, ["cat"] * 10) == 0.0
    assert vqa("", [""] * 10) == 1.0  # the official script compares strings, empty ones too
    with pytest.raises(ValueError, match="at least one answer"):
        vqa("cat", [])


# A transcription of GT-Vision-Lab/VQA's PythonEvaluationTools/vqaEvaluation/vqaEval.py at
# a013f0043c1e2cdc995922dfe257f7149aa9af06 (its head), for one question: the tables and regexes
# of __init__, processPunctuation, processDigitArticle and the body of evaluate()'s loop, line
# for line. It is independent of sensorium's code so that no change there can move the metric
# unnoticed. The script is Python 2: its patterns, compiled without re.UNICODE, match only ASCII
# digits with \d (re.ASCII here), and re.UNICODE (32) lands in sub()'s count.

REF_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", "somebodyll": "somebody'll",
    "somebodys": "somebody's", "someoned": "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", "someonell": "someone'll", "someones": "someone's",
    "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all",
    "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}  # fmt: skip
REF_MANUAL_MAP = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
REF_ARTICLES = ["a", "an", "the"]
REF_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)
REF_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)", re.ASCII)
REF_PUNCT = [";", r"/", "[", "]", '"', "{", "}",
             "(", ")", "=", "+", "\\", "_", "-",
             ">", "<", "@", "`", ",", "?", "!"]  # fmt: skip


def ref_process_punctuation(inText: str) -> str:
    outText = inText
    for p in REF_PUNCT:
        if (p + " " in inText or " " + p in inText) or (
            re.search(REF_COMMA_STRIP, inText) is not None
        ):
            outText = outText.replace(p, "")
        else:
            outText = outText.replace(p, " ")
    outText = REF_PERIOD_STRIP.sub("", outText, re.UNICODE)
    return outText


def ref_process_digit_article(inText: str) -> str:
    outText = []
    tempText = inText.lower().split()
    for word in tempText:
        word = REF_MANUAL_MAP.setdefault(word, word)
        if word not in REF_ARTICLES:
            outText.append(word)
        else:
            pass
    for wordId, word in enumerate(outText):
        if word in REF_CONTRACTIONS:
            outText[wordId] = REF_CONTRACTIONS[word]
    return " ".join(outText)


def ref_accuracy(answer: str, human_answers: list[str]) -> float:
    """evaluate() for one question; each annotation record has its own answer_id, as in VQA."""
    answers = [
        {"answer": a, "answer_confidence": "yes", "answer_id": i + 1}
        for i, a in enumerate(human_answers)
    ]
    for ansDic in answers:
        ansDic["answer"] = ansDic["answer"].replace("\n", " ")
        ansDic["answer"] = ansDic["answer"].replace("\t", " ")
        ansDic["answer"] = ansDic["answer"].strip()
    resAns = answer
    resAns = resAns.replace("\n", " ")
    resAns = resAns.replace("\t", " ")
    resAns = resAns.strip()
    gtAcc = []
    gtAnswers = [ans["answer"] for ans in answers]

    if len(set(gtAnswers)) > 1:
        for ansDic in answers:
            ansDic["answer"] = ref_process_punctuation(ansDic["answer"])
            ansDic["answer"] = ref_process_digit_article(ansDic["answer"])
        resAns = ref_process_punctuation(resAns)
        resAns = ref_process_digit_article(resAns)

    for gtAnsDatum in answers:
        otherGTAns = [item for item in answers if item != gtAnsDatum]
        matchingAns = [item for item in otherGTAns if item["answer"] == resAns]
        acc = min(1, float(len(matchingAns)) / 3)
        gtAcc.append(acc)
    return float(sum(gtAcc)) / len(gtAcc)


# Pieces of answers that exercise every rule: number words, articles, contractions (and the
# table's quirks), case, punctuation next to spaces or letters, digit commas, periods before
# and after digits, runs of periods, tabs and newlines, a non-ASCII digit.
WORDS = [
    "yes", "Yes", "YES", "no", "two", "Two", "2", "none", "zero", "0", "ten", "10", "a", "A",
    "an", "the", "The", "cat", "Cat", "cats", "dont", "don't", "Dont", "im", "Im", "i'm",
    "I'm", "let's", "somebody'd", "somebodyd", "1,000", "1000", "10,000", "3.5", "3.", ".5",
    "x.y", "red", "blue", "red,blue", "black-white", "black", "white", "(red)", "yes!",
    "yes.", "what?", "2:50", "girl's", "…", "٣", "x.٣", "a.", "...", "." * 40,
]  # fmt: skip
GLUE = [" ", " ", " ", "  ", "-", " - ", ",", ", ", ".", "/", "!", "\t", "\n", "", "'", ";"]
EDGES = ["", "", "", " ", "\t", "\n", " .", "!", "?", ".", '"']


def random_answer(rng: random.Random) -> str:
    words = rng.choices(WORDS, k=rng.randint(1, 3))
    text = words[0]
    for word in words[1:]:
        text += rng.choice(GLUE) + word
    return rng.choice(EDGES) + text + rng.choice(EDGES)


def variant(rng: random.Random, answer: str) -> str:
    """The same answer as a person or a model might write it differently."""
    change = rng.randrange(6)
    if change == 0:
        return answer.upper() if rng.random() < 0.5 else answer.capitalize()
    if change == 1:
        return rng.choice(["a ", "the ", "The "]) + answer
    if change == 2:
        return answer + rng.choice([".", "!", "?", " .", ",", "...", "\n"])
    if change == 3:
        return rng.choice([" ", "\t", "  "]) + answer + rng.choice([" ", "\t", ""])
    if change == 4:
        return answer.replace(" ", rng.choice(["-", "/", ", ", "  "]))
    return answer


def random_case(rng: random.Random) -> tuple[str, list[str]]:
    pool = [random_answer(rng) for _ in range(rng.choice([1, 1, 2, 3, 4]))]
    # Variants of one answer among the human ones: agreeing only after normalisation.
    pool += [variant(rng, pool[0]) for _ in range(rng.choice([0, 0, 1, 2]))]
    count = rng.choice([10, 10, 10, 10, 1, 2, 3, 5, 9])
    humans = [rng.choice(pool) for _ in range(count)]
    prediction = variant(rng, rng.choice(pool)) if rng.random() < 0.8 else random_answer(rng)
    return prediction, humans


def test_vqa_equals_a_transcription_of_the_reference_on_random_cases() -> None:
    rng = random.Random(20210402)
    cases = [random_case(rng) for _ in range(600)]
    scores = [vqa(prediction, humans) for prediction, humans in cases]
    for (prediction, humans), score in zip(cases, scores, strict=True):
        assert score == ref_accuracy(prediction, humans), (prediction, humans)
    # The cases reach both branches and every kind of score, not only 0 and 1.
    assert any(len(set(h)) == 1 for _, h in cases) and any(len(set(h)) > 1 for _, h in cases)
    assert len(set(scores)) >= 8


@pytest.mark.parametrize("word", [*REF_CONTRACTIONS, *REF_MANUAL_MAP, *REF_ARTICLES])
def test_vqa_equals_the_reference_on_every_word_of_its_tables(word: str) -> None:
    for prediction in (word, word.upper(), f"the {word}.", REF_CONTRACTIONS.get(word, word)):
        for humans in (
            [word] * 3 + ["x"] * 7,
            [REF_CONTRACTIONS.get(word, word)] * 4 + [REF_MANUAL_MAP.get(word, word)] * 6,
            [word] * 10,
        ):
            assert vqa(prediction, humans) == ref_accuracy(prediction, humans)


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
