"""The image index and indexing: per-encoder collections, idempotency, pruning, failures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sensorium.tools import ImageStore, UserError
from sensorium.tools.errors import IndexUnavailableError
from sensorium.tools.indexer import index_images
from sensorium.tools.vector_index import ImageIndex, IndexedImage, image_id, open_client


class MeanColourEncoder:
    """A tiny deterministic encoder: an image's vector is its normalised mean colour."""

    id = "test:mean-colour"
    dimension = 3

    def __init__(self) -> None:
        self.batches: list[int] = []

    def describe_images(self, images: list[Image.Image]) -> tuple[np.ndarray, list[str]]:
        self.batches.append(len(images))
        vectors = np.array([np.asarray(i, dtype=np.float32).mean((0, 1)) + 1 for i in images])
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors, ["colour"] * len(images)


def make_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in range(count):
        path = folder / f"img{n:03d}.png"
        Image.new("RGB", (16, 16), (n * 7 % 256, n * 13 % 256, n * 29 % 256)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def index(tmp_path: Path) -> ImageIndex:
    return ImageIndex(open_client(tmp_path / "chroma"), MeanColourEncoder.id, 3)


@pytest.fixture
def reader(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path / "images")


def test_indexing_is_batched_and_records_metadata(
    tmp_path: Path, index: ImageIndex, reader: ImageStore
) -> None:
    paths = make_images(tmp_path / "photos", 5)
    encoder = MeanColourEncoder()
    report = index_images(index, encoder, reader, [tmp_path / "photos"], batch_size=2)
    assert (report.added, report.replaced, report.unchanged) == (5, 0, 0)
    assert encoder.batches == [2, 2, 1]
    entry = index.entries()[str(paths[0].resolve())]
    assert entry.id == image_id(paths[0])
    assert entry.size == paths[0].stat().st_size
    assert (entry.width, entry.height, entry.labels) == (16, 16, "colour")
    assert len(entry.sha256) == 64


def test_reindexing_skips_unchanged_replaces_changed_and_prunes_removed(
    tmp_path: Path, index: ImageIndex, reader: ImageStore
) -> None:
    folder = tmp_path / "photos"
    paths = make_images(folder, 4)
    encoder = MeanColourEncoder()
    index_images(index, encoder, reader, [folder])
    again = index_images(index, encoder, reader, [folder])
    assert (again.added, again.replaced, again.unchanged) == (0, 0, 4)
    Image.new("RGB", (16, 16), (250, 0, 0)).save(paths[1])
    paths[2].unlink()
    changed = index_images(index, encoder, reader, [folder])
    assert (changed.added, changed.replaced, changed.unchanged, changed.pruned) == (0, 1, 2, 0)
    assert index.count() == 4  # without --prune the removed file stays
    pruned = index_images(index, encoder, reader, [folder], prune=True)
    assert pruned.pruned == 1
    assert sorted(Path(p).name for p in index.entries()) == [
        "img000.png",
        "img001.png",
        "img003.png",
    ]


def test_pruning_only_touches_the_given_folders(
    tmp_path: Path, index: ImageIndex, reader: ImageStore
) -> None:
    encoder = MeanColourEncoder()
    kept = make_images(tmp_path / "kept", 2)
    make_images(tmp_path / "other", 2)
    index_images(index, encoder, reader, [tmp_path / "kept", tmp_path / "other"])
    kept[0].unlink()
    report = index_images(index, encoder, reader, [tmp_path / "other"], prune=True)
    assert report.pruned == 0 and index.count() == 4


def test_unreadable_files_are_reported_not_fatal(
    tmp_path: Path, index: ImageIndex, reader: ImageStore
) -> None:
    folder = tmp_path / "photos"
    make_images(folder, 3)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "empty.jpg").touch()
    report = index_images(index, MeanColourEncoder(), reader, [folder, tmp_path / "nowhere"])
    assert report.added == 3
    reasons = dict(report.failed)
    assert reasons[str(tmp_path / "nowhere")] == "not found"
    assert "is not an image Pillow can read" in reasons[str(folder / "broken.png")]
    assert "is empty (0 bytes)" in reasons[str(folder / "empty.jpg")]


def test_search_returns_the_closest_images_first(
    tmp_path: Path, index: ImageIndex, reader: ImageStore
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, rgb in {"red": (250, 0, 0), "green": (0, 250, 0), "blue": (0, 0, 250)}.items():
        Image.new("RGB", (8, 8), rgb).save(folder / f"{name}.png")
    encoder = MeanColourEncoder()
    index_images(index, encoder, reader, [folder])
    query = encoder.describe_images([Image.new("RGB", (8, 8), (200, 10, 10))])[0][0]
    hits = index.search(query, k=2)
    assert len(hits) == 2 and Path(hits[0].path).name == "red.png"
    assert hits[0].score > hits[1].score
    assert len(index.search(query, k=50)) == 3


def test_an_empty_index_finds_nothing(index: ImageIndex) -> None:
    assert index.search(np.array([1.0, 0.0, 0.0]), k=5) == []


def test_vectors_from_another_space_are_refused(index: ImageIndex) -> None:
    with pytest.raises(UserError, match=r"do not fit this 3-d index \(encoder test:mean-colour\)"):
        index.search(np.ones(384), k=3)


def test_a_collection_made_by_another_encoder_is_refused(tmp_path: Path) -> None:
    client = open_client(tmp_path / "chroma")
    ImageIndex(client, "encoder-a", 3)
    name = next(c.name for c in client.list_collections())
    client.get_collection(name).modify(metadata={"encoder": "encoder-b", "dimension": 3})
    with pytest.raises(IndexUnavailableError, match="the index was built by encoder 'encoder-b'"):
        ImageIndex(open_client(tmp_path / "chroma"), "encoder-a", 3)


def test_chroma_never_embeds_text_itself(tmp_path: Path, index: ImageIndex) -> None:
    index.upsert(
        [IndexedImage(id="x", path="/x.png", sha256="0" * 64, size=1)], np.array([[1.0, 0, 0]])
    )
    reopened = ImageIndex(open_client(tmp_path / "chroma"), MeanColourEncoder.id, 3)
    assert [h.id for h in reopened.search(np.array([1.0, 0, 0]), k=1)] == ["x"]
    with pytest.raises(Exception, match="Sensorium passes its own vectors"):
        reopened._collection.query(query_texts=["a cat"], n_results=1)
