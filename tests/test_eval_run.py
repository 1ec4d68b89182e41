"""The runner on real lite experts: every task, per-expert and fused scores, resuming, reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_eval_suite import VQA_ROW, write_suite

from sensorium import Settings
from sensorium.evals import load_suite, run_suite
from sensorium.evals.runner import RECORDS_FILE, read_records

VQA_ROWS = [
    VQA_ROW | {"question": "What animal is this?", "answers": ["cat", "kitten"]},
    {"id": "q2", "image": "red.png", "question": "What colour is this?", "answers": ["red"]},
    {"id": "q3", "image": "chelsea.jpg", "question": "Is this a dog?", "answers": ["no"]},
    {"id": "q4", "image": "coffee.jpg", "question": "Is this a cat?", "answers": ["no"]},
]


def records_of(run_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (run_dir / RECORDS_FILE).read_text().splitlines()]


def test_a_vqa_run_scores_each_expert_and_the_fusion(tmp_path: Path, settings: Settings) -> None:
    suite = load_suite(write_suite(tmp_path / "suite", VQA_ROWS))
    outcome = run_suite(suite, settings, out=tmp_path / "runs", chat_model=None)
    results = outcome.results
    assert (outcome.computed, outcome.reused, results.samples, results.errors) == (4, 0, 4, 0)
    assert {"classify", "answer_question", "colours", "fused", "turn"} <= set(results.metrics)
    first = records_of(outcome.run_dir)[0]
    assert first["id"] == "q1" and first["kind"] == "animal"
    assert first["experts"]["classify"]["answer"] == "cat"  # type: ignore[index]
    assert first["experts"]["classify"]["score"] == 1.0  # type: ignore[index]
    assert results.metrics["colours"]["accuracy"] >= 0.25  # red.png is red
    assert results.counts["fused"] == 4
    assert results.best_single in {"classify", "answer_question", "colours"}
    assert [p.name for p in outcome.reports] == ["results.json", "report.md", "report.html"]
    assert "fused" in (outcome.run_dir / "report.md").read_text()


def test_a_run_leaves_the_users_store_alone(tmp_path: Path, settings: Settings) -> None:
    suite = load_suite(write_suite(tmp_path / "suite", VQA_ROWS[:1]))
    outcome = run_suite(suite, settings, out=tmp_path / "runs", chat_model=None)
    assert not settings.images_dir.exists()
    assert (outcome.run_dir / "workspace" / "images").is_dir()


def test_an_interrupted_run_resumes_without_recomputing(tmp_path: Path, settings: Settings) -> None:
    suite = load_suite(write_suite(tmp_path / "suite", VQA_ROWS))
    runs = tmp_path / "runs"

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, settings, out=runs, chat_model=None, progress=stop_after_two)
    run_dir = next(runs.iterdir())
    assert [r["id"] for r in records_of(run_dir)] == ["q1", "q2"]
    with (run_dir / RECORDS_FILE).open("a") as sink:
        sink.write('{"key": "torn by a kill')  # a write cut short
    outcome = run_suite(suite, settings, out=runs, chat_model=None)
    assert (outcome.reused, outcome.computed) == (2, 2)
    assert sorted(r["id"] for r in records_of(run_dir)) == ["q1", "q2", "q3", "q4"]
    again = run_suite(suite, settings, out=runs, chat_model=None)
    assert (again.reused, again.computed) == (4, 0)
    assert again.results.metrics == outcome.results.metrics


def test_results_are_keyed_by_configuration_and_suite_content(
    tmp_path: Path, settings: Settings
) -> None:
    suite_path = write_suite(tmp_path / "suite", VQA_ROWS[:1])
    runs = tmp_path / "runs"
    first = run_suite(load_suite(suite_path), settings, out=runs, chat_model=None)
    weighted = settings.model_copy(
        update={"fusion": settings.fusion.model_copy(update={"weights": {"colours": 0.5}})}
    )
    second = run_suite(load_suite(suite_path), weighted, out=runs, chat_model=None)
    assert first.run_dir != second.run_dir and second.computed == 1
    write_suite(tmp_path / "suite", [VQA_ROWS[0] | {"answers": ["kitten"]}])
    third = run_suite(load_suite(suite_path), settings, out=runs, chat_model=None)
    assert third.run_dir not in {first.run_dir, second.run_dir} and third.computed == 1


def test_limit_runs_the_first_samples(tmp_path: Path, settings: Settings) -> None:
    suite = load_suite(write_suite(tmp_path / "suite", VQA_ROWS))
    outcome = run_suite(suite, settings, out=tmp_path / "runs", limit=2, workers=2, chat_model=None)
    assert outcome.results.samples == 2
    assert sorted(read_records(outcome.run_dir / RECORDS_FILE, outcome.run_dir.name[-12:])) == [
        "q1",
        "q2",
    ]


def test_a_sample_that_fails_is_recorded_not_fatal(tmp_path: Path, settings: Settings) -> None:
    path = write_suite(tmp_path / "suite", VQA_ROWS[:2])
    (tmp_path / "suite" / "images" / "red.png").write_bytes(b"not a png")
    outcome = run_suite(load_suite(path), settings, out=tmp_path / "runs", chat_model=None)
    assert outcome.results.errors == 1
    failed = next(r for r in records_of(outcome.run_dir) if r["id"] == "q2")
    assert "ImageInputError" in str(failed["error"])
    assert outcome.results.failures[0].id == "q2"


def test_a_caption_run_scores_bleu_rouge_and_cider(tmp_path: Path, settings: Settings) -> None:
    rows = [
        {"id": "c1", "image": "chelsea.jpg", "references": ["a tabby cat", "a cat's face"]},
        {"id": "c2", "image": "coffee.jpg", "references": ["a cup of coffee on a saucer"]},
    ]
    suite = load_suite(write_suite(tmp_path / "suite", rows, task="caption"))
    results = run_suite(suite, settings, out=tmp_path / "runs", chat_model=None).results
    assert set(results.metrics["caption"]) >= {"bleu4", "rouge_l", "cider_d"}
    assert results.metrics["caption"]["rouge_l"] > 0  # the lite caption names the cat
    assert results.main_metric == "cider_d"


def test_a_retrieval_run_indexes_the_corpus_and_ranks(tmp_path: Path, settings: Settings) -> None:
    rows = [
        {"id": "r1", "query": "a cat", "relevant": ["chelsea.jpg"]},
        {"id": "r2", "query_image": "coffee.jpg", "relevant": ["coffee.jpg"]},
    ]
    suite = load_suite(write_suite(tmp_path / "suite", rows, task="retrieval"))
    results = run_suite(suite, settings, out=tmp_path / "runs", chat_model=None).results
    assert results.metrics["retrieval"]["mrr"] == 1.0
    assert results.metrics["retrieval"]["recall@1"] == 1.0


def test_a_routing_run_scores_exact_sets_and_each_tool(tmp_path: Path, settings: Settings) -> None:
    rows = [
        {
            "id": "t1",
            "request": "What colour is this?",
            "image": True,
            "expected_tools": ["colours"],
        },
        {
            "id": "t2",
            "request": "Describe it",
            "image": "chelsea.jpg",
            "expected_tools": ["caption"],
        },
        {"id": "t3", "request": "Find photos of dogs", "expected_tools": ["embed_image"]},
    ]
    suite = load_suite(write_suite(tmp_path / "suite", rows, task="routing"))
    results = run_suite(suite, settings, out=tmp_path / "runs", chat_model=None).results
    assert results.metrics["routing"]["exact_match"] == pytest.approx(2 / 3)
    assert results.metrics["tool:retrieve"]["precision"] == 0.0
    assert results.metrics["tool:embed_image"]["recall"] == 0.0
    assert [f.id for f in results.failures] == ["t3"]


def test_an_agent_run_scores_the_planner_and_the_answer(tmp_path: Path, settings: Settings) -> None:
    rows = [
        {
            "id": "a1",
            "request": "What animal is this?",
            "image": "chelsea.jpg",
            "expected_tools": ["classify", "answer_question"],
            "answers": ["cat"],
        }
    ]
    suite = load_suite(write_suite(tmp_path / "suite", rows, task="agent"))
    results = run_suite(suite, settings, out=tmp_path / "runs", chat_model=None).results
    assert results.metrics["routing"]["exact_match"] == 1.0
    assert results.metrics["fused"]["accuracy"] == 1.0


def test_an_agent_run_searches_its_corpus(tmp_path: Path, settings: Settings) -> None:
    rows = [
        {
            "id": "a1",
            "request": "Find my photos of cats and tell me what animal the first one shows",
            "expected_tools": ["retrieve", "classify", "answer_question"],
            "answers": ["cat"],
        }
    ]
    path = write_suite(tmp_path / "suite", rows, task="agent", corpus="images")
    outcome = run_suite(load_suite(path), settings, out=tmp_path / "runs", chat_model=None)
    first = records_of(outcome.run_dir)[0]
    assert first["chosen"][0] == "retrieve"  # type: ignore[index]
    assert outcome.results.metrics["fused"]["accuracy"] == 1.0  # the hit was chelsea.jpg


def test_the_example_suite_runs_as_documented(tmp_path: Path, settings: Settings) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "suite" / "example.yaml"
    outcome = run_suite(load_suite(example), settings, out=tmp_path / "runs", chat_model=None)
    results = outcome.results
    assert results.samples == 7 and results.errors == 0
    assert results.best_single is not None
    assert results.metrics["fused"]["accuracy"] >= results.metrics[results.best_single]["accuracy"]
