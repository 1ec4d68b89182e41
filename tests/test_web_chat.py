"""The web chat in a real headless Chromium: upload an image, ask, and wait for the reply and the
evidence rows in the page. The screenshot is kept in build/test-artifacts/web-chat.png.

Chromium is Debian's package (`apt-get install chromium`; `make browser` installs it). The test
finds it through $SENSORIUM_CHROMIUM, else `chromium`, `chromium-browser` or `google-chrome` on
PATH, and drives it over the DevTools protocol (a websocket; no browser-automation package).
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websocket

from sensorium import Settings
from sensorium.agent import Agent
from sensorium.graphs import sqlite_checkpointer
from sensorium.server import create_app

ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"


def find_chromium() -> str:
    candidates = [os.environ.get("SENSORIUM_CHROMIUM", "")]
    candidates += [
        shutil.which(name) or "" for name in ("chromium", "chromium-browser", "google-chrome")
    ]
    found = next((c for c in candidates if c and Path(c).exists()), None)
    if found is None:
        pytest.fail(
            "no Chromium to test the web chat with: `make browser` (or `apt-get install "
            "chromium`), or set SENSORIUM_CHROMIUM to a Chromium or Chrome binary"
        )
    return found


class Page:
    """One browser tab, driven over the DevTools protocol."""

    def __init__(self, url: str) -> None:
        self.socket = websocket.create_connection(url, timeout=60, suppress_origin=True)
        self.ids = itertools.count(1)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        self.socket.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == number:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(
            f"timed out waiting for {expression}: {self.evaluate('document.body.innerText')}"
        )


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path / "data", llm={"backend": "none"})  # type: ignore[arg-type]
    agent = Agent(
        settings, chat_model=None, checkpointer=sqlite_checkpointer(settings.threads_path)
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(agent), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=15)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    profile = tmp_path / "chromium-profile"
    browser = subprocess.Popen(
        [
            find_chromium(),
            "--headless=new",
            "--no-sandbox",  # tests may run as root, where the sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1200,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json", timeout=10).json()
        tab = next(t for t in targets if t["type"] == "page")
        page = Page(tab["webSocketDebuggerUrl"])
        yield page
        page.socket.close()
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()


def test_upload_ask_and_watch_the_evidence_fill_in(
    server_url: str, page: Page, chelsea: Path
) -> None:
    page.send("Page.enable")
    page.send("Page.navigate", url=server_url)
    page.wait_for("document.readyState === 'complete' && !!document.querySelector('#question')")
    # Nothing but the server itself was asked for.
    hosts = page.evaluate("performance.getEntriesByType('resource').map(e => new URL(e.name).host)")
    assert all(host == server_url.split("//")[1] for host in hosts), hosts
    document = page.send("DOM.getDocument")["root"]["nodeId"]
    file_input = page.send("DOM.querySelector", nodeId=document, selector="#file")["nodeId"]
    page.send("DOM.setFileInputFiles", nodeId=file_input, files=[str(chelsea)])
    page.wait_for("document.querySelector('#attached').textContent === '1 image'")
    page.evaluate("document.querySelector('#question').value = 'What animal is this?'")
    page.evaluate("document.querySelector('#send').click()")
    page.wait_for("document.querySelector('.turn[data-done]') !== null")
    reply = page.evaluate("document.querySelector('.turn .reply').textContent")
    assert "cat" in reply.lower(), reply
    rows = page.evaluate(
        "[...document.querySelectorAll('.evidence-row')]"
        ".map(row => [...row.cells].map(cell => cell.textContent))"
    )
    experts = {row[0]: row for row in rows}
    assert {"classify", "answer_question"} <= set(experts), rows
    # The calibrated confidence (on photos it is far below the expert's own 0.96).
    assert experts["classify"][1] == "cat" and 0.0 <= float(experts["classify"][2]) <= 0.99
    # One confidence per answer, the calibrated one; the expert's own only on hover.
    titles = page.evaluate(
        "[...document.querySelectorAll('.evidence-row')].map(row => row.cells[2].title)"
    )
    assert any(title.startswith("calibrated; the expert's own: ") for title in titles), titles
    assert (
        "decided: cat" in page.evaluate("document.querySelector('.provenance').textContent").lower()
    )
    assert page.evaluate("document.querySelector('.thumbs img') !== null")  # the image it saw
    # The thread is listed, and opening it shows the conversation again.
    page.wait_for("document.querySelectorAll('#threads li').length === 1")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = page.send("Page.captureScreenshot", format="png")["data"]
    (ARTIFACTS / "web-chat.png").write_bytes(base64.b64decode(shot))
    page.evaluate("document.querySelector('#threads li').click()")
    page.wait_for("document.querySelectorAll('#log .turn').length === 2")
    assert (
        page.evaluate("document.querySelector('#log .question').textContent")
        == "What animal is this?"
    )
