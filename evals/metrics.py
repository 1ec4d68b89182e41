"""Metrics of the evaluation harness, in plain Python.

- VQA accuracy (`vqa_accuracy`): exactly what the official VQA evaluation computes
  (GT-Vision-Lab/VQA's vqaEval.py at its head, a013f00), quirks included: prediction and human
  answers lose tabs, newlines and outer spaces; only when the answers then differ are both
  normalised (punctuation, lower case, number words, articles, contractions); the score is the
  mean over the answers of min(1, matches among the others / 3), for any number of answers
  (one answer: always 0).
- Answer match (`answer_match`): 1 when the prediction equals any acceptable answer, both in
  the normal form above. Lenient, for suites that list acceptable answers instead of ten human
  ones (easy-VQA, the photo suites); never the official figure.
- Captions (as in the COCO caption toolkit, on `caption_tokens`, an approximation of its
  PTB tokenizer):
  - BLEU-4: corpus-level clipped n-gram precisions (n = 1..4), geometric mean, brevity
    penalty with the closest reference length; no smoothing.
  - ROUGE-L: F-measure (beta = 1.2) of the best LCS precision and best LCS recall.
  - CIDEr-D: tf-idf n-gram vectors (n = 1..4), clipped cosine similarity times a Gaussian
    length penalty, averaged over references and n, times 10.
- Retrieval: recall@k and reciprocal rank (MRR is the mean of the latter).
- Routing: exact-set accuracy and per-tool precision/recall (no expert at all scores as the
  pseudo-tool `(none)`).
- Latency: percentile with linear interpolation (numpy's default).
- Calibration: equal-width reliability bins and the expected calibration error (ECE).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Sequence

from pydantic import BaseModel

from sensorium.graphs.normalize import official_form

# VQA: the official evaluation, GT-Vision-Lab/VQA at a013f00 ("Fixed processing answers bug",
# PythonEvaluationTools/vqaEvaluation/vqaEval.py). Its normal form (processPunctuation, then
# processDigitArticle) is `official_form`; tests/test_eval_metrics.py pins both against a
# transcription of the reference, so a change to the agent's normaliser cannot move the metric
# unnoticed.


def _vqa_whitespace(text: str) -> str:
    """vqaEval.py's first step, for the prediction and each human answer alike."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_accuracy(prediction: str | None, answers: Sequence[str]) -> float:
    """The official VQA accuracy of one prediction against the human answers.

    As vqaEval.py at GT-Vision-Lab/VQA a013f00: the prediction and the answers lose tabs,
    newlines and surrounding spaces; if the answers are then all the same, nothing more is
    done to either side (not even lower case); otherwise both lose punctuation, then are
    lower-cased, with number words as digits, articles dropped and contractions restored.
    For each answer, drop it and score min(1, m / 3), where m is how many of the others equal
    the prediction; return the mean. None (no answer given) scores 0.0. Raises ValueError
    when `answers` is empty.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one answer")
    if prediction is None:
        return 0.0
    predicted = _vqa_whitespace(prediction)
    humans = [_vqa_whitespace(answer) for answer in answers]
    if len(set(humans)) > 1:
        humans = [official_form(answer) for answer in humans]
        predicted = official_form(predicted)
    # The script leaves out one answer record at a time (each has its own answer_id).
    matches = sum(answer == predicted for answer in humans)
    scores = [min(1.0, (matches - (answer == predicted)) / 3) for answer in humans]
    return sum(scores) / len(scores)


def answer_match(prediction: str | None, answers: Sequence[str]) -> float:
    """1.0 when the prediction equals any acceptable answer, both normalised as vqaEval.py
    does when the human answers differ (whether or not the acceptable answers agree).

    A lenient score for suites that list acceptable answers (not the official VQA metric).
    None, or a prediction that normalises to nothing, scores 0.0.
    """
    if not answers:
        raise ValueError("answer_match needs at least one answer")
    predicted = official_form(prediction) if prediction else ""
    return float(bool(predicted) and any(official_form(a) == predicted for a in answers))


# How a suite scores answers, by the metric's name (`Suite.answer_metric`).
ANSWER_METRICS: dict[str, Callable[[str | None, Sequence[str]], float]] = {
    "vqa_accuracy": vqa_accuracy,
    "answer_match": answer_match,
}

# Captions


def caption_tokens(text: str) -> list[str]:
    """Lower-case; every character that is not a letter, digit, apostrophe or whitespace
    becomes a space; split on whitespace.

    This approximates the PTB tokenizer of the COCO caption toolkit, which also drops
    punctuation (but, unlike this, splits contractions: "don't" -> "do n't").
    """
    kept = (c if c.isalnum() or c == "'" or c.isspace() else " " for c in text.lower())
    return "".join(kept).split()


def _ngrams(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _check_corpus(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> None:
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference sets")
    if any(not refs for refs in references):
        raise ValueError("every candidate needs at least one reference")


def _closest_length(length: int, lengths: Sequence[int]) -> int:
    """The reference length closest to `length`; on a tie, the shorter."""
    return min(lengths, key=lambda ref: (abs(ref - length), ref))


def bleu4(candidates: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Corpus BLEU-4 (Papineni et al. 2002), as in the COCO caption toolkit.

    For n = 1..4, p_n = sum over candidates of the clipped n-gram matches (each candidate
    n-gram counted at most as often as in the reference where it is most frequent) divided
    by the sum of the candidate n-gram counts. BLEU = BP * (p_1 p_2 p_3 p_4) ** (1/4), where
    c is the total candidate length, r the sum of each candidate's closest reference length
    (ties: the shorter), and BP = 1 if c > r else exp(1 - r / c). If any p_n is zero
    (no smoothing), or the corpus is empty, the score is 0.0. Raises ValueError when the
    lengths of `candidates` and `references` differ or a candidate has no reference.
    """
    _check_corpus(candidates, references)
    matched = [0] * 4
    counted = [0] * 4
    cand_len = ref_len = 0
    for candidate, refs in zip(candidates, references, strict=True):
        tokens = caption_tokens(candidate)
        ref_tokens = [caption_tokens(ref) for ref in refs]
        cand_len += len(tokens)
        ref_len += _closest_length(len(tokens), [len(ref) for ref in ref_tokens])
        for n in range(1, 5):
            ngrams = _ngrams(tokens, n)
            most = Counter[tuple[str, ...]]()
            for ref in ref_tokens:
                most |= _ngrams(ref, n)  # union of Counters: the maximum count
            matched[n - 1] += sum(min(count, most[g]) for g, count in ngrams.items())
            counted[n - 1] += sum(ngrams.values())
    if 0 in matched:
        return 0.0
    log_precision = sum(math.log(m / c) for m, c in zip(matched, counted, strict=True)) / 4
    brevity = 1.0 if cand_len > ref_len else math.exp(1 - ref_len / cand_len)
    return brevity * math.exp(log_precision)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, one row at a time)."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(candidate: str, references: Sequence[str], beta: float = 1.2) -> float:
    """ROUGE-L of one candidate, as in the COCO caption toolkit.

    For each reference, with l its LCS length (in tokens) with the candidate:
    precision = l / len(candidate) and recall = l / len(reference). With P the largest
    precision and R the largest recall over references (possibly from different references):
    F = (1 + beta^2) P R / (R + beta^2 P), and 0.0 when P or R is 0 (also for an empty
    candidate). Raises ValueError when `references` is empty.
    """
    if not references:
        raise ValueError("rouge_l needs at least one reference")
    tokens = caption_tokens(candidate)
    if not tokens:
        return 0.0
    best_p = best_r = 0.0
    for reference in references:
        ref = caption_tokens(reference)
        if ref:
            lcs = _lcs_length(tokens, ref)
            best_p = max(best_p, lcs / len(tokens))
            best_r = max(best_r, lcs / len(ref))
    if best_p == 0 or best_r == 0:
        return 0.0
    return (1 + beta**2) * best_p * best_r / (best_r + beta**2 * best_p)


_Vector = dict[tuple[str, ...], float]


def _tfidf(tokens: Sequence[str], log_n: float, df: Counter[tuple[str, ...]]) -> list[_Vector]:
    """The CIDEr vectors for n = 1..4: g -> tf(g) * (log N - log max(1, df(g)))."""
    return [
        {g: tf * (log_n - math.log(max(1, df[g]))) for g, tf in _ngrams(tokens, n).items()}
        for n in range(1, 5)
    ]


def _norm(vector: _Vector) -> float:
    return math.sqrt(sum(value * value for value in vector.values()))


def _clipped_cosine(cand: _Vector, ref: _Vector) -> float:
    """sum_g min(cand[g], ref[g]) * ref[g] / (|cand| |ref|); 0.0 when a norm is 0."""
    norms = _norm(cand) * _norm(ref)
    if norms == 0:
        return 0.0
    return sum(min(value, ref[g]) * ref[g] for g, value in cand.items() if g in ref) / norms


def cider_d_scores(
    candidates: Sequence[str], references: Sequence[Sequence[str]], sigma: float = 6.0
) -> list[float]:
    """Per-image CIDEr-D (Vedantam et al. 2015), as in the COCO caption toolkit.

    N is the number of images; df(g) the number of images whose reference set contains the
    n-gram g. Each sentence becomes, for n = 1..4, a vector g -> tf(g) * (log N -
    log max(1, df(g))) with tf the raw count. For each n, the similarity of the candidate c
    to a reference r is sum_g min(c[g], r[g]) * r[g] / (|c| |r|) (L2 norms; 0 when a norm is
    0), times exp(-(len_c - len_r)^2 / (2 sigma^2)) with lengths in tokens (the toolkit
    counts bigrams, the same difference for non-empty sentences). An image's score is
    10 * the mean over n of the mean over its references.

    With a single image log N = 0, so every score is 0.0. Raises ValueError when the lengths
    of `candidates` and `references` differ or a candidate has no reference.
    """
    _check_corpus(candidates, references)
    ref_tokens = [[caption_tokens(ref) for ref in refs] for refs in references]
    df = Counter[tuple[str, ...]]()
    for refs in ref_tokens:
        df.update({g for ref in refs for n in range(1, 5) for g in _ngrams(ref, n)})
    log_n = math.log(max(1, len(candidates)))
    scores: list[float] = []
    for candidate, refs in zip(candidates, ref_tokens, strict=True):
        tokens = caption_tokens(candidate)
        vectors = _tfidf(tokens, log_n, df)
        total = 0.0
        for ref in refs:
            penalty = math.exp(-((len(tokens) - len(ref)) ** 2) / (2 * sigma**2))
            for cand_vec, ref_vec in zip(vectors, _tfidf(ref, log_n, df), strict=True):
                total += _clipped_cosine(cand_vec, ref_vec) * penalty
        scores.append(10.0 * total / (4 * len(refs)))
    return scores


def cider_d(
    candidates: Sequence[str], references: Sequence[Sequence[str]], sigma: float = 6.0
) -> float:
    """Corpus CIDEr-D: the mean of `cider_d_scores` (0.0 for an empty corpus)."""
    scores = cider_d_scores(candidates, references, sigma)
    return sum(scores) / len(scores) if scores else 0.0


# Retrieval


def recall_at_k(ranked: Sequence[str], relevant: Collection[str], k: int) -> float:
    """|relevant ∩ ranked[:k]| / |relevant|: the share of relevant items in the top k.

    Raises ValueError when `relevant` is empty or k < 1.
    """
    if not relevant:
        raise ValueError("recall_at_k needs at least one relevant item")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    wanted = set(relevant)
    return len(wanted & set(ranked[:k])) / len(wanted)


def reciprocal_rank(ranked: Sequence[str], relevant: Collection[str]) -> float:
    """1 / rank (1-based) of the first relevant item in `ranked`, 0.0 if none is there.

    The mean of these over queries is the MRR.
    """
    for rank, item in enumerate(ranked, start=1):
        if item in relevant:
            return 1.0 / rank
    return 0.0


# Routing


# The pseudo-tool of requests that need no expert (text-only questions, declined requests):
# "choosing" it means choosing no tool, so declining is scored like any tool.
NO_TOOL = "(none)"


class ToolScore(BaseModel):
    """How well one tool is chosen: precision = tp / predicted, recall = tp / support."""

    precision: float
    recall: float
    support: int
    predicted: int


class RoutingMetrics(BaseModel):
    """Exact-set accuracy over (expected, chosen) pairs, and per-tool scores."""

    total: int
    exact: int
    exact_accuracy: float
    per_tool: dict[str, ToolScore]


def routing_metrics(
    pairs: Sequence[tuple[Collection[str], Collection[str] | None]],
) -> RoutingMetrics:
    """Routing scores of (expected tools, chosen tools) pairs.

    chosen is None for a sample that failed before choosing (it never matches, and chooses
    nothing). An empty set is a set like any other: an empty expected set is matched exactly
    by an empty chosen set, and in the per-tool scores it counts as the pseudo-tool `NO_TOOL`
    ("(none)": expected = no expert should run, chosen = none ran), so declines and text-only
    answers get a precision and recall too.

    exact_accuracy = share of pairs whose two sets are equal (0.0 with no pairs). For each
    tool t in any expected or chosen set, and `NO_TOOL` where a set is empty (keys sorted):
    support = pairs expecting t, predicted = pairs choosing t, tp = pairs doing both;
    precision = tp / predicted, or 0.0 when predicted == 0; recall = tp / support, or 0.0
    when support == 0.
    """

    def named(tools: Collection[str]) -> set[str]:
        return set(tools) or {NO_TOOL}

    sets = [
        (named(expected), named(chosen) if chosen is not None else set[str]())
        for expected, chosen in pairs
    ]
    exact = sum(chosen is not None and set(expected) == set(chosen) for expected, chosen in pairs)
    tools = sorted(set[str]().union(*(expected | chosen for expected, chosen in sets)))
    per_tool: dict[str, ToolScore] = {}
    for tool in tools:
        support = sum(tool in expected for expected, _ in sets)
        predicted = sum(tool in chosen for _, chosen in sets)
        tp = sum(tool in expected and tool in chosen for expected, chosen in sets)
        per_tool[tool] = ToolScore(
            precision=tp / predicted if predicted else 0.0,
            recall=tp / support if support else 0.0,
            support=support,
            predicted=predicted,
        )
    return RoutingMetrics(
        total=len(sets),
        exact=exact,
        exact_accuracy=exact / len(sets) if sets else 0.0,
        per_tool=per_tool,
    )


# Latency


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (q in [0, 100]) by linear interpolation between closest ranks.

    With v the sorted values and h = (len(v) - 1) * q / 100: v[floor(h)] + (h - floor(h)) *
    (v[floor(h) + 1] - v[floor(h)]), as numpy.percentile's default ("linear") method.
    Raises ValueError when `values` is empty or q is outside [0, 100].
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    ordered = sorted(values)
    h = (len(ordered) - 1) * q / 100
    low = math.floor(h)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (h - low) * (ordered[high] - ordered[low])


# Calibration


class ReliabilityBin(BaseModel):
    """One confidence bin [lower, upper) (the last also holds 1.0): size, mean confidence and
    mean correctness."""

    lower: float
    upper: float
    count: int
    mean_confidence: float
    accuracy: float


def reliability_bins(
    confidences: Sequence[float], correct: Sequence[float], bins: int = 10
) -> list[ReliabilityBin]:
    """All `bins` equal-width bins over [0, 1] (bin i spans [i / bins, (i + 1) / bins]).

    Confidence c falls in bin min(int(c * bins), bins - 1), so 1.0 is in the last bin. A
    bin's accuracy is the mean of its `correct` values (in [0, 1]: VQA accuracy may be
    fractional); an empty bin has count 0, mean_confidence 0.0 and accuracy 0.0. Raises
    ValueError on a length mismatch, a value outside [0, 1], or bins < 1.
    """
    if len(confidences) != len(correct):
        raise ValueError(f"{len(confidences)} confidences but {len(correct)} outcomes")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if any(not 0 <= c <= 1 for c in confidences):
        raise ValueError("confidences must lie in [0, 1]")
    if any(not 0 <= x <= 1 for x in correct):
        raise ValueError("correct values must lie in [0, 1]")
    members: list[list[tuple[float, float]]] = [[] for _ in range(bins)]
    for c, x in zip(confidences, correct, strict=True):
        members[min(int(c * bins), bins - 1)].append((c, x))
    result: list[ReliabilityBin] = []
    for i, pairs in enumerate(members):
        count = len(pairs)
        result.append(
            ReliabilityBin(
                lower=i / bins,
                upper=(i + 1) / bins,
                count=count,
                mean_confidence=sum(c for c, _ in pairs) / count if count else 0.0,
                accuracy=sum(x for _, x in pairs) / count if count else 0.0,
            )
        )
    return result


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[float], bins: int = 10
) -> float:
    """ECE = sum over non-empty bins of (count / n) * |accuracy - mean_confidence|.

    Bins as in `reliability_bins`; 0.0 for empty input. Raises ValueError as that does.
    """
    table = reliability_bins(confidences, correct, bins)
    n = len(confidences)
    if n == 0:
        return 0.0
    return sum(b.count / n * abs(b.accuracy - b.mean_confidence) for b in table if b.count)
