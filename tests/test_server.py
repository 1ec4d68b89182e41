"""The HTTP server in process: the native API with Server-Sent Events, the OpenAI-compatible
endpoint, threads, the web page, and every bad request as a one-line 4xx."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from sensorium import Settings
from sensorium.agent import Agent
from sensorium.graphs import sqlite_checkpointer
from sensorium.server import create_app
from sensorium.tools import ModelHost


def data_url(path: Path) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()


def make_client(settings: Settings, token: str | None = None) -> TestClient:
    agent = Agent(
        settings, chat_model=None, checkpointer=sqlite_checkpointer(settings.threads_path)
    )
    return TestClient(create_app(agent, token=token))


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with make_client(settings) as client:
        yield client


def events(
    client: TestClient, body: dict[str, Any], path: str = "/api/turns"
) -> list[tuple[str, Any]]:
    """The (event, data) pairs of a streamed turn."""
    found = []
    with client.stream("POST", path, json=body | {"stream": True}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    for block in text.strip().split("\n\n"):
        kind = re.search(r"^event: (.*)$", block, re.M)
        data = re.search(r"^data: (.*)$", block, re.M)
        assert data, block
        found.append((kind.group(1) if kind else "", data.group(1)))
    return found


def test_a_turn_answers_with_its_evidence_and_continues_its_thread(
    client: TestClient, chelsea: Path
) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    first = client.post(
        "/api/turns", json={"question": "What animal is this?", "images": [data_url(chelsea)]}
    )
    assert first.status_code == 200, first.text
    turn = first.json()
    assert turn["answer"].lower() == "cat" and turn["evidence"] and turn["decisions"]
    # The same JSON as `sensorium ask --json`; the next turn keeps the thread's image.
    thread = turn["thread_id"]
    again = client.post("/api/turns", json={"question": "Is it a cat?", "thread_id": thread})
    assert again.json()["answer"] == "yes"
    assert again.json()["images"][0]["sha256"] == turn["images"][0]["sha256"]
    listed = client.get("/api/threads").json()
    assert [t["id"] for t in listed] == [thread] and listed[0]["title"] == "What animal is this?"
    history = client.get(f"/api/threads/{thread}").json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[2]["content"] == "Is it a cat?"
    assert client.delete(f"/api/threads/{thread}").status_code == 204
    assert client.get("/api/threads").json() == []
    assert client.get(f"/api/threads/{thread}").status_code == 404


def test_a_streamed_turn_sends_calls_evidence_and_decisions_before_the_reply(
    client: TestClient, chelsea: Path
) -> None:
    found = events(client, {"question": "What animal is this?", "images": [data_url(chelsea)]})
    kinds = [kind for kind, _ in found]
    assert kinds[-1] == "reply" and kinds.count("reply") == 1
    assert kinds.index("tool_call") < kinds.index("evidence") < kinds.index("decision")
    evidence = [json.loads(data)["evidence"] for kind, data in found if kind == "evidence"]
    assert {e["expert"] for e in evidence} >= {"classify", "answer_question"}
    assert all("vector" not in e["payload"] for e in evidence)
    reply = json.loads(found[-1][1])
    assert reply["answer"].lower() == "cat" and len(reply["evidence"]) == len(evidence)


def test_images_upload_once_and_are_used_by_reference(client: TestClient, chelsea: Path) -> None:
    stored = client.post("/api/images", content=chelsea.read_bytes()).json()
    sha = stored["sha256"]
    assert (stored["width"], stored["height"]) == (451, 300)
    served = client.get(f"/api/images/{sha}")  # the store keeps a normalised copy
    assert served.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(served.content)).size == (451, 300)
    turn = client.post("/api/turns", json={"question": "What animal is this?", "images": [sha]})
    assert turn.json()["answer"].lower() == "cat"


def test_search_and_index_over_http(client: TestClient, chelsea: Path, red_image: Path) -> None:
    report = client.post("/api/index", json={"paths": [str(chelsea), str(red_image)]}).json()
    assert report["added"] == 2
    hits = client.post("/api/search", json={"text": "a cat", "k": 1}).json()["hits"]
    assert Path(hits[0]["path"]).name == "chelsea.jpg"
    tools = {t["name"] for t in client.get("/api/tools").json()}
    assert {"classify", "colours", "retrieve"} <= tools


def test_openai_chat_completion_plain_and_streamed(client: TestClient, chelsea: Path) -> None:
    message = {
        "role": "user",
        "content": [
            {"type": "text", "text": "What animal is this?"},
            {"type": "image_url", "image_url": {"url": data_url(chelsea)}},
        ],
    }
    plain = client.post("/v1/chat/completions", json={"model": "sensorium", "messages": [message]})
    assert plain.status_code == 200, plain.text
    body = plain.json()
    reply = body["choices"][0]["message"]["content"]
    assert body["object"] == "chat.completion" and "cat" in reply.lower()
    assert body["sensorium"]["decisions"][0]["answer"].lower() == "cat"  # provenance travels
    # The client resends the conversation: the same thread continues, with its image.
    follow = {"role": "user", "content": "Is it a dog?"}
    again = client.post(
        "/v1/chat/completions",
        json={"messages": [message, {"role": "assistant", "content": reply}, follow]},
    ).json()
    assert again["sensorium"]["thread_id"] == body["sensorium"]["thread_id"]
    assert again["sensorium"]["answer"] == "no"
    chunks = [
        json.loads(data)
        for _, data in events(client, {"messages": [message]}, "/v1/chat/completions")
        if data != "[DONE]"
    ]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert (
        "cat" in text.lower()
        and len([c for c in chunks if c["choices"][0]["delta"].get("content")]) >= 3
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop" and "sensorium" in chunks[-1]
    assert any(c.get("sensorium_event", {}).get("kind") == "evidence" for c in chunks)
    assert client.get("/v1/models").json()["data"][0]["id"] == "sensorium"


def test_the_api_is_described_and_the_page_loads_nothing_from_elsewhere(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/turns", "/api/threads", "/v1/chat/completions", "/healthz"} <= set(paths)
    page = client.get("/").text
    assert "<title>Sensorium</title>" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(http" not in page


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/api/turns", {"question": ""}, 400, "the question is empty"),
        ("/api/turns", {"question": 3}, 400, "question: Input should be a valid string"),
        ("/api/turns", {"question": "x", "images": ["http://host/a.jpg"]}, 400, "not fetched"),
        (
            "/api/turns",
            {"question": "x", "images": ["data:image/png;base64,AAAA"]},
            400,
            "not an image",
        ),
        (
            "/api/turns",
            {"question": "x", "images": ["data:image/png;base64,@@"]},
            400,
            "not valid base64",
        ),
        ("/api/turns", {"question": "x", "images": ["0" * 64]}, 400, "is not in the store"),
        (
            "/api/turns",
            {"question": "x", "images": ["c:/x.jpg"]},
            400,
            "unreadable image reference",
        ),
        ("/api/turns", {"question": "x", "tools": ["nope"]}, 400, "unknown expert 'nope'"),
        ("/api/turns", {"question": "x", "images": ["0" * 64] * 9}, 400, "the limit is 8"),
        ("/api/turns", {"question": "x", "stream": True, "tools": ["nope"]}, 400, "unknown expert"),
        ("/v1/chat/completions", {"messages": []}, 400, "messages: List should have at least 1"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "assistant", "content": "hi"}]},
            400,
            "must be the user's",
        ),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": [{"type": "audio"}]}]},
            400,
            "not supported",
        ),
        ("/api/search", {}, 400, "give a text to search for"),
        ("/api/threads/none", None, 404, "no thread 'none'"),
        ("/api/images/abc", None, 404, "no stored image"),
        ("/nowhere", None, 404, "Not Found"),
    ],
)
def test_bad_requests_get_one_line_json_errors(
    client: TestClient, path: str, body: Any, status: int, message: str
) -> None:
    response = client.get(path) if body is None else client.post(path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]["message"]
    assert message in error and "\n" not in error and "Traceback" not in error


def test_a_body_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", llm={"backend": "none"}, server={"max_request_mb": 0.01}
    )  # type: ignore[arg-type]
    with make_client(settings) as client:
        response = client.post("/api/images", content=b"x" * 20_000)
        assert response.status_code == 413
        assert "over the 0.01 MB limit" in response.json()["error"]["message"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield from (b"x" * 4096 for _ in range(5))

        response = client.post("/api/images", content=chunked())
        assert response.status_code == 413


def test_a_token_guards_everything_but_health_and_the_page(settings: Settings) -> None:
    with make_client(settings, token="s3cret") as client:
        assert client.get("/healthz").status_code == 200 and client.get("/").status_code == 200
        refused = client.get("/api/threads")
        assert refused.status_code == 401 and "API token" in refused.json()["error"]["message"]
        assert (
            client.get("/api/threads", headers={"Authorization": "Bearer wrong"}).status_code == 401
        )
        assert client.get("/api/threads", headers={"Authorization": "Bearer s3cret"}).json() == []


def test_cross_origin_calls_are_refused_unless_configured(
    settings: Settings, tmp_path: Path
) -> None:
    origin = {"Origin": "http://elsewhere.example", "Access-Control-Request-Method": "POST"}
    with make_client(settings) as client:
        assert (
            "access-control-allow-origin"
            not in client.options("/api/turns", headers=origin).headers
        )
    allowed = settings.model_copy(
        update={
            "server": settings.server.model_copy(
                update={"cors_origins": ["http://elsewhere.example"]}
            )
        }
    )
    with make_client(allowed) as client:
        preflight = client.options("/api/turns", headers=origin)
        assert preflight.headers["access-control-allow-origin"] == "http://elsewhere.example"


@pytest.mark.parametrize("fault", ["crash", "timeout"])
def test_a_failing_expert_still_completes_every_conversation(
    tmp_path: Path, chelsea: Path, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    settings = Settings(data_dir=tmp_path / "data", llm={"backend": "none"}, expert_timeout_s=3.0)  # type: ignore[arg-type]

    def broken(*args: Any, **kwargs: Any) -> Any:
        if fault == "timeout":
            time.sleep(5)
        raise RuntimeError("boom")

    with make_client(settings) as client:
        body = {"question": "What animal is this?", "images": [data_url(chelsea)]}
        assert client.post("/api/turns", json=body).status_code == 200  # models loaded
        agent: Agent = client.app.state.agent  # type: ignore[attr-defined]
        monkeypatch.setattr(agent.registry.get("classify"), "fn", broken)
        with ThreadPoolExecutor(4) as pool:
            turns = list(pool.map(lambda _: client.post("/api/turns", json=body), range(4)))
    for turn in turns:
        assert turn.status_code == 200, turn.text
        classify = [e for e in turn.json()["evidence"] if e["expert"] == "classify"]
        expected = "timed out after 3 s" if fault == "timeout" else "boom"
        assert classify and expected in classify[0]["error"]
        assert turn.json()["answer"].lower() == "cat"  # the other expert still answered


def test_concurrent_conversations_share_the_standard_experts_forward_passes(
    tmp_path: Path, tiny: dict[str, Path], chelsea: Path, red_image: Path
) -> None:
    models = {role: str(tiny[role]) for role in ("clip", "blip_caption", "blip_vqa", "vilt_vqa")}
    settings = Settings(
        profile="standard",
        data_dir=tmp_path / "data",
        llm={"backend": "none"},  # type: ignore[arg-type]
        models=models,  # type: ignore[arg-type]
    )
    host = ModelHost("cpu", max_batch=16, max_wait_ms=200)  # a wide window: 2 cores are slow
    agent = Agent(
        settings,
        chat_model=None,
        host=host,
        checkpointer=sqlite_checkpointer(settings.threads_path),
    )
    images = [data_url(chelsea), data_url(red_image)]
    with TestClient(create_app(agent)) as client:
        warm = client.post(
            "/api/turns", json={"question": "What animal is this?", "images": images[:1]}
        )
        assert warm.status_code == 200, warm.text  # models loaded
        before = client.get("/healthz").json()["batching"]

        def converse(n: int) -> int:
            body = {"question": "What animal is this?", "images": [images[n % 2]]}
            return client.post("/api/turns", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(converse, range(8))) == [200] * 8
        after = client.get("/healthz").json()["batching"]
    shared = {
        name: (
            after[name]["items"] - before[name]["items"],
            after[name]["batches"] - before[name]["batches"],
        )
        for name in after
    }
    # Eight conversations, fewer forward passes than requests on some expert's model.
    assert any(items > batches > 0 for items, batches in shared.values()), shared


def test_turns_on_one_thread_take_turns(client: TestClient, chelsea: Path) -> None:
    first = client.post(
        "/api/turns", json={"question": "What is this?", "images": [data_url(chelsea)]}
    )
    thread = first.json()["thread_id"]
    questions = ["Is it a cat?", "Is this a cat?", "Is there a cat?", "Is it a dog?"]
    with ThreadPoolExecutor(4) as pool:
        replies = list(
            pool.map(
                lambda q: client.post("/api/turns", json={"question": q, "thread_id": thread}),
                questions,
            )
        )
    assert [r.json()["answer"] for r in replies] == ["yes", "yes", "yes", "no"]
    history = client.get(f"/api/threads/{thread}").json()["messages"]
    # One after another: each question directly followed by its own reply.
    assert [m["role"] for m in history] == ["user", "assistant"] * 5
    assert sorted(m["content"] for m in history[2::2]) == sorted(questions)
    runner = client.app.state.runner  # type: ignore[attr-defined]
    assert runner.in_flight == 0 and not runner._locks  # nothing left behind


def test_image_urls_are_fetched_only_when_configured(tmp_path: Path, chelsea: Path) -> None:
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(chelsea.parent))
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{web.server_address[1]}/chelsea.jpg"
    body = {"question": "What animal is this?", "images": [url]}
    try:
        settings = Settings(
            data_dir=tmp_path / "data", llm={"backend": "none"}, server={"fetch_image_urls": True}
        )  # type: ignore[arg-type]
        with make_client(settings) as client:
            assert client.post("/api/turns", json=body).json()["answer"].lower() == "cat"
            missing = client.post("/api/turns", json={"question": "What?", "images": [url + "x"]})
            assert (
                missing.status_code == 400
                and "could not fetch" in missing.json()["error"]["message"]
            )
    finally:
        web.shutdown()
