"""What a run records: one `SampleRecord` per sample (a JSONL line, written as it goes), and
one `RunResults` summary (results.json) that the reports, `compare` and `calibrate` read.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from sensorium.evals.metrics import ReliabilityBin
from sensorium.tools import UserError


class ExpertAnswer(BaseModel):
    """One expert's (or the fused decision's) answer on one sample, and its score."""

    answer: str | None = None
    confidence: float = 0.0
    latency_ms: float = 0.0
    error: str | None = None
    score: float | None = Field(None, description="per-sample score (VQA accuracy), if any")
    abstained: bool = False


class SampleRecord(BaseModel):
    """Everything one sample produced. `key` ties it to the suite content and configuration."""

    key: str
    id: str
    task: str
    latency_ms: float = 0.0
    error: str | None = None
    image: str | None = Field(None, description="the image path (for reports)")
    prompt: str = Field("", description="the question, request or query")
    kind: str | None = Field(None, description="the question's kind (yes_no, colour, ...)")
    domain: str | None = Field(None, description="the image's kind: 'photo' or 'graphic'")
    expected: list[str] = Field(
        default_factory=list, description="answers, references, relevant images or tools"
    )
    experts: dict[str, ExpertAnswer] = Field(default_factory=dict)
    fused: ExpertAnswer | None = None
    chosen: list[str] = Field(default_factory=list, description="tools the planner chose")
    ranked: list[str] = Field(default_factory=list, description="retrieval results, in order")
    reply: str | None = None
    score: float | None = Field(None, description="the sample's main score")
    answer_metric: str | None = Field(
        None, description="how answers were scored: 'vqa_accuracy' or 'answer_match'"
    )


class Failure(BaseModel):
    """A sample shown in the report's worst-failures list."""

    id: str
    image: str | None = None
    prompt: str = ""
    expected: list[str] = Field(default_factory=list)
    got: str = ""
    confidence: float | None = None
    score: float | None = None


class RunResults(BaseModel):
    """The summary of a run: every metric by scope, with the sample counts behind them.

    Scopes: `fused` and each expert's name (answer quality), `turn` (latency of whole
    samples), `retrieval`, `routing`, and `tool:NAME` (per-tool routing precision/recall).
    """

    suite: str
    task: str
    suite_path: str
    suite_digest: str
    config_digest: str
    profile: str
    samples: int
    errors: int
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict, description="samples behind each scope")
    reliability: dict[str, list[ReliabilityBin]] = Field(default_factory=dict)
    latencies_ms: list[float] = Field(default_factory=list, description="per-sample wall time")
    failures: list[Failure] = Field(default_factory=list)
    best_single: str | None = Field(None, description="the expert with the best main score")
    main_metric: str = Field("", description="the metric that ranks experts and fusion")
    finished: str = ""


def read_results(run: str | Path) -> RunResults:
    """A run's results, from its folder or its results.json."""
    path = Path(run).expanduser()
    if path.is_dir():
        path = path / "results.json"
    try:
        return RunResults.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise UserError(f"no results at {path}; give a run folder written by `eval run`") from None
    except (OSError, ValueError, ValidationError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise UserError(f"results file {path} is unreadable: {first}") from None
