"""Data that ships in packages: the easy-VQA dataset and scikit-image's bundled photos.

Both are optional installs (`pip install 'sensorium[evals]'`); a suite that names one when it
is missing gets a line saying which package to install.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from sensorium.tools import UserError

EVALS_EXTRA = "pip install 'sensorium[evals]'"


def package_folder(package: str, *parts: str) -> Path:
    """A folder inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"this suite needs the {package!r} package; install it: {EVALS_EXTRA}")
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def resolve_folder(spec: str, base: Path) -> Path:
    """An image folder: 'skimage' (scikit-image's photos) or a path relative to `base`."""
    if spec == "skimage":
        return package_folder("skimage", "data")
    return (base / spec).expanduser().resolve()


def builtin_rows(spec: str, task: str) -> tuple[list[dict[str, Any]], str, Path]:
    """Rows of a built-in dataset ('easy-vqa:test'), their digest, and their image folder."""
    name, _, split = spec.partition(":")
    if name != "easy-vqa" or split not in {"train", "test"}:
        raise UserError(
            f"unknown built-in dataset {spec!r}; use 'easy-vqa:test' or 'easy-vqa:train', "
            "or a JSONL file ending in .jsonl"
        )
    if task != "vqa":
        raise UserError(f"the dataset {spec} holds VQA rows; set `task: vqa` (not {task})")
    folder = package_folder("easy_vqa", "data", split)
    questions_file = folder / "questions.json"
    data = questions_file.read_bytes()
    rows = [
        {
            "id": f"{split}-{number:05d}",
            "image": f"images/{image_id}.png",
            "question": question,
            "answers": [answer],
        }
        for number, (question, answer, image_id) in enumerate(json.loads(data))
    ]
    return rows, hashlib.sha256(data).hexdigest(), folder
