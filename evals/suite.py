"""Suites: a YAML file naming a task, its data (JSONL rows or a built-in dataset), the image
folder and the metrics. Anyone can write one without Python; `docs/evals.md` has the format
and `sensorium eval schema` prints its JSON Schema.

Every problem is reported with the file, the line and the field, so a typo in row 412 of a
hand-written suite is found in seconds.
"""

from __future__ import annotations

import hashlib
import json
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sensorium.evals.datasets import builtin_rows, resolve_folder
from sensorium.tools import UserError

Task = Literal["vqa", "caption", "retrieval", "routing", "agent"]

TASK_METRICS: dict[str, tuple[str, ...]] = {
    "vqa": ("vqa_accuracy", "ece", "latency"),
    "caption": ("bleu4", "rouge_l", "cider_d", "latency"),
    "retrieval": ("recall@1", "recall@5", "recall@10", "mrr", "latency"),
    "routing": ("exact_match", "tool_precision_recall", "latency"),
    "agent": ("exact_match", "tool_precision_recall", "vqa_accuracy", "ece", "latency"),
}
# Metrics a suite may ask for instead of its task's defaults: `answer_match` scores answers
# against a list of acceptable ones, where the official VQA accuracy (ten human answers,
# leave-one-out) would score a single acceptable answer 0.
OPTIONAL_METRICS: dict[str, tuple[str, ...]] = {
    "vqa": ("answer_match",),
    "agent": ("answer_match",),
}
VQAV2_PREFIX = "vqav2:"
# Tasks that may search an indexed collection: `corpus` is indexed before the first sample.
CORPUS_TASKS = ("retrieval", "routing", "agent")


class SuiteError(UserError):
    """A suite file or one of its rows is invalid (the message names file, line and field)."""


class SuiteFile(BaseModel):
    """The YAML suite file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="names the run")
    task: Task
    description: str = ""
    data: str = Field(
        description="a JSONL file (relative to the suite file), a built-in dataset: "
        "'easy-vqa:test', 'easy-vqa:train', or the official VQA v2 question and annotation "
        "files (relative to the suite file): 'vqav2:QUESTIONS.json,ANNOTATIONS.json'"
    )
    images: str | None = Field(
        None,
        description="folder the rows' image paths are relative to (relative to the suite "
        "file), or 'skimage' for scikit-image's bundled photos; default: the suite's folder",
    )
    corpus: str | None = Field(
        None,
        description="retrieval and agent: the folder of images indexed as the user's collection "
        "('skimage' for scikit-image's photos; retrieval's default: images)",
    )
    texts: str | None = Field(
        None,
        description="retrieval: a text collection (JSONL with id and text, or one text per "
        "line; relative to the suite file) searched instead of images; `relevant` then names "
        "text ids (image -> text retrieval)",
    )
    metrics: list[str] | None = Field(None, description="metrics to report (default: the task's)")
    experts: list[str] | None = Field(
        None,
        description="vqa/caption: the experts asked on every sample (default: every installed "
        "expert that answers questions (vqa) or describes images (caption))",
    )
    request: str = Field(
        "Describe this image.", description="caption: what the agent is asked for each image"
    )

    @model_validator(mode="after")
    def _corpus_where_searched(self) -> SuiteFile:
        if self.corpus is not None and self.task not in CORPUS_TASKS:
            raise ValueError(
                f"field 'corpus' applies to tasks {list(CORPUS_TASKS)}, not {self.task!r}"
            )
        return self

    @model_validator(mode="after")
    def _texts_for_retrieval(self) -> SuiteFile:
        if self.texts is not None and self.task != "retrieval":
            raise ValueError(f"field 'texts' applies to task 'retrieval', not {self.task!r}")
        return self

    @model_validator(mode="after")
    def _known_metrics(self) -> SuiteFile:
        allowed = TASK_METRICS[self.task] + OPTIONAL_METRICS.get(self.task, ())
        unknown = [m for m in self.metrics or [] if m not in allowed]
        if unknown:
            raise ValueError(
                f"metrics {unknown} do not apply to task {self.task!r}; choose from {list(allowed)}"
            )
        return self


class Row(BaseModel):
    """Fields every row has."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)


class VqaRow(Row):
    """A question about an image with its acceptable (or ten human) answers."""

    image: str
    question: str = Field(min_length=1)
    answers: list[str] = Field(min_length=1)
    options: list[str] = Field(
        default_factory=list,
        description="the choices a multiple-choice question offered (recorded; not yet shown "
        "to the experts)",
    )


class CaptionRow(Row):
    """An image with reference captions."""

    image: str
    references: list[str] = Field(min_length=1)


class RetrievalRow(Row):
    """A text and/or image query with the corpus images that count as correct results."""

    query: str | None = None
    query_image: str | None = None
    relevant: list[str] = Field(min_length=1)

    @model_validator(mode="after")
    def _has_query(self) -> RetrievalRow:
        if not (self.query or self.query_image):
            raise ValueError("give 'query', 'query_image' or both")
        return self


class RoutingRow(Row):
    """A request and the experts it needs. `image`: an image path, or true for a stand-in."""

    request: str = Field(min_length=1)
    image: str | bool | None = None
    # `[]`: no expert should run (a text-only question the LLM answers itself, or a request no
    # expert can serve, which is declined).
    expected_tools: list[str] = Field(
        description="the experts the request needs, in the order of the steps; [] for none"
    )


class AgentRow(Row):
    """A whole turn: a request, its images, and what should come out of it."""

    request: str = Field(min_length=1)
    image: str | list[str] | None = None
    # Without `expected_tools` the plan is not scored, and `[]` expects no expert to run;
    # without `answers` the answer is not scored.
    expected_tools: list[str] | None = Field(
        None, description="the experts the turn needs, in the order of the steps; [] for none"
    )
    answers: list[str] | None = Field(None, min_length=1)


ROW_MODELS: dict[str, type[Row]] = {
    "vqa": VqaRow,
    "caption": CaptionRow,
    "retrieval": RetrievalRow,
    "routing": RoutingRow,
    "agent": AgentRow,
}


class Suite(BaseModel):
    """A loaded suite: its file, its rows, and the content hash that keys its results."""

    file: SuiteFile
    path: Path
    rows: list[Row]
    images: Path
    corpus: Path | None = None
    texts: Path | None = Field(None, description="the text collection a retrieval searches")
    digest: str = Field(description="sha256 of the suite file and its data")

    @property
    def name(self) -> str:
        """The suite's name."""
        return self.file.name

    @property
    def task(self) -> str:
        """The suite's task."""
        return self.file.task

    @property
    def metrics(self) -> list[str]:
        """The metrics to report."""
        return list(self.file.metrics or TASK_METRICS[self.file.task])

    @property
    def answer_metric(self) -> Literal["vqa_accuracy", "answer_match"]:
        """How answers are scored: the official VQA accuracy unless the suite asks for
        `answer_match` (acceptable answers rather than ten human ones)."""
        return "answer_match" if "answer_match" in self.metrics else "vqa_accuracy"

    def image_path(self, name: str) -> Path:
        """A row's image path, resolved against the image folder."""
        return (self.images / name).resolve()


def builtin_suites() -> dict[str, Path]:
    """The suites that ship with Sensorium, by name."""
    folder = Path(str(files("sensorium.evals").joinpath("suites")))
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))}


def resolve_suite_paths(spec: str) -> list[Path]:
    """A suite file, a built-in suite's name, or a prefix naming several ('photos')."""
    path = Path(spec).expanduser()
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise SuiteError(f"suite file {spec} not found; give a YAML file or a built-in name")
        return [path]
    builtin = builtin_suites()
    if spec in builtin:
        return [builtin[spec]]
    family = [p for name, p in builtin.items() if name.startswith(f"{spec}-")]
    if family:
        return family
    raise SuiteError(
        f"no suite file or built-in suite named {spec!r}; built-in: {', '.join(builtin)}"
    )


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file and all of its rows; raises `SuiteError` naming the spot."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
        raw = yaml.safe_load(text)
    except OSError as exc:
        raise SuiteError(f"cannot read suite {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise SuiteError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise SuiteError(f"{path}: a suite is a YAML mapping with name, task and data")
    try:
        suite_file = SuiteFile.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(f"{path}: {_first_error(exc)}") from None
    base = path.parent
    images = resolve_folder(suite_file.images, base) if suite_file.images else base
    corpus = resolve_folder(suite_file.corpus, base) if suite_file.corpus else None
    if suite_file.task == "retrieval" and corpus is None:
        corpus = images
    for label, folder in (("images", images), ("corpus", corpus)):
        if folder is not None and not folder.is_dir():
            raise SuiteError(f"{path}: field '{label}': folder {folder} not found")
    model = ROW_MODELS[suite_file.task]
    data_path = path
    if suite_file.data.startswith(VQAV2_PREFIX):
        # Imported here because it builds on this module (SuiteError).
        from sensorium.evals.vqav2 import vqav2_rows

        rows, data_digest, data_path = vqav2_rows(suite_file.data, suite_file.task, base, images)
    elif ":" in suite_file.data and not suite_file.data.endswith(".jsonl"):
        dataset_rows, data_digest, images = builtin_rows(suite_file.data, suite_file.task)
        rows = [_validate(model, row, path, 0) for row in dataset_rows]
    else:
        data_path = (base / suite_file.data).resolve()
        rows, data_digest = _read_jsonl(data_path, model)
    texts = (base / suite_file.texts).resolve() if suite_file.texts else None
    texts_digest = b""
    if texts is not None:
        if not texts.is_file():
            raise SuiteError(f"{path}: field 'texts': file {texts} not found")
        texts_digest = hashlib.sha256(texts.read_bytes()).hexdigest().encode()
    suite = Suite(
        file=suite_file,
        path=path.resolve(),
        rows=rows,
        images=images,
        corpus=corpus,
        texts=texts,
        digest=hashlib.sha256(text.encode() + data_digest.encode() + texts_digest).hexdigest(),
    )
    if texts is not None:
        _check_text_ids(suite, data_path)
    if not suite_file.data.startswith(VQAV2_PREFIX):  # vqav2_rows checked them, per image
        _check_images(suite, data_path)
    return suite


def _read_jsonl(path: Path, model: type[Row]) -> tuple[list[Row], str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SuiteError(f"cannot read suite data {path}: {exc.strerror or exc}") from None
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        row = _validate(model, raw, path, number)
        if row.id in seen:
            raise SuiteError(f"{path}:{number}: field 'id': {row.id!r} repeats line {seen[row.id]}")
        seen[row.id] = number
        rows.append(row)
    if not rows:
        raise SuiteError(f"{path}: no rows; write one JSON object per line")
    return rows, hashlib.sha256(data).hexdigest()


def _validate(model: type[Row], raw: Any, path: Path, line: int) -> Row:
    where = f"{path}:{line}" if line else str(path)
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: a row is a JSON object, not {type(raw).__name__}")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise SuiteError(f"{where}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field (check the spelling; `sensorium eval schema` lists the fields)"
    extra = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"field '{field}': {message}{extra}" if field else f"{message}{extra}"


def _check_images(suite: Suite, data_path: Path) -> None:
    """Every image a row names must exist, so a run never stops half-way on a typo."""
    for number, row in enumerate(suite.rows, 1):
        for field, name in _image_fields(row, texts=suite.texts is not None):
            folder = suite.corpus if field == "relevant" else suite.images
            assert folder is not None
            if not (folder / name).is_file():
                raise SuiteError(
                    f"{data_path}:{number}: field '{field}': image {name} not found in {folder}"
                )


def _check_text_ids(suite: Suite, data_path: Path) -> None:
    """Every text a row counts as relevant must be in the suite's collection."""
    from sensorium.tools.text_index import read_entries

    assert suite.texts is not None
    try:
        known = {entry.id for entry in read_entries(suite.texts)}
    except UserError as exc:
        raise SuiteError(str(exc)) from None
    for number, row in enumerate(suite.rows, 1):
        assert isinstance(row, RetrievalRow)
        missing = [text_id for text_id in row.relevant if text_id not in known]
        if missing:
            raise SuiteError(
                f"{data_path}:{number}: field 'relevant': text id {missing[0]!r} is not in "
                f"{suite.texts}"
            )


def _image_fields(row: Row, texts: bool = False) -> list[tuple[str, str]]:
    if isinstance(row, VqaRow | CaptionRow):
        return [("image", row.image)]
    if isinstance(row, RetrievalRow):
        named = [] if texts else [("relevant", name) for name in row.relevant]
        return [("query_image", row.query_image), *named] if row.query_image else named
    if isinstance(row, RoutingRow) and isinstance(row.image, str):
        return [("image", row.image)]
    if isinstance(row, AgentRow) and row.image:
        return [
            ("image", name) for name in ([row.image] if isinstance(row.image, str) else row.image)
        ]
    return []


def suite_json_schema() -> dict[str, Any]:
    """JSON Schema of the suite file, with the row schema of each task under `$defs`."""
    schema = SuiteFile.model_json_schema()
    schema["$defs"] = schema.get("$defs", {}) | {
        f"{task}_row": model.model_json_schema() for task, model in ROW_MODELS.items()
    }
    return schema
