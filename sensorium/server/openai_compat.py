"""The OpenAI-compatible API: `GET /v1/models` and `POST /v1/chat/completions`, plain and
streamed, with images as `image_url` content parts, so the `openai` client and chat front-ends
use Sensorium as a model.

OpenAI clients resend the whole conversation with each request; the thread holding it is
found again by a digest of the messages before the new question. The reply carries the turn's
decisions and evidence in an extra `sensorium` field (in the last chunk when streaming).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from sensorium.agent import ReplyEvent, TurnEvent, TurnResult
from sensorium.server.native import event_json
from sensorium.server.threads import conversation_key
from sensorium.server.turns import TurnRunner
from sensorium.tools import UserError

MODEL_ID = "sensorium"


class ChatMessage(BaseModel):
    """A message as OpenAI's API sends it (other fields are accepted and ignored)."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    """A chat completion request; sampling options are accepted and ignored (the experts
    decide, not a sampler)."""

    model_config = ConfigDict(extra="allow")

    model: str = MODEL_ID
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    sensorium_thread_id: str | None = Field(
        None, description="continue this thread instead of finding it from the messages"
    )


def openai_routes() -> APIRouter:
    """The `/v1` routes."""
    api = APIRouter(prefix="/v1", tags=["openai"])

    @api.get("/models")
    def models() -> dict[str, Any]:
        """The one model this server is."""
        return {
            "object": "list",
            "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "sensorium"}],
        }

    @api.post("/chat/completions", response_model=None)
    async def chat_completions(
        body: ChatRequest, request: Request
    ) -> JSONResponse | StreamingResponse:
        """A reply to the last user message, about the images in the conversation."""
        runner: TurnRunner = request.app.state.runner
        question, image_specs, earlier = _split(body.messages)
        prior = [(role, text) for role, text, _ in earlier]
        thread_id = body.sensorium_thread_id or (
            runner.threads.find(conversation_key(prior)) if prior else None
        )
        if not image_specs and thread_id is None:
            # A conversation this server has not seen: its latest images are the subject.
            image_specs = next((specs for _, _, specs in reversed(earlier) if specs), [])
        images = await runner.images(image_specs) if image_specs else None
        thread_id = thread_id or uuid.uuid4().hex
        events = runner.stream(question, images, thread_id=thread_id)
        completion = f"chatcmpl-{uuid.uuid4().hex[:24]}"

        def remember(result: TurnResult) -> None:
            key = conversation_key([*prior, ("user", question), ("assistant", result.reply)])
            runner.threads.touch(result.thread_id, question, key)

        if not body.stream:
            async for event in events:
                if isinstance(event, ReplyEvent):
                    remember(event.result)
                    return JSONResponse(_completion(completion, body.model, event.result))
            raise AssertionError("a turn always ends with its reply")
        first = await anext(events)  # bad input fails here, as a 400, before the stream starts
        return StreamingResponse(
            _chunks(completion, body.model, first, events, remember),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return api


def _split(
    messages: list[ChatMessage],
) -> tuple[str, list[str], list[tuple[str, str, list[str]]]]:
    """The last user message's text and images, and the user and assistant messages before
    it as (role, text, images)."""
    if messages[-1].role != "user":
        raise UserError("the last message must be the user's question (role 'user')")
    parsed = [(m.role, *_content(m)) for m in messages if m.role in ("user", "assistant")]
    _, question, images = parsed[-1]
    if not question.strip():
        raise UserError("the last user message has no text; ask something about the image")
    return question, images, parsed[:-1]


def _content(message: ChatMessage) -> tuple[str, list[str]]:
    """A message's text and the URLs of its images."""
    if message.content is None or isinstance(message.content, str):
        return message.content or "", []
    texts, images = [], []
    for part in message.content:
        kind = part.get("type")
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            url = part.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if not isinstance(url, str):
                raise UserError("an image_url part needs {'image_url': {'url': '<data URL>'}}")
            images.append(url)
        else:
            raise UserError(
                f"content parts of type {kind!r} are not supported; use text and image_url"
            )
    return "\n".join(texts), images


def _completion(completion: str, model: str, result: TurnResult) -> dict[str, Any]:
    return {
        "id": completion,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.reply},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "sensorium": result.summary(),
    }


async def _chunks(
    completion: str,
    model: str,
    first: TurnEvent,
    rest: AsyncIterator[TurnEvent],
    remember: Callable[[TurnResult], None],
) -> AsyncIterator[str]:
    """`chat.completion.chunk`s: the role, then one (empty) chunk per tool call, piece of
    evidence and decision, carrying it as `sensorium_event`, then the reply in pieces, then
    `[DONE]`. The reply is sent once the turn has decided it: an LLM's draft may be replaced
    by the template when it contradicts the decision."""

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        body = {
            "id": completion,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        } | extra
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})

    async def events() -> AsyncIterator[TurnEvent]:
        yield first
        async for event in rest:
            yield event

    async for event in events():
        if isinstance(event, ReplyEvent):
            remember(event.result)
            for piece in re.findall(r"\S+\s*", event.result.reply) or [""]:
                yield chunk({"content": piece})
            yield chunk({}, "stop", sensorium=event.result.summary())
        elif event.kind != "token":
            yield chunk({}, sensorium_event=event_json(event))
    yield "data: [DONE]\n\n"
