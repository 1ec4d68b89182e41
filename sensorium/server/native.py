"""The native API under `/api`: turns (JSON, or Server-Sent Events as the turn runs), threads,
images, search, index and tools."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from langchain_core.messages import HumanMessage
from pydantic import BaseModel, Field

from sensorium.agent import Agent, ReplyEvent, TurnEvent
from sensorium.server.threads import ThreadInfo
from sensorium.server.turns import TurnRunner
from sensorium.tools import ImageRef, UserError


class TurnRequest(BaseModel):
    """One question, with images, on a thread."""

    question: str = Field(description="what to ask")
    images: list[str] | None = Field(
        None,
        description="data URLs (data:image/jpeg;base64,...) or sha256 of stored images; "
        "None keeps the images of the thread's previous turn",
    )
    thread_id: str | None = Field(None, description="continue this thread (None: a new one)")
    tools: list[str] | None = Field(None, description="ask exactly these experts")
    stream: bool = Field(False, description="answer with Server-Sent Events as the turn runs")


class SearchRequest(BaseModel):
    """Indexed images closest to a text, an example image, or both."""

    text: str | None = None
    image: str | None = Field(None, description="a data URL or the sha256 of a stored image")
    k: int = Field(10, ge=1, le=100)


class IndexRequest(BaseModel):
    """Files and folders on the server's machine to index for search."""

    paths: list[str] = Field(min_length=1)
    prune: bool = False


class ThreadHistory(BaseModel):
    """A thread and its questions and replies."""

    thread: ThreadInfo | None
    messages: list[dict[str, str]]


def native_routes() -> APIRouter:
    """The `/api` routes (the app's state holds the runner)."""
    api = APIRouter(prefix="/api", tags=["native"])

    @api.post("/turns", response_model=None)
    async def turn(body: TurnRequest, request: Request) -> JSONResponse | StreamingResponse:
        """Ask a question: the reply with its decisions, plan and evidence (the same JSON as
        `sensorium ask --json`); with `stream`, Server-Sent Events as the turn runs: `tool_call`,
        `evidence`, `decision`, `token`, and last `reply`."""
        runner: TurnRunner = request.app.state.runner
        images = await runner.images(body.images)
        events = runner.stream(body.question, images, thread_id=body.thread_id, tools=body.tools)
        if not body.stream and "text/event-stream" not in request.headers.get("accept", ""):
            async for event in events:
                if isinstance(event, ReplyEvent):
                    return JSONResponse(event.result.summary())
            raise AssertionError("a turn always ends with its reply")
        first = await anext(events)  # bad input fails here, as a 400, before the stream starts
        return StreamingResponse(
            server_sent_events(first, events),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    @api.get("/threads")
    def threads(request: Request, limit: int = 100) -> list[ThreadInfo]:
        """Threads, most recently used first."""
        runner: TurnRunner = request.app.state.runner
        return runner.threads.list(limit)

    @api.get("/threads/{thread_id}")
    def history(thread_id: str, request: Request) -> ThreadHistory:
        """A thread's questions and replies (404 for a thread nobody asked on)."""
        runner: TurnRunner = request.app.state.runner
        messages = runner.agent.history(thread_id)
        info = runner.threads.get(thread_id)
        if info is None and not messages:
            raise NotFound(f"no thread {thread_id!r}; list threads with GET /api/threads")
        return ThreadHistory(
            thread=info,
            messages=[
                {"role": "user" if isinstance(m, HumanMessage) else "assistant", "content": m.text}
                for m in messages
            ],
        )

    @api.delete("/threads/{thread_id}", status_code=204)
    def delete(thread_id: str, request: Request) -> Response:
        """Forget a thread: its messages and image memory."""
        runner: TurnRunner = request.app.state.runner
        runner.agent.forget(thread_id)
        runner.threads.delete(thread_id)
        return Response(status_code=204)

    @api.post("/images")
    async def upload(request: Request) -> ImageRef:
        """Store an image sent as the raw request body (any image type); refer to it by its
        sha256 in turns and searches."""
        runner: TurnRunner = request.app.state.runner
        data = await request.body()
        return runner.agent.add_image(data)

    @api.get("/images/{sha256}", response_class=Response)
    def image(sha256: str, request: Request) -> Response:
        """A stored image's bytes."""
        agent: Agent = request.app.state.agent
        try:
            path = agent.images.require(sha256)
        except Exception:
            raise NotFound(f"no stored image {sha256[:12]!r}") from None
        return Response(path.read_bytes(), media_type=_media_type(path))

    @api.post("/search")
    def search(body: SearchRequest, request: Request) -> dict[str, Any]:
        """Indexed images closest to the query, with their scores."""
        runner: TurnRunner = request.app.state.runner
        example = runner.image(body.image) if body.image else None
        hits = runner.agent.search(body.text, image=example, k=body.k)
        return {"hits": [hit.model_dump() for hit in hits]}

    @api.post("/index")
    def index(body: IndexRequest, request: Request) -> dict[str, Any]:
        """Index files and folders on the server's machine (unchanged files are skipped)."""
        agent: Agent = request.app.state.agent
        return agent.index([Path(p) for p in body.paths], prune=body.prune).model_dump()

    @api.get("/tools")
    def tools(request: Request) -> list[dict[str, Any]]:
        """The enabled experts: what each is for, its arguments and examples."""
        from sensorium.cli.tools import describe

        agent: Agent = request.app.state.agent
        return [describe(tool, agent.settings) for tool in agent.registry]

    return api


class NotFound(UserError):
    """A thread or image the server does not have (404)."""


async def server_sent_events(
    first: TurnEvent, rest: AsyncIterator[TurnEvent]
) -> AsyncIterator[str]:
    """The turn's events as SSE: `event: <kind>` and one line of JSON each."""
    yield sse(first)
    async for event in rest:
        yield sse(event)


def sse(event: TurnEvent) -> str:
    """One Server-Sent Event."""
    return f"event: {event.kind}\ndata: {json.dumps(event_json(event), ensure_ascii=False)}\n\n"


def event_json(event: TurnEvent) -> dict[str, Any]:
    """An event as plain JSON (embeddings left out: they are large and of no use to clients)."""
    if isinstance(event, ReplyEvent):
        return event.result.summary()
    data = event.model_dump(mode="json")
    evidence = data.get("evidence")
    if isinstance(evidence, dict):
        evidence["payload"] = {
            k: v for k, v in evidence.get("payload", {}).items() if k != "vector"
        }
    return data


def _media_type(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(12)
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"
