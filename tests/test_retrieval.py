"""Retrieval end to end: `sensorium index` / `search` on real photos, interruption, a Chroma
server over HTTP, the retriever expert with a follow-up stage, and image memory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import skimage.data
from PIL import Image

from sensorium import Agent, Settings

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PHOTOS = ["chelsea", "coffee", "astronaut", "rocket", "camera", "horse", "moon", "coins"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Copies of scikit-image's bundled photos."""
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.png")
    return folder


def sensorium(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "sensorium"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def search(*args: str, env: dict[str, str] | None = None) -> list[dict[str, object]]:
    result = sensorium("search", *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_index_then_search_by_text_image_and_both(photos: Path) -> None:
    first = sensorium("index", str(photos), "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["added"] == len(PHOTOS)
    hits = search("a cat")
    assert Path(str(hits[0]["path"])).name == "chelsea.png"
    assert {"path", "score", "id"} <= set(hits[0])
    assert Path(str(search("--image", str(photos / "coffee.png"))[0]["path"])).name == "coffee.png"
    composed = search("a cup", "--image", str(photos / "coffee.png"), "--k", "3")
    assert len(composed) == 3 and Path(str(composed[0]["path"])).name == "coffee.png"
    again = sensorium("index", str(photos), "--json")
    assert json.loads(again.stdout) | {"failed": []} == {
        "added": 0, "replaced": 0, "unchanged": len(PHOTOS), "pruned": 0, "failed": [],
        "total": len(PHOTOS),
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", ""], "error: the search text is empty"),
        (["search"], "error: give a TEXT to search for, --image PATH, or both"),
        (["search", "--image", "/nowhere.png"], "error: image not found: /nowhere.png"),
    ],
)
def test_bad_searches_are_one_line(args: list[str], message: str) -> None:
    result = sensorium(*args)
    assert result.returncode == 1
    assert result.stderr.strip().startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_index_completes_on_the_next_run(
    tmp_path: Path, how: signal.Signals
) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    # Enough work after the signal that a slow, loaded machine cannot finish before it lands.
    count = 200
    for n in range(count):
        colour = (n % 51 * 5, 255 - n % 51 * 5, (n * 37) % 256)
        Image.new("RGB", (48, 48), colour).save(folder / f"{n}.png")
    process = subprocess.Popen(
        [str(BIN / "sensorium"), "index", str(folder), "--batch-size", "2"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        # A shell runs background jobs with SIGINT ignored, and children inherit that (Python
        # then installs no KeyboardInterrupt handler): give the child the default back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith("indexed 8/"):
            process.send_signal(how)
            break
    process.wait(timeout=120)
    assert process.returncode != 0  # it really was interrupted mid-way
    done = sensorium("index", str(folder), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["total"] == count
    assert report["unchanged"] >= 8 and report["added"] + report["unchanged"] == count
    hits = search("anything", "--k", str(count))
    assert len({h["path"] for h in hits}) == len(hits) == count


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    """A real `chroma run` on loopback, stopped by its process id."""
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "chroma"), "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("chroma run did not answer on loopback")
        yield url
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_index_and_search_against_a_chroma_server(photos: Path, chroma_server: str) -> None:
    env = {"SENSORIUM_INDEX__URL": chroma_server}
    indexed = sensorium("index", str(photos), "--json", env=env)
    assert indexed.returncode == 0, indexed.stderr
    assert json.loads(indexed.stdout)["total"] == len(PHOTOS)
    assert Path(str(search("a cat", env=env)[0]["path"])).name == "chelsea.png"


def test_a_dead_server_is_one_line_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = sensorium("search", "a cat", env={"SENSORIUM_INDEX__URL": url})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and url in lines[0] and lines[0].startswith("error: ")


@pytest.fixture(scope="module")
def agent(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Agent:
    from sensorium.tools.indexer import index_images

    agent = Agent(Settings(data_dir=tmp_path_factory.mktemp("agent")), chat_model=None)
    index_images(agent.open_index(), agent.encoder, agent.images, [photos])
    return agent


def test_retrieve_then_describe_in_one_turn(agent: Agent) -> None:
    result = agent.ask("find my photos of cats and describe the first one")
    assert [e.expert for e in result.evidence] == ["retrieve", "caption"]
    found = result.evidence[0].payload["hits"]
    assert Path(found[0]["path"]).name == "chelsea.png"
    caption = result.evidence[1]
    assert caption.image == found[0]["sha256"]
    assert caption.answer is not None and "cat" in caption.answer
    assert result.answer == caption.answer
    assert "retrieve:" in result.reply and "cat" in result.reply


def test_later_turns_resolve_references_to_earlier_images(agent: Agent, photos: Path) -> None:
    thread = "memory"
    first = agent.ask("show me pictures of coffee", thread_id=thread)
    second_hit = first.evidence[0].payload["hits"][1]
    follow = agent.ask("What is in the second one?", thread_id=thread)
    assert {e.image for e in follow.evidence} == {second_hit["sha256"]}
    assert any("refers to" in note for note in follow.plan.notes)
    agent.ask(
        "What colour is this?", [photos / "chelsea.png", photos / "rocket.png"], thread_id=thread
    )
    cat = agent.ask("Describe that cat picture", thread_id=thread)
    chelsea = agent.images.add(photos / "chelsea.png")
    assert cat.images == [chelsea]
    assert "cat" in (cat.answer or "")


def test_search_by_example_image_in_a_turn(agent: Agent, photos: Path) -> None:
    result = agent.ask("Which of my photos looks like this one?", [photos / "coffee.png"])
    hits = result.evidence[0].payload["hits"]
    assert Path(hits[0]["path"]).name == "coffee.png"
    assert hits[0]["score"] > 0.99
