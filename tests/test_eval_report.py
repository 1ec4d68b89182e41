"""Markdown and HTML reports of an evaluation run, and the files `write_reports` writes."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from sensorium.evals.metrics import ReliabilityBin
from sensorium.evals.report import html_report, markdown_report, write_reports
from sensorium.evals.results import Failure, RunResults


def bins(filled: dict[int, tuple[int, float, float]]) -> list[ReliabilityBin]:
    """Ten bins; `filled` maps a bin index to (count, mean confidence, accuracy)."""
    return [
        ReliabilityBin(
            lower=i / 10,
            upper=(i + 1) / 10,
            count=filled.get(i, (0, 0.0, 0.0))[0],
            mean_confidence=filled.get(i, (0, 0.0, 0.0))[1],
            accuracy=filled.get(i, (0, 0.0, 0.0))[2],
        )
        for i in range(10)
    ]


def make_results(tmp_path: Path) -> RunResults:
    """Two experts and fused, other scopes, reliability, latencies and two failures: one with
    a real image, one with a missing one (and a prompt that tries to inject a script)."""
    image = tmp_path / "cat.png"
    Image.new("RGB", (400, 300), (200, 120, 40)).save(image)
    return RunResults(
        suite="smoke-vqa",
        task="vqa",
        suite_path=str(tmp_path / "suite.jsonl"),
        suite_digest="f" * 64,
        config_digest="0123456789abcdef0123",
        profile="cpu",
        samples=40,
        errors=1,
        metrics={
            "classify": {"accuracy": 0.58, "ece": 0.1234, "latency_p50_ms": 12.345},
            "answer_question": {"accuracy": 0.5, "ece": 0.2, "latency_p50_ms": 80.0},
            "fused": {"accuracy": 0.61, "ece": 0.05, "latency_p50_ms": 95.25},
            "turn": {"latency_p50_ms": 101.04, "latency_p95_ms": 180.56, "latency_mean_ms": 110.0},
            "routing": {"exact_match": 0.875},
            "tool:classify": {"precision": 0.9, "recall": 1.0, "support": 12.0},
        },
        counts={"classify": 38, "answer_question": 39, "fused": 39, "turn": 40, "routing": 40},
        reliability={
            "fused": bins({5: (10, 0.55, 0.5), 9: (29, 0.95, 0.9)}),
            "classify": bins({7: (38, 0.72, 0.58)}),
        },
        latencies_ms=[50.0 + 5 * i for i in range(40)],
        failures=[
            Failure(
                id="q1",
                image=str(image),
                prompt="What colour | shade is it?",
                expected=["orange", "brown"],
                got="red",
                confidence=0.91,
                score=0.0,
            ),
            Failure(
                id="q2",
                image=str(tmp_path / "missing.jpg"),
                prompt="<script>alert(1)</script> what is this?",
                expected=["dog"],
                got="cat",
                confidence=None,
                score=0.3333,
            ),
        ],
        best_single="classify",
        main_metric="accuracy",
        finished="2025-01-02T03:04:05Z",
    )


def empty_results() -> RunResults:
    return RunResults(
        suite="empty",
        task="vqa",
        suite_path="",
        suite_digest="0" * 64,
        config_digest="abc",
        profile="cpu",
        samples=0,
        errors=0,
    )


def test_markdown_has_header_tables_and_fused_vs_best(tmp_path: Path) -> None:
    md = markdown_report(make_results(tmp_path))
    assert md.startswith("# Evaluation report: smoke-vqa (vqa)\n")
    assert "samples: 40" in md and "errors: 1" in md and "profile: cpu" in md
    assert "config: 0123456789ab " in md and "2025-01-02T03:04:05Z" in md
    assert "| scope | accuracy | ece | latency_p50_ms | n |" in md
    assert "| classify (best single) | 0.580 | 0.123 | 12.3 | 38 |" in md
    assert "| answer_question | 0.500 | 0.200 | 80.0 | 39 |" in md
    assert "| **fused** | **0.610** | **0.050** | **95.2** | **39** |" in md
    # fused comes after the experts
    assert md.index("**fused**") > md.index("| answer_question |")
    assert "fused 0.610 vs best single expert (classify) 0.580: +0.030 over 39 samples" in md
    # other scopes: turn, routing, tools (support is a count)
    assert "| turn |" in md and "| 101.0 | 180.6 | 110.0 |" in md
    assert "| routing | 0.875 |" in md
    assert re.search(r"\| tool:classify \|[^\n]*0\.900 \| 1\.000 \| 12 \|", md)


def test_markdown_failures_table_escapes_pipes(tmp_path: Path) -> None:
    md = markdown_report(make_results(tmp_path))
    assert "| id | prompt | expected | got | confidence | score |" in md
    assert "| q1 | What colour \\| shade is it? | orange \\| brown | red | 0.910 | 0.000 |" in md
    assert "| q2 |" in md and "| dog | cat | – | 0.333 |" in md


def test_html_is_self_contained_with_plots_thumbnails_and_escaping(tmp_path: Path) -> None:
    page = html_report(make_results(tmp_path))
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # a bar chart, one reliability diagram per scope, a histogram
    assert page.count("<svg") == 1 + 2 + 1
    assert "accuracy by scope" in page
    assert "fused · ECE 0.050" in page and "classify · ECE 0.123" in page
    assert "p50 " in page and "p95 " in page
    # the real image is embedded once; the missing one shows a placeholder
    assert page.count("data:image/jpeg;base64,") == 1
    assert "(no image)" in page
    assert "fused 0.610 vs best single expert (classify) 0.580: +0.030 over 39 samples" in page
    assert '<tr class="strong"><td>fused</td>' in page


def test_html_thumbnail_is_small_jpeg(tmp_path: Path) -> None:
    import base64
    import io

    page = html_report(make_results(tmp_path))
    data = re.search(r"data:image/jpeg;base64,([A-Za-z0-9+/=]+)", page)
    assert data is not None
    with Image.open(io.BytesIO(base64.b64decode(data.group(1)))) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == 160


def test_html_survives_unreadable_and_absent_images(tmp_path: Path) -> None:
    results = make_results(tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    results.failures[0].image = str(broken)
    results.failures[1].image = None
    page = html_report(results)
    assert "data:image/jpeg;base64," not in page
    assert page.count("(no image)") == 2


def test_write_reports_writes_three_files_and_round_trips(tmp_path: Path) -> None:
    results = make_results(tmp_path)
    run_dir = tmp_path / "runs" / "one"
    paths = write_reports(results, run_dir)
    assert [p.name for p in paths] == ["results.json", "report.md", "report.html"]
    assert all(p.parent == run_dir and p.is_file() for p in paths)
    assert RunResults.model_validate_json(paths[0].read_text(encoding="utf-8")) == results
    assert paths[1].read_text(encoding="utf-8") == markdown_report(results)
    assert paths[2].read_text(encoding="utf-8") == html_report(results)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(p.name for p in paths)


def test_empty_results_render_both_reports(tmp_path: Path) -> None:
    results = empty_results()
    md = markdown_report(results)
    assert "# Evaluation report: empty (vqa)" in md
    assert "|" not in md and "vs best single" not in md
    page = html_report(results)
    assert "<h1>Evaluation report: empty (vqa)</h1>" in page
    assert "<svg" not in page and "<table" not in page and "(no image)" not in page
    paths = write_reports(results, tmp_path / "run")
    assert all(p.is_file() for p in paths)


def test_experts_without_reliability_or_latencies(tmp_path: Path) -> None:
    results = make_results(tmp_path)
    results.reliability = {"fused": bins({})}
    results.latencies_ms = []
    results.failures = []
    results.best_single = None
    page = html_report(results)
    assert page.count("<svg") == 1  # only the bar chart
    assert "vs best single" not in markdown_report(results)
    assert "(best single)" not in markdown_report(results)
