"""The image index: a Chroma collection of image embeddings, one collection per encoder.

Vectors are always ours. Chroma never embeds anything: the collection is bound to a
registered placeholder embedding function that refuses to run, so neither a query by text
nor a reopened collection can fall back to Chroma's default model (which downloads weights).
The collection records which encoder and dimension made it; opening it with another encoder
is refused, because its vectors would be compared with vectors from another space.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from sensorium.tools.errors import IndexUnavailableError, SensoriumError, UserError

COLLECTION_PREFIX = "sensorium-images"


class IndexedImage(BaseModel):
    """One image file in the index."""

    id: str
    path: str
    sha256: str
    size: int
    width: int = 0
    height: int = 0
    labels: str = Field("", description="top classifier labels, for display and filtering")


class SearchHit(BaseModel):
    """One search result: the image and its cosine similarity to the query."""

    id: str
    path: str
    score: float
    sha256: str
    labels: str = ""


def image_id(path: str | Path) -> str:
    """A stable id per file path: re-indexing a changed file replaces its entry."""
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()


def _refusing_embedding_function(encoder: str, dimension: int) -> Any:
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from chromadb.utils.embedding_functions import (
        known_embedding_functions,
        register_embedding_function,
    )

    class SensoriumVectors(EmbeddingFunction[Documents]):
        """Stands in for Chroma's embedding function and refuses to embed."""

        def __init__(self, encoder: str = "", dimension: int = 0) -> None:
            self.encoder = encoder
            self.dimension = dimension

        def __call__(self, input: Documents) -> Embeddings:
            raise UserError(
                "Chroma was asked to embed text itself; Sensorium passes its own vectors "
                f"(encoder {self.encoder}); query with embeddings"
            )

        @staticmethod
        def name() -> str:
            return "sensorium-vectors"

        def get_config(self) -> dict[str, Any]:
            return {"encoder": self.encoder, "dimension": self.dimension}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> SensoriumVectors:
            return SensoriumVectors(str(config.get("encoder", "")), int(config.get("dimension", 0)))

        def default_space(self) -> Any:
            return "cosine"

    if "sensorium-vectors" not in known_embedding_functions:
        register_embedding_function(SensoriumVectors)  # type: ignore[no-untyped-call]
    return known_embedding_functions["sensorium-vectors"](encoder, dimension)


def open_client(path: Path | None = None, url: str | None = None) -> Any:
    """A Chroma client: embedded at `path`, or over HTTP to a `chroma run` server at `url`."""
    try:
        import chromadb
        from chromadb.config import Settings as ChromaSettings
    except ImportError:
        raise UserError("the image index needs chromadb; pip install chromadb") from None
    settings = ChromaSettings(anonymized_telemetry=False)
    if url:
        from urllib.parse import urlparse

        parsed = urlparse(url)
        if not parsed.hostname or parsed.scheme not in ("http", "https"):
            raise UserError(f"index.url {url!r} is not an http(s) URL like http://127.0.0.1:8000")
        try:
            return chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or (443 if parsed.scheme == "https" else 80),
                ssl=parsed.scheme == "https",
                settings=settings,
            )
        except Exception as exc:
            raise IndexUnavailableError(
                f"cannot reach the Chroma server at {url} ({type(exc).__name__}); "
                "start it with `chroma run` or fix index.url"
            ) from None
    assert path is not None
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


def open_collection(client: Any, prefix: str, encoder: str, dimension: int, what: str) -> Any:
    """The collection `prefix` keeps for `encoder`; one made by another encoder (or of another
    dimension) is refused, since its vectors live in another space."""
    function = _refusing_embedding_function(encoder, dimension)
    name = f"{prefix}-{hashlib.sha1(encoder.encode()).hexdigest()[:10]}"
    try:
        collection = client.get_or_create_collection(
            name,
            embedding_function=function,
            metadata={"encoder": encoder, "dimension": dimension, "hnsw:space": "cosine"},
        )
    except SensoriumError:
        raise
    except Exception as exc:
        raise IndexUnavailableError(f"cannot open the {what}: {exc}") from None
    recorded = collection.metadata or {}
    if recorded.get("encoder") != encoder or recorded.get("dimension") != dimension:
        raise IndexUnavailableError(
            f"the {what} was built by encoder {recorded.get('encoder')!r} "
            f"({recorded.get('dimension')}-d), not {encoder!r} ({dimension}-d); "
            "re-index with the active profile"
        )
    return collection


class VectorCollection:
    """A Chroma collection of one encoder's vectors: opened (refusing another encoder's),
    counted, its vectors checked, searched. `ImageIndex` and `TextIndex` add what they store."""

    prefix = COLLECTION_PREFIX
    what = "index"  # how messages name it

    def __init__(self, client: Any, encoder: str, dimension: int) -> None:
        self.encoder = encoder
        self.dimension = dimension
        self._collection = open_collection(client, self.prefix, encoder, dimension, self.what)

    def count(self) -> int:
        """How many entries are stored."""
        return int(self._collection.count())

    def _nearest(self, vector: np.ndarray, k: int, include: list[str]) -> dict[str, Any]:
        """Chroma's answer for the `k` entries closest to `vector` (first query only)."""
        self._check(vector[None, :])
        if k < 1:
            raise UserError(f"k must be at least 1, not {k}")
        # No count() first: it is a second round trip per query. Chroma (>= 1.0) returns
        # fewer than `k` hits when fewer are stored, and none from an empty collection.
        fields = [*include, "distances"]
        result = self._collection.query(
            query_embeddings=[vector.astype(np.float32).tolist()], n_results=k, include=fields
        )
        return {key: result[key][0] for key in ["ids", *fields]}

    def _check(self, vectors: np.ndarray) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise UserError(
                f"vectors of shape {vectors.shape} do not fit this {self.dimension}-d "
                f"{self.what} (encoder {self.encoder})"
            )


def cosine_score(distance: float) -> float:
    """Chroma's cosine distance as a similarity (at most 1)."""
    return min(1.0, 1.0 - float(distance))


class ImageIndex(VectorCollection):
    """Image embeddings in Chroma, searched by vectors from one encoder."""

    def entries(self) -> dict[str, IndexedImage]:
        """Every indexed image by path."""
        found = self._collection.get(include=["metadatas"])
        entries = {}
        for item_id, meta in zip(found["ids"], found["metadatas"] or [], strict=True):
            entry = IndexedImage(id=item_id, **dict(meta))
            entries[entry.path] = entry
        return entries

    def upsert(self, images: Sequence[IndexedImage], vectors: np.ndarray) -> None:
        """Add or replace images with their vectors (one atomic batch)."""
        self._check(vectors)
        self._collection.upsert(
            ids=[image.id for image in images],
            embeddings=vectors.astype(np.float32).tolist(),
            metadatas=[image.model_dump(exclude={"id"}) for image in images],
        )

    def delete(self, ids: Sequence[str]) -> None:
        """Remove images by id."""
        if ids:
            self._collection.delete(ids=list(ids))

    def search(self, vector: np.ndarray, k: int = 10) -> list[SearchHit]:
        """The `k` images closest to a query vector, best first (score = cosine similarity)."""
        found = self._nearest(vector, k, ["metadatas"])
        return [
            SearchHit(
                id=item_id,
                path=str(meta["path"]),
                score=cosine_score(distance),
                sha256=str(meta["sha256"]),
                labels=str(meta.get("labels", "")),
            )
            for item_id, meta, distance in zip(
                found["ids"], found["metadatas"], found["distances"], strict=True
            )
        ]


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
