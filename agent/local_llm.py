"""The local LLM, out of process: llama-cpp-python's OpenAI-compatible server as a child.

Native model code can crash (a segfault in a CPU-specific kernel), abort or hang. In the
agent's own process either would take every conversation down; in a child process it is one
failed request. The child (`sensorium/agent/llama_worker.py`) listens on a Unix socket in a
private folder (no port to race for, nothing another user can reach); the agent talks to it
with LangChain's `ChatOpenAI`, the client of every other OpenAI-compatible server. A child that
crashed or hung is replaced on the next call; one that cannot start (a corrupt model file, a
build for another CPU) fails every call at once with the same one line.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_openai import ChatOpenAI
from pydantic import PrivateAttr

from sensorium.agent import llama_worker
from sensorium.agent.llama_worker import EXIT_UNUSABLE, FUNCTION_CALLING_FORMAT, MODEL_ALIAS
from sensorium.agent.server_errors import exception_chain, is_timeout, is_transport
from sensorium.tools import ModelUnavailableError

# Importing the server stack and mapping the model takes 1-3 s on a quiet machine; a loaded CI
# machine has been seen at several times that.
STARTUP_TIMEOUT_S = 120.0
# The socket's folder is private; its path must stay under the 108 bytes a Unix socket allows.
SOCKET_NAME = "llm.sock"
# What 'chatml-function-calling' leaves of a reply under tool_choice='auto' (see ChatLocalLLM).
LOST_MESSAGE = re.compile(r"(functions\.[^:\s]*:)?")


class LocalLLMServer:
    """One child process serving a GGUF model; started, watched and restarted here.

    Args:
        model_path: the GGUF file
        context_tokens: the model's context window (llama.cpp `n_ctx`)
        seed: sampling seed
        chat_format: llama-cpp-python's chat format (e.g. 'chatml-function-calling', which
            answers with OpenAI tool calls); None: the GGUF file's own chat template
    """

    def __init__(
        self,
        model_path: Path,
        *,
        context_tokens: int = 8192,
        seed: int = 0,
        chat_format: str | None = None,
    ) -> None:
        self.model_path = model_path
        self.context_tokens = context_tokens
        self.seed = seed
        self.chat_format = chat_format
        self._folder = Path(tempfile.mkdtemp(prefix="sensorium-llm-"))
        self.socket_path = self._folder / SOCKET_NAME
        self._log_path = self._folder / "server.log"
        # The running child, if any; shared with the finalizer, which ends it at exit.
        self._children: list[subprocess.Popen[bytes]] = []
        self._ready = False
        self._unusable: str | None = None  # why it cannot start: every later call says so
        self._lock = threading.RLock()
        weakref.finalize(self, _shut_down, self._folder, self._children)

    @property
    def _process(self) -> subprocess.Popen[bytes] | None:
        return self._children[0] if self._children else None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        """Start the child unless it runs (returns at once; `ready` waits for it)."""
        with self._lock:
            if self._unusable is not None:
                raise ModelUnavailableError(self._unusable)
            if self._process is not None and self._process.poll() is None:
                return
            self.socket_path.unlink(missing_ok=True)
            # Run as a script (-P: its folder stays off sys.path): `-m` would import the
            # sensorium package first, and the child needs none of it.
            command = [
                sys.executable,
                "-P",
                llama_worker.__file__,
                "--model",
                str(self.model_path),
                "--socket",
                str(self.socket_path),
                "--parent",
                str(os.getpid()),
                "--n-ctx",
                str(self.context_tokens),
                "--seed",
                str(self.seed),
            ]
            if self.chat_format is not None:
                command += ["--chat-format", self.chat_format]
            with self._log_path.open("wb") as log:
                # stdin is not the agent's: a piped chat's questions are for the agent alone.
                process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
                )
            self._children[:] = [process]
            self._ready = False

    def ready(self) -> None:
        """Start the child if needed and wait until it serves.

        Raises `ModelUnavailableError` (one line) when it exits or does not answer in time.
        """
        with self._lock:
            self.start()
            if self._ready:
                return
            process = self._process
            assert process is not None
            deadline = time.monotonic() + STARTUP_TIMEOUT_S
            with _socket_client(self.socket_path, timeout=2.0) as client:
                while time.monotonic() < deadline:
                    if process.poll() is not None:
                        problem = f"the local LLM could not start: {self._exit_reason()}"
                        if process.returncode == EXIT_UNUSABLE:  # it named a lasting problem
                            self._unusable = problem
                        self._children.clear()
                        raise ModelUnavailableError(problem)
                    try:
                        if client.get("http://local/v1/models").status_code == 200:
                            self._ready = True
                            return
                    except httpx.TransportError:
                        pass
                    time.sleep(0.05)
            self.stop()
            raise ModelUnavailableError(
                f"the local LLM did not start in {STARTUP_TIMEOUT_S:g} s; see {self._log_path}"
            )

    def failure(self, error: BaseException) -> ModelUnavailableError | None:
        """What a failed request means, as one line, after dealing with the child: a crashed
        one is reaped, a hung one stopped (both start again on the next call). None when the
        failure was not the child's (an HTTP error it answered with)."""
        chain = exception_chain(error)
        transport = any(is_transport(e) for e in chain)
        process = self._process
        if any(is_timeout(e) for e in chain):
            self.stop()
            return ModelUnavailableError(
                "the local LLM did not answer in time and was stopped; the next call restarts "
                "it (raise llm.timeout_s if it is only slow)"
            )
        if process is not None and transport:
            # A dying process closes its socket a moment before its exit status is known.
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1.0)
        if process is not None and process.poll() is not None:
            reason = self._exit_reason()
            self.stop()
            return ModelUnavailableError(
                f"the local LLM process crashed ({reason}); "
                "this turn goes on without it and the next call restarts it"
            )
        if transport:
            self.stop()
            return ModelUnavailableError(
                f"the local LLM dropped the connection ({type(error).__name__}); "
                "the next call restarts it"
            )
        return None

    def stop(self) -> None:
        """Stop the child (it starts again on the next call)."""
        with self._lock:
            process, self._ready = self._process, False
            self._children.clear()
        if process is not None:
            _terminate(process)

    def _exit_reason(self) -> str:
        process = self._process
        code = process.poll() if process is not None else None
        last = _last_line(self._log_path)
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"killed by {name}" + (f"; it said: {last}" if last else "")
        if code == EXIT_UNUSABLE and last:
            return last
        return f"exit status {code}" + (f"; it said: {last}" if last else "")


class ChatLocalLLM(ChatOpenAI):
    """`ChatOpenAI` talking to a `LocalLLMServer`: it waits for the child on first use,
    replaces it after a crash or a hang, and turns either into one `ModelUnavailableError`.

    Tool calls follow OpenAI's protocol, with allowances for llama-cpp-python: bound tools are
    sent with `tool_choice='auto'` unless the caller chose (its 'chatml-function-calling'
    format ignores tools without one); a call bound with tools is not streamed but answered
    whole (that format cannot stream an 'auto' choice, and repeats the tool's name in every
    chunk of a forced one); when 'auto' picks a message, which that format leaves empty, the
    message is asked for again without tools; and an assistant turn with tool calls goes back
    with content "" (its server refuses null).

    Build one with `ChatLocalLLM.for_server(server, ...)`.
    """

    _server: LocalLLMServer = PrivateAttr()

    @classmethod
    def for_server(cls, server: LocalLLMServer, **fields: Any) -> ChatLocalLLM:
        """A client for `server` (fields as for `ChatOpenAI`: temperature, timeout, ...)."""
        transport = httpx.HTTPTransport(uds=str(server.socket_path))
        async_transport = httpx.AsyncHTTPTransport(uds=str(server.socket_path))
        model = cls(
            model=MODEL_ALIAS,
            base_url="http://local/v1",
            api_key="not-needed",
            http_client=httpx.Client(transport=transport),
            http_async_client=httpx.AsyncClient(transport=async_transport),
            max_retries=0,
            **({"disable_streaming": "tool_calling"} | fields),
        )
        model._server = server
        server.start()  # loads while the agent gets ready; the first call waits for it
        return model

    @property
    def server(self) -> LocalLLMServer:
        """The child process behind this model."""
        return self._server

    @property
    def _llm_type(self) -> str:
        return "llama.cpp (local process)"

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: dict[str, Any] | str | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """`ChatOpenAI.bind_tools`, with OpenAI's default `tool_choice='auto'` sent explicitly."""
        if tools and tool_choice in (None, False):
            tool_choice = "auto"
        return super().bind_tools(tools, tool_choice=tool_choice, **kwargs)

    def _get_request_payload(
        self, input_: LanguageModelInput, *, stop: list[str] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The request, with "" for an assistant message's absent content: the OpenAI client
        sends null next to tool calls, which llama-cpp-python's server refuses (HTTP 500)."""
        payload: dict[str, Any] = super()._get_request_payload(input_, stop=stop, **kwargs)
        for message in payload.get("messages", []):
            if message.get("role") == "assistant" and message.get("content") is None:
                message["content"] = ""
        return payload

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        with self._supervised():
            result = super()._generate(messages, *args, **kwargs)
            if self._lost_its_message(result, kwargs):
                result = super()._generate(messages, *args, **{**kwargs, "tool_choice": "none"})
        return _without_legacy_call(result)

    def _stream(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        with self._supervised():
            yield from super()._stream(messages, *args, **kwargs)

    async def _agenerate(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> ChatResult:
        await asyncio.to_thread(self._server.ready)
        with self._supervised(wait=False):
            result = await super()._agenerate(messages, *args, **kwargs)
            if self._lost_its_message(result, kwargs):
                kwargs = {**kwargs, "tool_choice": "none"}
                result = await super()._agenerate(messages, *args, **kwargs)
        return _without_legacy_call(result)

    async def _astream(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        await asyncio.to_thread(self._server.ready)
        with self._supervised(wait=False):
            async for chunk in super()._astream(messages, *args, **kwargs):
                yield chunk

    def _lost_its_message(self, result: ChatResult, kwargs: dict[str, Any]) -> bool:
        """Whether 'chatml-function-calling' chose to reply under `tool_choice='auto'` and lost
        the reply: it constrains it with the grammar meant for the next tool's name, so it
        comes out empty or as a bare 'functions.<name>:'."""
        if self._server.chat_format != FUNCTION_CALLING_FORMAT:
            return False
        if not kwargs.get("tools") or kwargs.get("tool_choice") != "auto":
            return False
        message = result.generations[0].message if result.generations else None
        return (
            isinstance(message, AIMessage)
            and not message.tool_calls
            and not message.invalid_tool_calls
            and LOST_MESSAGE.fullmatch(message.text.strip()) is not None
        )

    @contextmanager
    def _supervised(self, *, wait: bool = True) -> Iterator[None]:
        if wait:
            self._server.ready()
        try:
            yield
        except Exception as exc:
            problem = self._server.failure(exc)
            if problem is None:
                raise
            raise problem from exc


def _without_legacy_call(result: ChatResult) -> ChatResult:
    """Drop the legacy `function_call` llama-cpp-python sends next to `tool_calls`: it names
    the tool it looked for last (under 'auto', a name with a trailing ':'), not the call."""
    for generation in result.generations:
        message = generation.message
        if isinstance(message, AIMessage) and message.tool_calls:
            message.additional_kwargs.pop("function_call", None)
    return result


@contextmanager
def _socket_client(path: Path, timeout: float) -> Iterator[httpx.Client]:
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), timeout=timeout) as client:
        yield client


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not end (a hung or stopped child ignores SIGTERM)."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=3)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _shut_down(folder: Path, children: list[subprocess.Popen[bytes]]) -> None:
    """At garbage collection or exit: end the child, remove the private folder."""
    for process in children:
        _terminate(process)
    shutil.rmtree(folder, ignore_errors=True)


def _last_line(path: Path) -> str:
    """The last non-empty line of the child's log (its one-line error, or a crash message)."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip()[:200] if lines else ""
