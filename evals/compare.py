"""Compare two runs: every metric side by side with the sample counts behind it, and, where
both runs scored the same samples, how many got better or worse.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from sensorium.evals.results import RunResults, read_results
from sensorium.evals.runner import RECORDS_FILE, read_records


class Difference(BaseModel):
    """One metric in both runs."""

    scope: str
    metric: str
    a: float | None
    b: float | None
    n_a: int
    n_b: int

    @property
    def delta(self) -> float | None:
        """b - a, when both runs have the metric."""
        return None if self.a is None or self.b is None else self.b - self.a


class PairedCounts(BaseModel):
    """Samples both runs scored: how many B did better on, worse on, or the same."""

    common: int
    better: int
    worse: int
    same: int


class Comparison(BaseModel):
    """The differences between run A and run B."""

    a: RunResults
    b: RunResults
    differences: list[Difference]
    paired: PairedCounts | None

    @property
    def same_suite(self) -> bool:
        """True when both runs scored the same suite content."""
        return self.a.suite_digest == self.b.suite_digest


def compare_runs(run_a: str | Path, run_b: str | Path) -> Comparison:
    """Compare two run folders (or results.json files)."""
    a, b = read_results(run_a), read_results(run_b)
    differences = []
    for scope in dict.fromkeys([*a.metrics, *b.metrics]):
        metrics_a, metrics_b = a.metrics.get(scope, {}), b.metrics.get(scope, {})
        for metric in dict.fromkeys([*metrics_a, *metrics_b]):
            differences.append(
                Difference(
                    scope=scope,
                    metric=metric,
                    a=metrics_a.get(metric),
                    b=metrics_b.get(metric),
                    n_a=a.counts.get(scope, 0),
                    n_b=b.counts.get(scope, 0),
                )
            )
    return Comparison(a=a, b=b, differences=differences, paired=_paired(Path(run_a), Path(run_b)))


def _paired(run_a: Path, run_b: Path) -> PairedCounts | None:
    """Per-sample main scores of both runs, matched by sample id (None without records)."""
    scores = [_sample_scores(run) for run in (run_a, run_b)]
    if scores[0] is None or scores[1] is None:
        return None
    common = scores[0].keys() & scores[1].keys()
    better = sum(1 for i in common if scores[1][i] > scores[0][i])
    worse = sum(1 for i in common if scores[1][i] < scores[0][i])
    return PairedCounts(
        common=len(common), better=better, worse=worse, same=len(common) - better - worse
    )


def _sample_scores(run: Path) -> dict[str, float] | None:
    folder = run if run.is_dir() else run.parent
    manifest = folder / "run.json"
    if not manifest.is_file():
        return None
    key = json.loads(manifest.read_text(encoding="utf-8"))["key"]
    records = read_records(folder / RECORDS_FILE, key)
    return {i: r.score for i, r in records.items() if r.score is not None}
