"""The text collection: captions, descriptions, notes or labels that belong with the photos, in
Chroma, embedded with the profile's joint encoder so an image can find its texts (and a text
its neighbours). One collection per encoder, as for images; opening it with another encoder is
refused, because its vectors would be compared with vectors from another space.

Collection files are JSONL (`{"id": ..., "text": ..., other keys are metadata}`; `id` defaults
to a digest of the text) or plain text (one entry per non-empty line). Indexing is idempotent by
id and content: an entry whose text and metadata are unchanged is not embedded again, and an
interrupted run loses at most one batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from sensorium.tools.errors import UserError
from sensorium.tools.vector_index import VectorCollection, batched, cosine_score

COLLECTION_PREFIX = "sensorium-texts"
Progress = Callable[[int, int], None]


class TextEntry(BaseModel):
    """One text of a collection, with what else its file said about it."""

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """Changes when the text or the metadata changes (re-embed, replace)."""
        content = json.dumps([self.text, self.metadata], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(content.encode()).hexdigest()[:16]


class TextHit(BaseModel):
    """One text found, with its cosine similarity to the query."""

    id: str
    text: str
    score: float
    metadata: dict[str, Any] = Field(default_factory=dict)


class TextIndexReport(BaseModel):
    """What one `index_texts` run did."""

    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    total: int = 0


def read_entries(path: Path) -> list[TextEntry]:
    """The entries of a collection file; a bad file is one `UserError` naming file and line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read it as UTF-8 text ({type(exc).__name__})") from None
    entries: list[TextEntry] = []
    jsonl = Path(path).suffix.lower() in (".jsonl", ".ndjson")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if not jsonl:
            text = line.strip()
            entries.append(TextEntry(id=_digest(text), text=text))
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not a JSON object ({exc.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: each line must be a JSON object with a 'text'")
        text = row.pop("text", None)
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{path}:{number}: field 'text' is missing or empty")
        entry_id = row.pop("id", None)
        entries.append(
            TextEntry(
                id=str(entry_id) if entry_id not in (None, "") else _digest(text),
                text=text.strip(),
                metadata={k: _flat(v) for k, v in row.items()},
            )
        )
    if not entries:
        raise UserError(f"{path}: no entries (the file is empty); add one text per line")
    return entries


class TextIndex(VectorCollection):
    """Text embeddings in Chroma, searched by vectors from one encoder."""

    prefix = COLLECTION_PREFIX
    what = "text collection"

    def fingerprints(self) -> dict[str, str]:
        """Each indexed id's content fingerprint."""
        found = self._collection.get(include=["metadatas"])
        return {
            item_id: str((meta or {}).get("_fingerprint", ""))
            for item_id, meta in zip(found["ids"], found["metadatas"] or [], strict=True)
        }

    def upsert(self, entries: Sequence[TextEntry], vectors: np.ndarray) -> None:
        """Add or replace entries with their vectors (one atomic batch)."""
        self._check(vectors)
        self._collection.upsert(
            ids=[entry.id for entry in entries],
            embeddings=vectors.astype(np.float32).tolist(),
            documents=[entry.text for entry in entries],
            metadatas=[entry.metadata | {"_fingerprint": entry.fingerprint} for entry in entries],
        )

    def search(self, vector: np.ndarray, k: int = 10) -> list[TextHit]:
        """The `k` texts closest to a query vector, best first (score = cosine similarity)."""
        found = self._nearest(vector, k, ["metadatas", "documents"])
        return [
            TextHit(
                id=item_id,
                text=str(document),
                score=cosine_score(distance),
                metadata={k: v for k, v in (meta or {}).items() if not k.startswith("_")},
            )
            for item_id, meta, document, distance in zip(
                found["ids"],
                found["metadatas"],
                found["documents"],
                found["distances"],
                strict=True,
            )
        ]


def index_texts(
    index: TextIndex,
    encode: Callable[[list[str]], np.ndarray],
    paths: Sequence[Path],
    *,
    batch_size: int = 64,
    progress: Progress | None = None,
) -> TextIndexReport:
    """Embed and store the entries of collection files that are new or changed."""
    entries: dict[str, TextEntry] = {}
    for path in paths:  # every file is read (and checked) before anything is written
        for entry in read_entries(path):
            entries[entry.id] = entry  # a later line with the same id wins
    known = index.fingerprints()
    todo = [e for e in entries.values() if known.get(e.id) != e.fingerprint]
    report = TextIndexReport(unchanged=len(entries) - len(todo))
    done = 0
    for batch in batched(todo, batch_size):
        index.upsert(batch, encode([entry.text for entry in batch]))
        report.added += sum(1 for entry in batch if entry.id not in known)
        report.replaced += sum(1 for entry in batch if entry.id in known)
        done += len(batch)
        if progress:
            progress(done, len(todo))
    report.total = index.count()
    return report


def _digest(text: str) -> str:
    return hashlib.sha1(text.strip().encode()).hexdigest()[:16]


def _flat(value: Any) -> str | int | float | bool:
    """A metadata value Chroma can store (nested values as JSON)."""
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, ensure_ascii=False)
