"""The official VQA v2 files as a suite's data: `data: vqav2:QUESTIONS.json,ANNOTATIONS.json`.

Each question is a vqa row: its id is the question_id, its answers the ten human answers
(duplicates kept: the official metric counts them), its image the COCO file
`COCO_<data_subtype>_<image_id, 12 digits>.jpg` in the suite's `images:` folder.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sensorium.evals.suite import VQAV2_PREFIX, Row, SuiteError, VqaRow, _first_error

SYNTAX = f"data: {VQAV2_PREFIX}QUESTIONS.json,ANNOTATIONS.json"
OFFICIAL_NAMES = {
    "questions": "v2_OpenEnded_mscoco_val2014_questions.json",
    "annotations": "v2_mscoco_val2014_annotations.json",
}


def vqav2_rows(spec: str, task: str, base: Path, images: Path) -> tuple[list[Row], str, Path]:
    """The rows of the files `spec` names (relative to `base`), their digest, and the
    questions file; every row's image must be in `images`."""
    names = [name.strip() for name in spec.removeprefix(VQAV2_PREFIX).split(",")]
    if len(names) != 2 or not all(names):
        raise SuiteError(
            f"data {spec!r}: name the questions file, then the annotations file: `{SYNTAX}`"
        )
    if task != "vqa":
        raise SuiteError(f"the VQA v2 files hold VQA rows; set `task: vqa` (not {task})")
    questions, annotations = ((base / Path(name).expanduser()).resolve() for name in names)
    # The val set is a million small objects: collecting garbage while they pile up rescans
    # them again and again, which doubled the load time. Nothing here makes cycles.
    collecting = gc.isenabled()
    gc.disable()
    try:
        rows, digest = _rows(questions, annotations, images)
    finally:
        if collecting:
            gc.enable()
    return rows, digest, questions


def _rows(questions_path: Path, annotations_path: Path, images: Path) -> tuple[list[Row], str]:
    digest = hashlib.sha256()
    questions_file = _read(questions_path, "questions", digest)
    annotations = _read(annotations_path, "annotations", digest)["annotations"]
    subtype = questions_file.get("data_subtype")
    if not isinstance(subtype, str) or not subtype:
        raise SuiteError(
            f"{questions_path}: no 'data_subtype' (such as val2014, which names the COCO "
            f"images); give the official questions file, {OFFICIAL_NAMES['questions']}"
        )
    # References into the parsed file, not copies: the val annotations are 300 MB of JSON.
    by_question: dict[Any, dict[str, Any]] = {}
    for number, annotation in enumerate(annotations, 1):
        if not isinstance(annotation, dict) or "question_id" not in annotation:
            raise SuiteError(
                f"{annotations_path}: annotation {number} has no question_id; give the "
                f"official annotations file, {OFFICIAL_NAMES['annotations']}"
            )
        by_question[annotation["question_id"]] = annotation
    rows = [
        _row(entry, number, subtype, by_question, questions_path, annotations_path)
        for number, entry in enumerate(questions_file["questions"], 1)
    ]
    _check_images(rows, images, subtype, questions_path)
    return rows, digest.hexdigest()


def _read(path: Path, key: str, digest: Any) -> dict[str, Any]:
    """One official file, parsed; it must hold the list `key`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SuiteError(
            f"cannot read VQA v2 {key} file {path}: {exc.strerror or exc}; "
            f"paths in `{SYNTAX}` are relative to the suite file"
        ) from None
    digest.update(data)
    try:
        parsed = json.loads(data)
    except json.JSONDecodeError as exc:
        raise SuiteError(
            f"{path}:{exc.lineno}: not valid JSON ({exc.msg}); "
            f"give the official {key} file, {OFFICIAL_NAMES[key]}"
        ) from None
    except UnicodeDecodeError:
        raise SuiteError(
            f"{path}: not valid JSON (not UTF-8 text); give the official {key} file, "
            f"{OFFICIAL_NAMES[key]}"
        ) from None
    if not isinstance(parsed, dict) or not isinstance(parsed.get(key), list):
        other = "annotations" if key == "questions" else "questions"
        hint = (
            f"it looks like the {other} file: name the questions file first, `{SYNTAX}`"
            if isinstance(parsed, dict) and other in parsed
            else f"give the official {key} file, {OFFICIAL_NAMES[key]}"
        )
        raise SuiteError(f"{path}: no '{key}' list; {hint}")
    return parsed


def _row(
    entry: Any,
    number: int,
    subtype: str,
    by_question: dict[Any, dict[str, Any]],
    questions_path: Path,
    annotations_path: Path,
) -> Row:
    try:
        question_id, image_id, question = entry["question_id"], entry["image_id"], entry["question"]
        image = f"COCO_{subtype}_{image_id:012d}.jpg"
    except (KeyError, TypeError, ValueError):
        raise SuiteError(
            f"{questions_path}: question {number} needs question_id, image_id (a number) and "
            f"question; give the official questions file, {OFFICIAL_NAMES['questions']}"
        ) from None
    annotation = by_question.get(question_id)
    if annotation is None:
        raise SuiteError(
            f"{annotations_path}: no annotation for question {question_id}; give the "
            "annotations file of the questions' split (the test splits have none)"
        )
    try:
        answers = [answer["answer"] for answer in annotation["answers"]]
        return VqaRow(id=str(question_id), image=image, question=question, answers=answers)
    except (KeyError, TypeError):
        raise SuiteError(
            f"{annotations_path}: question {question_id}: 'answers' must be a list of "
            f'{{"answer": ...}}; give the official annotations file, '
            f"{OFFICIAL_NAMES['annotations']}"
        ) from None
    except ValidationError as exc:
        raise SuiteError(f"{questions_path}: question {question_id}: {_first_error(exc)}") from None


def _check_images(rows: list[Row], images: Path, subtype: str, path: Path) -> None:
    """One listing of the folder, not a stat per question (val2014: 214,354 questions)."""
    present = {entry.name for entry in os.scandir(images) if entry.is_file()}
    missing: dict[str, str] = {}
    for row in rows:
        if isinstance(row, VqaRow) and row.image not in present:
            missing.setdefault(row.image, row.id)
    if missing:
        name, question_id = next(iter(missing.items()))
        more = f" (and {len(missing) - 1} more images)" if len(missing) > 1 else ""
        raise SuiteError(
            f"{path}: question {question_id}: image {name} not found in {images}{more}; "
            f"set `images:` to the folder of the COCO {subtype} images"
        )
