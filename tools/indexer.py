"""Indexing folders of images: idempotent, batched, and safe to interrupt.

Each file is keyed by its path and checked by the sha256 of its bytes: an unchanged file is
skipped, a changed file replaces its entry, and `prune` removes entries whose files are gone.
Batches are written to the index as they are encoded, each in one upsert, so an interrupted
run loses at most the batch in flight and the next run picks up where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image
from pydantic import BaseModel, Field

from sensorium.tools.errors import ImageInputError
from sensorium.tools.images import ImageStore
from sensorium.tools.vector_index import ImageIndex, IndexedImage, image_id

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


class ImageEncoder(Protocol):
    """What indexing needs from an encoder."""

    id: str
    dimension: int

    def describe_images(self, images: list[Image.Image]) -> tuple[np.ndarray, list[str]]:
        """Vectors and label summaries for a batch of images."""
        ...


class IndexReport(BaseModel):
    """What one indexing run did."""

    added: int = 0
    replaced: int = 0
    unchanged: int = 0
    pruned: int = 0
    failed: list[tuple[str, str]] = Field(
        default_factory=list, description="(path, reason) for files that could not be read"
    )


def find_images(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files under `paths` (folders walked recursively, sorted), and missing paths."""
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif path.is_file():
            found.append(path)
        else:
            missing.append((str(raw), "not found"))
    return list(dict.fromkeys(found)), missing


Progress = Callable[[int, int], None]


def index_images(
    index: ImageIndex,
    encoder: ImageEncoder,
    reader: ImageStore,
    paths: Iterable[str | Path],
    *,
    batch_size: int = 32,
    prune: bool = False,
    progress: Progress | None = None,
) -> IndexReport:
    """Bring the index up to date with the image files under `paths`.

    Args:
        index: where vectors go
        encoder: the joint encoder of the active profile
        reader: checks and decodes files (its size and pixel limits apply)
        paths: files and folders to index
        batch_size: images encoded per forward pass and written per upsert
        prune: also remove entries for files under `paths` that no longer exist
        progress: called with (files done, files total) after each batch
    """
    roots = [Path(p).expanduser().resolve() for p in paths]
    files, failed = find_images(roots)
    report = IndexReport(failed=failed)
    known = index.entries()
    pending: list[tuple[Path, str, Image.Image]] = []
    done = 0
    skipped = 0  # unchanged or unreadable files, counted for progress

    def flush() -> None:
        nonlocal done
        if not pending:
            return
        vectors, labels = encoder.describe_images([image for _, _, image in pending])
        entries = [
            IndexedImage(
                id=image_id(path),
                path=str(path),
                sha256=sha,
                size=path.stat().st_size,
                width=image.width,
                height=image.height,
                labels=label,
            )
            for (path, sha, image), label in zip(pending, labels, strict=True)
        ]
        index.upsert(entries, vectors)
        for entry in entries:
            if entry.path in known:
                report.replaced += 1
            else:
                report.added += 1
        done += len(pending)
        pending.clear()
        if progress:
            progress(done + skipped, len(files))

    for path in files:
        try:
            sha, image = reader.read(path)
        except ImageInputError as exc:
            report.failed.append((str(path), str(exc)))
            skipped += 1
            continue
        previous = known.get(str(path))
        if previous is not None and previous.sha256 == sha:
            report.unchanged += 1
            skipped += 1
            continue
        pending.append((path, sha, image))
        if len(pending) >= batch_size:
            flush()
    flush()
    if progress and not done:  # nothing was encoded: report the skipped files once
        progress(skipped, len(files))
    if prune:
        present = {str(p) for p in files}
        gone = [
            entry.id
            for entry in known.values()
            if entry.path not in present and _under(Path(entry.path), roots)
        ]
        index.delete(gone)
        report.pruned = len(gone)
    return report


def _under(path: Path, roots: list[Path]) -> bool:
    return any(path == root or root in path.parents for root in roots)
