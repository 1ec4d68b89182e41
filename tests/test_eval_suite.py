"""Suites: hand-written YAML + JSONL load; every problem names its file, line and field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sensorium.evals import SuiteError, builtin_suites, load_suite, resolve_suite_paths
from sensorium.evals.suite import TASK_METRICS, AgentRow, RoutingRow, suite_json_schema

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "images"


def write_suite(folder: Path, rows: list[object], **fields: object) -> Path:
    """A suite file beside its JSONL data and a copy of the example images."""
    folder.mkdir(parents=True, exist_ok=True)
    images = folder / "images"
    if not images.exists():
        shutil.copytree(EXAMPLES, images)
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n")
    suite = {"name": "mine", "task": "vqa", "data": "data.jsonl", "images": "images"} | fields
    if suite["task"] in LISTED_ANSWERS and "metrics" not in fields:
        suite["metrics"] = LISTED_ANSWERS[suite["task"]]  # the rows list acceptable answers
    path = folder / "suite.yaml"
    path.write_text("\n".join(f"{key}: {json.dumps(value)}" for key, value in suite.items()))
    return path


# The test rows list acceptable answers, not ten human ones: they are scored by answer_match.
LISTED_ANSWERS = {
    "vqa": ["answer_match", "ece", "latency"],
    "agent": ["exact_match", "tool_precision_recall", "answer_match", "ece", "latency"],
}
VQA_ROW = {"id": "q1", "image": "chelsea.jpg", "question": "What animal?", "answers": ["cat"]}


def test_a_hand_written_suite_loads(tmp_path: Path) -> None:
    path = write_suite(tmp_path, [VQA_ROW, VQA_ROW | {"id": "q2", "question": "Is it a dog?"}])
    suite = load_suite(path)
    assert (suite.name, suite.task, len(suite.rows)) == ("mine", "vqa", 2)
    assert suite.metrics == LISTED_ANSWERS["vqa"] and suite.answer_metric == "answer_match"


def test_a_vqa_suite_scores_with_the_official_metric_unless_it_asks_otherwise(
    tmp_path: Path,
) -> None:
    suite = load_suite(write_suite(tmp_path, [VQA_ROW], metrics=None))
    assert suite.metrics == list(TASK_METRICS["vqa"]) and suite.answer_metric == "vqa_accuracy"
    assert suite.image_path("chelsea.jpg").is_file()
    assert len(suite.digest) == 64


def test_the_digest_follows_the_data(tmp_path: Path) -> None:
    first = load_suite(write_suite(tmp_path, [VQA_ROW])).digest
    second = load_suite(write_suite(tmp_path, [VQA_ROW | {"answers": ["kitten"]}])).digest
    assert first != second


@pytest.mark.parametrize(
    ("rows", "fields", "message"),
    [
        ([VQA_ROW], {"task": "quiz"}, "suite.yaml: field 'task': Input should be"),
        ([VQA_ROW], {"metrics": ["bleu4"]}, "metrics ['bleu4'] do not apply to task 'vqa'"),
        ([VQA_ROW], {"colour": "red"}, "field 'colour': unknown field"),
        ([VQA_ROW], {"data": "missing.jsonl"}, "cannot read suite data"),
        ([VQA_ROW], {"images": "nowhere"}, "field 'images': folder"),
        ([VQA_ROW, {"id": "q2", "image": "chelsea.jpg"}], {}, "data.jsonl:2: field 'question'"),
        ([VQA_ROW, VQA_ROW | {"id": "q2", "answers": []}], {}, "data.jsonl:2: field 'answers'"),
        ([VQA_ROW, "{not json"], {}, "data.jsonl:2: not valid JSON"),
        ([VQA_ROW, VQA_ROW], {}, "data.jsonl:2: field 'id': 'q1' repeats line 1"),
        ([VQA_ROW | {"image": "nope.png"}], {}, "data.jsonl:1: field 'image': image nope.png"),
        ([[1, 2]], {}, "data.jsonl:1: a row is a JSON object, not list"),
        ([], {}, "no rows"),
        (
            [{"id": "r1", "relevant": ["chelsea.jpg"]}],
            {"task": "retrieval"},
            "data.jsonl:1: give 'query', 'query_image' or both",
        ),
        (
            [{"id": "r1", "query": "a cat", "relevant": ["dog.jpg"]}],
            {"task": "retrieval"},
            "data.jsonl:1: field 'relevant': image dog.jpg not found",
        ),
    ],
)
def test_an_invalid_suite_names_file_line_and_field(
    tmp_path: Path, rows: list[object], fields: dict[str, object], message: str
) -> None:
    path = write_suite(tmp_path, rows, **fields)
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_broken_yaml_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text("name: x\ntask: vqa\ndata: [unclosed\n")
    with pytest.raises(SuiteError, match=r"suite.yaml:\d+: not valid YAML"):
        load_suite(path)


def test_a_suite_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(SuiteError, match="a suite is a YAML mapping"):
        load_suite(path)


def test_suite_names_resolve_to_files_builtins_and_families(tmp_path: Path) -> None:
    path = write_suite(tmp_path, [VQA_ROW])
    assert resolve_suite_paths(str(path)) == [path]
    assert [p.stem for p in resolve_suite_paths("routing")] == ["routing"]
    assert [p.stem for p in resolve_suite_paths("photos")] == [
        "photos-captions",
        "photos-text-retrieval",
        "photos-vqa",
    ]
    with pytest.raises(SuiteError, match="no suite file or built-in suite named 'nope'"):
        resolve_suite_paths("nope")
    with pytest.raises(SuiteError, match=r"suite file missing\.yaml not found"):
        resolve_suite_paths("missing.yaml")


def test_the_built_in_suites_load_and_are_big_enough() -> None:
    sizes = {name: len(load_suite(path).rows) for name, path in builtin_suites().items()}
    assert sizes["easy-vqa"] == 9673
    assert sizes["photos-vqa"] >= 80
    assert sizes["photos-captions"] >= 20
    assert sizes["routing"] >= 150
    assert sizes["retrieval"] >= 20
    assert sizes["agent"] >= 40


def test_the_routing_suite_covers_every_tool_and_mixed_requests() -> None:
    rows = load_suite(builtin_suites()["routing"]).rows
    tools = [tool for row in rows for tool in getattr(row, "expected_tools", [])]
    for name in ("classify", "answer_question", "colours", "caption", "embed_image", "retrieve"):
        assert tools.count(name) >= 15, name
    assert sum(1 for row in rows if len(getattr(row, "expected_tools", [])) > 1) >= 30


def test_the_routing_suite_holds_requests_that_need_no_expert() -> None:
    rows = load_suite(builtin_suites()["routing"]).rows
    none = [row for row in rows if getattr(row, "expected_tools", None) == []]
    assert len(none) >= 25
    assert sum(1 for row in none if getattr(row, "image", None) is True) >= 5  # with an image
    assert sum(1 for row in none if getattr(row, "image", None) is False) >= 15  # without


def test_the_agent_suite_mixes_searches_languages_and_requests_needing_no_expert() -> None:
    suite = load_suite(builtin_suites()["agent"])
    rows = [row for row in suite.rows if isinstance(row, AgentRow)]
    assert len(rows) == len(suite.rows) >= 40
    assert suite.answer_metric == "answer_match"
    assert suite.corpus is not None and (suite.corpus / "chelsea.png").is_file()
    searches = [row for row in rows if (row.expected_tools or [""])[0] == "retrieve"]
    assert len(searches) >= 12
    assert all(len(row.expected_tools or []) >= 2 for row in searches)  # a step after the search
    assert sum(1 for row in rows if not row.request.isascii()) >= 10
    assert sum(1 for row in rows if isinstance(row.image, list) and len(row.image) == 2) >= 4
    none = [row for row in rows if row.expected_tools == []]
    assert sum(1 for row in none if row.image is None) >= 4  # text-only (and declined)
    assert sum(1 for row in none if row.image) >= 3  # declined, with an image
    assert sum(1 for row in rows if row.answers) >= 20
    assert all(row.expected_tools is not None for row in rows)


def test_no_expert_is_a_valid_expectation(tmp_path: Path) -> None:
    routing = [{"id": "t1", "request": "What is the capital of France?", "expected_tools": []}]
    row = load_suite(write_suite(tmp_path / "r", routing, task="routing")).rows[0]
    assert isinstance(row, RoutingRow) and row.expected_tools == []
    agent = [{"id": "a1", "request": "Draw me a cat", "expected_tools": []}]
    turn = load_suite(write_suite(tmp_path / "a", agent, task="agent")).rows[0]
    assert isinstance(turn, AgentRow) and (turn.expected_tools, turn.answers) == ([], None)
    missing = [{"id": "t1", "request": "What is this?"}]
    with pytest.raises(SuiteError, match=r"data\.jsonl:1: field 'expected_tools': Field required"):
        load_suite(write_suite(tmp_path / "m", missing, task="routing"))
    no_answers = [{"id": "a1", "request": "What is this?", "answers": []}]
    with pytest.raises(SuiteError, match=r"data\.jsonl:1: field 'answers'"):
        load_suite(write_suite(tmp_path / "n", no_answers, task="agent"))


def test_a_corpus_is_for_suites_that_search(tmp_path: Path) -> None:
    rows = [{"id": "a1", "request": "Find my cat photos", "expected_tools": ["retrieve"]}]
    suite = load_suite(write_suite(tmp_path / "a", rows, task="agent", corpus="images"))
    assert suite.corpus == (tmp_path / "a" / "images").resolve()
    assert load_suite(write_suite(tmp_path / "b", rows, task="agent")).corpus is None
    with pytest.raises(SuiteError, match="field 'corpus' applies to tasks"):
        load_suite(write_suite(tmp_path / "c", [VQA_ROW], corpus="images"))


def test_the_schema_covers_the_file_and_every_task_row() -> None:
    schema = suite_json_schema()
    assert {"name", "task", "data", "images", "metrics", "experts"} <= set(schema["properties"])
    assert {f"{task}_row" for task in TASK_METRICS} <= set(schema["$defs"])
    assert schema["$defs"]["vqa_row"]["required"] == ["id", "image", "question", "answers"]


def test_the_documented_schema_file_is_current() -> None:
    documented = Path(__file__).resolve().parents[1] / "docs" / "suite.schema.json"
    assert json.loads(documented.read_text()) == suite_json_schema(), (
        "regenerate it: sensorium eval schema > docs/suite.schema.json"
    )
