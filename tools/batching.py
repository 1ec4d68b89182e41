"""Micro-batching: many callers submit one item each; one worker thread runs them as a batch.

A model's forward pass costs much the same for one input as for a few, so when several
threads (parallel experts, concurrent agent turns, web requests) each want one prediction,
running them together multiplies throughput. `MicroBatcher` collects requests for up to
`max_wait_ms` after the first one arrives, or until `max_batch` are waiting, calls
`fn(items) -> results` once, and hands each caller its own result.

    batcher = MicroBatcher(lambda images: list(classify_batch(images)), max_batch=16)
    probs = batcher.submit(image)            # from any thread; blocks until its batch ran
    probs = await batcher.asubmit(image)     # from asyncio; never blocks the event loop

An exception raised by `fn` reaches every caller of that batch. `close()` runs what is queued
and stops the worker (a daemon thread, so a forgotten batcher never holds the process open).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from sensorium.tools.errors import UserError

I = TypeVar("I")  # noqa: E741  (a batch item)
R = TypeVar("R")


@dataclass(slots=True)
class _Request(Generic[I, R]):
    item: I
    future: Future[R]
    at: float  # time.monotonic() at submission


class _Stop:
    """Queued by `close()`: the worker runs what came before it, then exits."""


class MicroBatcher(Generic[I, R]):
    """Runs concurrent single-item requests as batches on one worker thread.

    Args:
        fn: runs a batch: takes a list of items and returns one result per item, in order
        max_batch: the most items in one call of `fn`
        max_wait_ms: how long a batch stays open for more items after its first one
        name: names the batcher and its thread in errors and debuggers
    """

    def __init__(
        self,
        fn: Callable[[list[I]], Sequence[R]],
        *,
        max_batch: int = 16,
        max_wait_ms: float = 5.0,
        name: str = "batcher",
    ) -> None:
        if max_batch < 1:
            raise UserError(f"batcher {name!r}: max_batch must be at least 1, not {max_batch}")
        if max_wait_ms < 0:
            raise UserError(f"batcher {name!r}: max_wait_ms must be >= 0, not {max_wait_ms}")
        self.name = name
        self.max_batch = max_batch
        self.max_wait_ms = max_wait_ms
        self._fn = fn
        self._queue: queue.SimpleQueue[_Request[I, R] | _Stop] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0  # calls of fn
        self.items = 0  # items through fn
        self.batch_sizes: deque[int] = deque(maxlen=1000)  # the most recent batches' sizes

    def submit(self, item: I, timeout: float | None = None) -> R:
        """Run `item` in the next batch and return its result (or raise `fn`'s exception).

        Raises `TimeoutError` after `timeout` seconds; the item is then dropped if its batch
        has not started.
        """
        future = self.submit_future(item)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    async def asubmit(self, item: I) -> R:
        """`submit` for asyncio code: awaits the result without blocking the event loop.
        Cancelling the awaiting task drops the item if its batch has not started."""
        return await asyncio.wrap_future(self.submit_future(item))

    def submit_future(self, item: I) -> Future[R]:
        """Queue `item` and return a `concurrent.futures.Future` of its result."""
        if threading.current_thread() is self._thread:
            raise UserError(
                f"batcher {self.name!r}: submit was called from inside its own batch function, "
                "which would wait for itself forever; call the model directly there"
            )
        future: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise UserError(f"batcher {self.name!r} is closed; create a new one")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._work, name=f"microbatcher-{self.name}", daemon=True
                )
                self._thread.start()
            self._queue.put(_Request(item, future, time.monotonic()))
        return future

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting items, run those already queued, and stop the worker thread
        (waiting up to `timeout` seconds for it). Closing twice does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._queue.put(_Stop())
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def closed(self) -> bool:
        """Whether `close()` was called."""
        return self._closed

    @property
    def running(self) -> bool:
        """Whether the worker thread is alive (it starts on the first submit)."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> MicroBatcher[I, R]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if isinstance(first, _Stop):
                return
            batch = [first]
            stop = self._collect(batch)
            self._run(batch)
            if stop:
                return

    def _collect(self, batch: list[_Request[I, R]]) -> bool:
        """Add queued requests to `batch` until it is full or `max_wait_ms` have passed since
        its first request was submitted (a request that queued behind a running batch has
        already waited); True when `close()` was reached."""
        deadline = batch[0].at + self.max_wait_ms / 1000
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                if remaining > 0:
                    request = self._queue.get(timeout=remaining)
                else:  # past the deadline, still take what is already waiting
                    request = self._queue.get_nowait()
            except queue.Empty:
                return False
            if isinstance(request, _Stop):
                return True
            batch.append(request)
        return False

    def _run(self, batch: list[_Request[I, R]]) -> None:
        """Call `fn` once and settle every request's future with its result or the error."""
        live = [request for request in batch if request.future.set_running_or_notify_cancel()]
        if not live:
            return
        items = [request.item for request in live]
        try:
            results = list(self._fn(items))
            if len(results) != len(items):
                raise UserError(
                    f"batcher {self.name!r}: the batch function returned {len(results)} "
                    f"results for a batch of {len(items)}; it must return one per item, in order"
                )
        except BaseException as exc:  # every caller of the batch sees why it failed
            for request in live:
                request.future.set_exception(exc)
            return
        finally:
            self.batches += 1
            self.items += len(items)
            self.batch_sizes.append(len(items))
        for request, result in zip(live, results, strict=True):
            request.future.set_result(result)
