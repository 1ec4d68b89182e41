"""From sample records to a run's summary: every metric by scope, with its sample count."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sensorium.agent import Settings
from sensorium.evals.metrics import (
    bleu4,
    cider_d_scores,
    expected_calibration_error,
    percentile,
    recall_at_k,
    reliability_bins,
    rouge_l,
    routing_metrics,
)
from sensorium.evals.results import ExpertAnswer, Failure, RunResults, SampleRecord
from sensorium.evals.suite import AgentRow, Suite
from sensorium.tools.profiles import in_profile

MAIN_METRIC = {
    "vqa": "accuracy",
    "agent": "accuracy",
    "caption": "cider_d",
    "retrieval": "mrr",
    "routing": "exact_match",
}
WORST_SHOWN = 12


def summarise(
    suite: Suite, records: Sequence[SampleRecord], settings: Settings, config_digest: str
) -> RunResults:
    """Score a run's records with the suite's metrics."""
    results = RunResults(
        suite=suite.name,
        task=suite.task,
        suite_path=str(suite.path),
        suite_digest=suite.digest,
        config_digest=config_digest,
        profile=settings.profile,
        samples=len(records),
        errors=sum(1 for r in records if r.error),
        main_metric=MAIN_METRIC[suite.task],
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    if not records:
        return results
    if suite.task == "vqa":
        _score_answers(results, list(records))
    if suite.task == "caption":
        _score_captions(results, records)
    if suite.task == "retrieval":
        _score_retrieval(results, records)
    if suite.task == "routing":
        _score_routing(results, [(r, r.expected) for r in records])
    if suite.task == "agent":
        # Each part is scored on the rows that give it: `answers`, `expected_tools` (where
        # `[]`, no expert should run, is scored, and an absent field is not).
        rows = {row.id: row for row in suite.rows if isinstance(row, AgentRow)}
        _score_answers(results, [r for r in records if r.id in rows and rows[r.id].answers])
        routed = [(r, rows[r.id].expected_tools) for r in records if r.id in rows]
        _score_routing(
            results,
            [(r, in_profile(tools, settings.profile)) for r, tools in routed if tools is not None],
        )
    latencies = [r.latency_ms for r in records if not r.error]
    results.latencies_ms = [round(value, 2) for value in latencies]
    if latencies:
        results.metrics["turn"] = _latency(latencies) | {
            "latency_mean_ms": sum(latencies) / len(latencies)
        }
        results.counts["turn"] = len(latencies)
    _keep_requested(results, suite)
    experts = [s for s in results.metrics if s not in _OTHER_SCOPES and not s.startswith("tool:")]
    ranked = [s for s in experts if s != "fused" and results.main_metric in results.metrics[s]]
    if ranked:
        results.best_single = max(ranked, key=lambda s: results.metrics[s][results.main_metric])
    return results


_OTHER_SCOPES = {"fused", "turn", "retrieval", "routing"}


def _score_answers(results: RunResults, records: list[SampleRecord]) -> None:
    """Per expert and for the fusion: accuracy of what was said (no answer scores 0),
    coverage (the share of samples answered), selective accuracy (accuracy on those),
    calibration of the answers given, and latency."""
    if not records:
        return
    experts = sorted({name for r in records for name in r.experts})
    for name in experts:
        answers = [r.experts.get(name, ExpertAnswer()) for r in records]
        answered = [a for a in answers if a.answer and not a.error]
        results.metrics[name] = {
            **_told(answers, answered),
            **_calibration(results, name, answered),
            **_latency([a.latency_ms for a in answered]),
        }
        results.counts[name] = len(records)
    fused = [r.fused or ExpertAnswer() for r in records]
    # An abstention ("I am not sure") told the user nothing: it is no answer.
    told = [f for f in fused if f.answer and not f.abstained]
    results.metrics["fused"] = {
        **_told(fused, told),
        **_calibration(results, "fused", told),
    }
    results.counts["fused"] = len(records)
    wrong = [r for r in records if r.error or (r.fused and (r.fused.score or 0.0) < 1.0)]
    wrong.sort(
        key=lambda r: (r.error is None, r.score or 0.0, -(r.fused or ExpertAnswer()).confidence)
    )
    results.failures = [
        _failure(r, (r.fused or ExpertAnswer()).answer, (r.fused or ExpertAnswer()).confidence)
        for r in wrong[:WORST_SHOWN]
    ]


def _told(everything: list[ExpertAnswer], answered: list[ExpertAnswer]) -> dict[str, float]:
    """Accuracy over every sample, coverage, and accuracy over the answered ones."""
    return {
        "accuracy": sum(a.score or 0.0 for a in answered) / len(everything),
        "coverage": len(answered) / len(everything),
        "selective_accuracy": (
            sum(a.score or 0.0 for a in answered) / len(answered) if answered else 0.0
        ),
    }


def _calibration(results: RunResults, scope: str, answers: list[ExpertAnswer]) -> dict[str, float]:
    if not answers:
        return {}
    confidences = [min(1.0, max(0.0, a.confidence)) for a in answers]
    correct = [a.score or 0.0 for a in answers]
    results.reliability[scope] = reliability_bins(confidences, correct)
    return {"ece": expected_calibration_error(confidences, correct)}


def _score_captions(results: RunResults, records: Sequence[SampleRecord]) -> None:
    """BLEU-4, ROUGE-L and CIDEr-D of each describing expert over the whole corpus."""
    references = [r.expected for r in records]
    worst: list[tuple[float, SampleRecord, str]] = []
    for name in sorted({name for r in records for name in r.experts}):
        answers = [r.experts.get(name, ExpertAnswer()) for r in records]
        candidates = [a.answer or "" for a in answers]
        ciders = cider_d_scores(candidates, references)
        results.metrics[name] = {
            "bleu4": bleu4(candidates, references),
            "rouge_l": sum(rouge_l(c, refs) for c, refs in zip(candidates, references, strict=True))
            / len(records),
            "cider_d": sum(ciders) / len(records),
            "coverage": sum(1 for c in candidates if c) / len(records),
            **_latency([a.latency_ms for a in answers if a.answer]),
        }
        results.counts[name] = len(records)
        worst += [(score, r, c) for score, r, c in zip(ciders, records, candidates, strict=True)]
    worst.sort(key=lambda item: item[0])
    results.failures = [_failure(r, got, None, score) for score, r, got in worst[:WORST_SHOWN]]


def _score_retrieval(results: RunResults, records: Sequence[SampleRecord]) -> None:
    scored = [r for r in records if not r.error]
    if not scored:
        return
    results.metrics["retrieval"] = {
        **{
            f"recall@{k}": sum(recall_at_k(r.ranked, r.expected, k) for r in scored) / len(scored)
            for k in (1, 5, 10)
        },
        "mrr": sum(r.score or 0.0 for r in scored) / len(scored),
    }
    results.counts["retrieval"] = len(scored)
    worst = sorted(records, key=lambda r: (r.error is None, r.score or 0.0))
    results.failures = [
        _failure(r, ", ".join(r.ranked[:3]), None, r.score)
        for r in worst[:WORST_SHOWN]
        if (r.score or 0.0) < 1.0
    ]


def _score_routing(results: RunResults, scored: list[tuple[SampleRecord, list[str]]]) -> None:
    """Exact-set accuracy and per-tool precision/recall of (record, expected tools) pairs. A
    sample that failed with nothing chosen never made a plan: it is a miss, even where no
    expert was expected."""
    if not scored:
        return
    pairs = [(expected, None if _unplanned(r) else r.chosen) for r, expected in scored]
    scores = routing_metrics(pairs)
    results.metrics["routing"] = {"exact_match": scores.exact_accuracy}
    results.counts["routing"] = scores.total
    for tool, score in sorted(scores.per_tool.items()):
        results.metrics[f"tool:{tool}"] = {
            "precision": score.precision,
            "recall": score.recall,
            "support": float(score.support),
        }
        results.counts[f"tool:{tool}"] = scores.total
    if results.task == "routing":
        misses = [r for r, expected in scored if _unplanned(r) or set(expected) != set(r.chosen)]
        results.failures = [_failure(r, ", ".join(r.chosen), None, 0.0) for r in misses][
            :WORST_SHOWN
        ]


def _unplanned(record: SampleRecord) -> bool:
    return bool(record.error) and not record.chosen


def _latency(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}
    return {"latency_p50_ms": percentile(values, 50), "latency_p95_ms": percentile(values, 95)}


def _failure(
    record: SampleRecord, got: str | None, confidence: float | None, score: float | None = None
) -> Failure:
    return Failure(
        id=record.id,
        image=record.image,
        prompt=record.prompt,
        expected=record.expected,
        got=f"error: {record.error}" if record.error and not got else got or "",
        confidence=confidence,
        score=score if score is not None else record.score,
    )


def _keep_requested(results: RunResults, suite: Suite) -> None:
    """Drop what the suite did not ask for (all of a task's metrics by default)."""
    wanted = set(suite.metrics)
    for scope, values in list(results.metrics.items()):
        groups = {name: _metric_group(scope, name, suite.answer_metric) for name in values}
        for name in [n for n in values if groups[n] not in wanted | {None}]:
            del values[name]
        if not values:
            del results.metrics[scope]
            results.counts.pop(scope, None)
    if "ece" not in wanted:
        results.reliability = {}
    if "latency" not in wanted:
        results.latencies_ms = []


def _metric_group(scope: str, name: str, answer_metric: str) -> str | None:
    """The suite metric a reported value belongs to (None: always reported)."""
    if scope.startswith("tool:"):
        return "tool_precision_recall"
    if name.startswith("latency"):
        return "latency"
    if name == "coverage":
        return None
    if name in {"accuracy", "selective_accuracy"}:
        return answer_metric
    return name
