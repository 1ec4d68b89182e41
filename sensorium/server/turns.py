"""Running the agent's turns for HTTP clients: images from requests, one turn at a time per
thread, and the agent's event stream handed from its worker thread to the event loop."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor

from sensorium.agent import Agent, ReplyEvent, TurnEvent
from sensorium.agent.settings import ServerSettings
from sensorium.server.threads import ThreadList
from sensorium.tools import ImageRef, UserError

_SHA256 = re.compile(r"[0-9a-f]{64}")
_DATA_URL = re.compile(r"data:(image/[\w.+-]+)?(;[\w=.-]+)*;base64,", re.IGNORECASE)
_DONE = object()


class TurnRunner:
    """Runs turns on a pool of worker threads (the agent's API is synchronous); turns on one
    thread wait for each other, turns on different threads run side by side."""

    def __init__(self, agent: Agent, threads: ThreadList, settings: ServerSettings) -> None:
        self.agent = agent
        self.threads = threads
        self.settings = settings
        # Experts batch requests across turns, so a wide pool shares forward passes.
        self.pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="sensorium-turn")
        # One lock per thread with turns running or waiting, held until the turn ends (not
        # until its client stops listening).
        self._locks: dict[str, asyncio.Lock] = {}
        self._waiting: defaultdict[str, int] = defaultdict(int)
        self.in_flight = 0

    def image(self, spec: str) -> ImageRef:
        """A stored image by sha256, or a new one from a data URL (or an http(s) URL, when
        `fetch_image_urls` allows it)."""
        if not isinstance(spec, str) or not spec.strip():
            raise UserError("an image must be a sha256 of a stored image or a data URL")
        spec = spec.strip()
        if _SHA256.fullmatch(spec):
            return self.agent.images.ref(spec)  # raises if unknown
        if match := _DATA_URL.match(spec):
            try:
                data = base64.b64decode(spec[match.end() :], validate=True)
            except (binascii.Error, ValueError):
                raise UserError("an image data URL is not valid base64") from None
            return self.agent.add_image(data)
        if spec.lower().startswith(("http://", "https://")):
            if not self.settings.fetch_image_urls:
                raise UserError(
                    "image URLs are not fetched by this server; send the image as a data URL "
                    "(data:image/jpeg;base64,...), or set [server] fetch_image_urls = true"
                )
            return self.agent.add_image(self._fetch(spec))
        raise UserError(
            f"unreadable image reference {spec[:40]!r}: give a data URL "
            "(data:image/png;base64,...) or the sha256 of a stored image"
        )

    def _fetch(self, url: str) -> bytes:
        import httpx

        limit = self.agent.settings.max_image_bytes
        try:
            with httpx.stream("GET", url, timeout=10.0, follow_redirects=True) as response:
                response.raise_for_status()
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > limit:
                        raise UserError(f"the image at {url} is over the {limit:,}-byte limit")
                return bytes(data)
        except httpx.HTTPError as exc:
            raise UserError(f"could not fetch the image at {url}: {exc}") from None

    async def images(self, specs: Sequence[str] | None) -> list[ImageRef] | None:
        """The images a request attaches (None: keep the thread's), decoded and stored on a
        worker thread so the event loop keeps serving other requests meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._images, specs)

    def _images(self, specs: Sequence[str] | None) -> list[ImageRef] | None:
        if specs is None:
            return None
        if len(specs) > self.settings.max_images:
            raise UserError(
                f"{len(specs)} images in one request; the limit is {self.settings.max_images} "
                "([server] max_images)"
            )
        return [self.image(spec) for spec in specs]

    async def stream(
        self,
        question: str,
        images: list[ImageRef] | None,
        *,
        thread_id: str | None = None,
        tools: list[str] | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """The turn's events as they happen; the last is a `ReplyEvent`. Bad input raises
        (`UserError`) before the first event. A client that stops listening does not stop
        the turn: it completes and is saved, and the thread's next turn waits for it."""
        thread_id = thread_id or uuid.uuid4().hex
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()

        def work() -> None:
            try:
                for event in self.agent.stream(question, images, thread_id=thread_id, tools=tools):
                    if isinstance(event, ReplyEvent):
                        self.threads.touch(thread_id, question)
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except BaseException as exc:  # handed to the request, which reports it
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        lock = self._locks.setdefault(thread_id, asyncio.Lock())
        self._waiting[thread_id] += 1
        await lock.acquire()
        self.in_flight += 1

        def finished(_: object) -> None:  # on the event loop, when the turn has ended
            self.in_flight -= 1
            lock.release()
            self._waiting[thread_id] -= 1
            if not self._waiting[thread_id]:  # nobody else waits on this thread: forget it
                del self._waiting[thread_id], self._locks[thread_id]

        loop.run_in_executor(self.pool, work).add_done_callback(finished)
        while (item := await queue.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
