"""`sensorium serve` as a user runs it: a real process on loopback, called with the official
`openai` client; 32 conversations at once; SIGTERM and SIGKILL; refusing to listen openly."""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

SENSORIUM = [str(Path(sys.executable).with_name("sensorium"))]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str

    def client(self) -> OpenAI:
        return OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(port: int, log: Path, *args: str) -> Server:
    """`sensorium serve --port PORT --no-llm`, ready (its /healthz answers)."""
    handle = log.open("ab")
    process = subprocess.Popen(
        [*SENSORIUM, "serve", "--port", str(port), "--no-llm", *args],
        stdout=handle,
        stderr=subprocess.STDOUT,
        env=os.environ.copy(),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return Server(process, url)
        except httpx.HTTPError:
            time.sleep(0.3)
    process.kill()
    raise AssertionError(f"the server did not come up: {log.read_text()[-2000:]}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = start(free_port(), tmp_path / "server.log")
    yield running
    if running.process.poll() is None:
        running.process.kill()
        running.process.wait()


def image_message(path: Path, question: str) -> dict[str, object]:
    url = "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": question},
            {"type": "image_url", "image_url": {"url": url}},
        ],
    }


def test_the_openai_client_talks_to_sensorium(server: Server, chelsea: Path) -> None:
    client = server.client()
    assert [m.id for m in client.models.list()] == ["sensorium"]
    message = image_message(chelsea, "What animal is this?")
    plain = client.chat.completions.create(model="sensorium", messages=[message])  # type: ignore[list-item]
    assert "cat" in (plain.choices[0].message.content or "").lower()
    provenance = plain.model_extra["sensorium"]  # type: ignore[index]
    assert provenance["decisions"][0]["answer"].lower() == "cat"
    stream = client.chat.completions.create(model="sensorium", messages=[message], stream=True)  # type: ignore[list-item]
    pieces = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(pieces) >= 3 and "cat" in "".join(pieces).lower()


def test_thirty_two_conversations_at_once_all_answer(server: Server, chelsea: Path) -> None:
    client = server.client()
    questions = ["What animal is this?", "Is this a cat?", "What colour is this?", "Describe it."]

    def converse(n: int) -> str:
        message = image_message(chelsea, questions[n % len(questions)])
        reply = client.chat.completions.create(model="sensorium", messages=[message])  # type: ignore[list-item]
        return reply.choices[0].message.content or ""

    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(converse, range(32)))
    assert len(replies) == 32 and all(replies)
    threads = httpx.get(f"{server.url}/api/threads").json()
    assert len(threads) == 32  # one thread per conversation, none mixed up


def test_it_listens_on_loopback_only(server: Server) -> None:
    address = outward_address()
    if address is None:
        pytest.skip("this machine has no address besides loopback")
    port = server.url.rsplit(":", 1)[1]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{address}:{port}/healthz", timeout=3)


def test_sigterm_stops_it_and_sigkill_loses_no_finished_turn(
    server: Server, chelsea: Path, tmp_path: Path
) -> None:
    client = server.client()
    reply = client.chat.completions.create(
        model="sensorium",
        messages=[image_message(chelsea, "What animal is this?")],  # type: ignore[list-item]
    )
    thread = reply.model_extra["sensorium"]["thread_id"]  # type: ignore[index]
    folder = str(chelsea.parent)
    assert (
        httpx.post(f"{server.url}/api/index", json={"paths": [folder]}, timeout=300).json()["added"]
        >= 3
    )
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    port = free_port()
    again = start(port, tmp_path / "again.log")
    try:
        history = httpx.get(f"{again.url}/api/threads/{thread}").json()["messages"]
        assert [m["role"] for m in history] == ["user", "assistant"]
        assert "cat" in history[1]["content"].lower()
        # The index survived the kill and still answers.
        hits = httpx.post(f"{again.url}/api/search", json={"text": "a cat", "k": 1}, timeout=60)
        assert Path(hits.json()["hits"][0]["path"]).name == "chelsea.jpg"
        begun = time.monotonic()
        again.process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: the exit says SIGTERM.
        assert again.process.wait(timeout=15) in (0, -signal.SIGTERM)
        assert "Traceback" not in (tmp_path / "again.log").read_text()
        assert time.monotonic() - begun < 15
    finally:
        if again.process.poll() is None:
            again.process.kill()


def test_listening_openly_needs_a_token(tmp_path: Path) -> None:
    refused = subprocess.run(
        [*SENSORIUM, "serve", "--host", "0.0.0.0", "--port", str(free_port()), "--no-llm"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert refused.returncode == 1
    message = refused.stderr.strip()
    assert "refusing to listen on 0.0.0.0 without a token" in message
    assert "SENSORIUM_API_TOKEN" in message and "\n" not in message


def outward_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("10.254.254.254", 1))
            address = str(sock.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address
