"""Suites over the official VQA v2 question and annotation files (`data: vqav2:Q.json,A.json`)."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from sensorium import Settings
from sensorium.evals import SuiteError, load_suite, run_suite
from sensorium.evals.runner import RECORDS_FILE
from sensorium.evals.suite import VqaRow

RED = "COCO_val2014_000000000042.jpg"
BLUE = "COCO_val2014_000000000007.jpg"
RED_ANSWERS = ["red"] * 8 + ["orange", "dark red"]


def question(question_id: int, image_id: int, text: str) -> dict[str, Any]:
    return {"image_id": image_id, "question": text, "question_id": question_id}


def annotation(question_id: int, image_id: int, answers: list[str]) -> dict[str, Any]:
    return {
        "question_type": "what color is the",
        "multiple_choice_answer": answers[0],
        "answers": [
            {"answer": answer, "answer_confidence": "yes", "answer_id": number}
            for number, answer in enumerate(answers, 1)
        ],
        "image_id": image_id,
        "answer_type": "other",
        "question_id": question_id,
    }


def official_files() -> tuple[dict[str, Any], dict[str, Any]]:
    """Three questions about two images, in the official files' shape."""
    questions = {
        "info": {"description": "tiny"},
        "task_type": "Open-Ended",
        "data_type": "mscoco",
        "data_subtype": "val2014",
        "questions": [
            question(42000, 42, "What colour is this?"),
            question(42001, 42, "Is this red?"),
            question(7000, 7, "What color is this?"),
        ],
    }
    annotations = {
        "info": {"description": "tiny"},
        "data_subtype": "val2014",
        "annotations": [
            annotation(42000, 42, RED_ANSWERS),
            annotation(42001, 42, ["yes"] * 9 + ["no"]),
            annotation(7000, 7, ["blue"] * 9 + ["navy"]),
        ],
    }
    return questions, annotations


def write_vqav2(
    folder: Path,
    questions: object | None = None,
    annotations: object | None = None,
    **fields: object,
) -> Path:
    """The official files, a folder of two COCO-named images, and a suite file over them."""
    official_questions, official_annotations = official_files()
    folder.mkdir(parents=True, exist_ok=True)
    images = folder / "val2014"
    images.mkdir(exist_ok=True)
    Image.new("RGB", (64, 64), (220, 20, 20)).save(images / RED)
    Image.new("RGB", (64, 64), (20, 40, 220)).save(images / BLUE)
    for name, content in (
        ("questions.json", official_questions if questions is None else questions),
        ("annotations.json", official_annotations if annotations is None else annotations),
    ):
        raw = content if isinstance(content, bytes) else json.dumps(content).encode()
        (folder / name).write_bytes(raw)
    suite = {
        "name": "vqav2-val",
        "task": "vqa",
        "data": "vqav2:questions.json,annotations.json",
        "images": "val2014",
        "experts": ["colours"],
    } | fields
    path = folder / "suite.yaml"
    path.write_text("\n".join(f"{key}: {json.dumps(value)}" for key, value in suite.items()))
    return path


def test_each_question_is_a_row_with_its_ten_human_answers(tmp_path: Path) -> None:
    suite = load_suite(write_vqav2(tmp_path))
    rows = [row for row in suite.rows if isinstance(row, VqaRow)]
    assert [row.id for row in rows] == ["42000", "42001", "7000"]
    assert rows[0].answers == RED_ANSWERS  # duplicates kept: the official metric counts them
    assert rows[2].answers == ["blue"] * 9 + ["navy"]
    assert [row.image for row in rows] == [RED, RED, BLUE]
    assert suite.image_path(rows[2].image) == (tmp_path / "val2014" / BLUE).resolve()
    assert rows[1].question == "Is this red?"
    assert gc.isenabled()


def test_the_digest_follows_the_annotations(tmp_path: Path) -> None:
    first = load_suite(write_vqav2(tmp_path)).digest
    questions, annotations = official_files()
    annotations["annotations"][0] = annotation(42000, 42, ["pink"] * 10)
    assert load_suite(write_vqav2(tmp_path, questions, annotations)).digest != first


def test_a_vqav2_suite_runs_end_to_end(tmp_path: Path, settings: Settings) -> None:
    suite = load_suite(write_vqav2(tmp_path / "suite"))
    outcome = run_suite(suite, settings, out=tmp_path / "runs", chat_model=None)
    assert (outcome.results.samples, outcome.results.errors) == (3, 0)
    records = {
        record["id"]: record
        for record in map(json.loads, (outcome.run_dir / RECORDS_FILE).read_text().splitlines())
    }
    assert set(records) == {"42000", "42001", "7000"}
    assert records["42000"]["expected"] == RED_ANSWERS
    assert records["42000"]["experts"]["colours"]["answer"] == "red"
    assert records["42000"]["experts"]["colours"]["score"] == 1.0
    assert records["7000"]["experts"]["colours"]["score"] == 1.0
    assert outcome.results.metrics["colours"]["accuracy"] >= 2 / 3


def without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in data.items() if name != key}


def test_the_data_field_names_two_files(tmp_path: Path) -> None:
    with pytest.raises(SuiteError) as caught:
        load_suite(write_vqav2(tmp_path, data="vqav2:questions.json"))
    assert str(caught.value) == (
        "data 'vqav2:questions.json': name the questions file, then the annotations file: "
        "`data: vqav2:QUESTIONS.json,ANNOTATIONS.json`"
    )


def test_the_files_hold_vqa_rows(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"hold VQA rows; set `task: vqa` \(not caption\)"):
        load_suite(write_vqav2(tmp_path, task="caption", experts=None))


QUESTIONS, ANNOTATIONS = official_files()


@pytest.mark.parametrize(
    ("questions", "annotations", "fields", "message"),
    [
        (
            None,
            None,
            {"data": "vqav2:missing.json,annotations.json"},
            "cannot read VQA v2 questions file {folder}/missing.json: No such file or "
            "directory; paths in `data: vqav2:QUESTIONS.json,ANNOTATIONS.json` are relative "
            "to the suite file",
        ),
        (
            b"{not json",
            None,
            {},
            "{folder}/questions.json:1: not valid JSON (Expecting property name enclosed in "
            "double quotes); give the official questions file, "
            "v2_OpenEnded_mscoco_val2014_questions.json",
        ),
        (
            None,
            b"\x80\x81 binary",
            {},
            "{folder}/annotations.json: not valid JSON (not UTF-8 text); give the official "
            "annotations file, v2_mscoco_val2014_annotations.json",
        ),
        (
            without(QUESTIONS, "questions"),
            None,
            {},
            "{folder}/questions.json: no 'questions' list; give the official questions file, "
            "v2_OpenEnded_mscoco_val2014_questions.json",
        ),
        (
            [],
            None,
            {},
            "{folder}/questions.json: no 'questions' list; give the official questions file, "
            "v2_OpenEnded_mscoco_val2014_questions.json",
        ),
        (
            None,
            without(ANNOTATIONS, "annotations"),
            {},
            "{folder}/annotations.json: no 'annotations' list; give the official annotations "
            "file, v2_mscoco_val2014_annotations.json",
        ),
        (
            ANNOTATIONS,
            QUESTIONS,
            {},
            "{folder}/questions.json: no 'questions' list; it looks like the annotations file: "
            "name the questions file first, `data: vqav2:QUESTIONS.json,ANNOTATIONS.json`",
        ),
        (
            without(QUESTIONS, "data_subtype"),
            None,
            {},
            "{folder}/questions.json: no 'data_subtype' (such as val2014, which names the COCO "
            "images); give the official questions file, "
            "v2_OpenEnded_mscoco_val2014_questions.json",
        ),
        (
            QUESTIONS | {"questions": [*QUESTIONS["questions"], {"question": "Why?"}]},
            None,
            {},
            "{folder}/questions.json: question 4 needs question_id, image_id (a number) and "
            "question; give the official questions file, "
            "v2_OpenEnded_mscoco_val2014_questions.json",
        ),
        (
            QUESTIONS | {"questions": [question(42000, 42, "")]},
            None,
            {},
            "{folder}/questions.json: question 42000: field 'question': String should have at "
            "least 1 character",
        ),
        (
            None,
            ANNOTATIONS | {"annotations": ANNOTATIONS["annotations"][:2]},
            {},
            "{folder}/annotations.json: no annotation for question 7000; give the annotations "
            "file of the questions' split (the test splits have none)",
        ),
        (
            None,
            ANNOTATIONS | {"annotations": [{"answers": []}]},
            {},
            "{folder}/annotations.json: annotation 1 has no question_id; give the official "
            "annotations file, v2_mscoco_val2014_annotations.json",
        ),
        (
            None,
            ANNOTATIONS
            | {"annotations": [annotation(42000, 42, RED_ANSWERS) | {"answers": ["red"]}]},
            {},
            "{folder}/annotations.json: question 42000: 'answers' must be a list of "
            '{{"answer": ...}}; give the official annotations file, '
            "v2_mscoco_val2014_annotations.json",
        ),
        (
            QUESTIONS | {"questions": [question(42000, 42, "What?"), question(8000, 8, "Who?")]},
            ANNOTATIONS
            | {"annotations": [annotation(42000, 42, ["a"]), annotation(8000, 8, ["b"])]},
            {},
            "{folder}/questions.json: question 8000: image COCO_val2014_000000000008.jpg not "
            "found in {folder}/val2014; set `images:` to the folder of the COCO val2014 images",
        ),
        (
            None,
            None,
            {"images": "."},
            "{folder}/questions.json: question 42000: image COCO_val2014_000000000042.jpg not "
            "found in {folder} (and 1 more images); set `images:` to the folder of the COCO "
            "val2014 images",
        ),
    ],
)
def test_bad_official_files_are_one_line_naming_file_and_question(
    tmp_path: Path,
    questions: object | None,
    annotations: object | None,
    fields: dict[str, object],
    message: str,
) -> None:
    path = write_vqav2(tmp_path, questions, annotations, **fields)
    with pytest.raises(SuiteError) as caught:
        load_suite(path)
    assert str(caught.value) == message.format(folder=tmp_path.resolve())
    assert gc.isenabled()
