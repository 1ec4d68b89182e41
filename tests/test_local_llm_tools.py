"""Tool calls from the default local LLM: SmolLM2 served by llama-cpp-python in its
'chatml-function-calling' format answers `bind_tools` with OpenAI tool calls, which
`ChatLocalLLM` hands back as `AIMessage.tool_calls`."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from pydantic import ValidationError

from sensorium import LLMSettings, ModelUnavailableError
from sensorium.agent import load_chat_model, smollm2_path
from sensorium.agent.llama_worker import (
    FUNCTION_CALLING_FORMAT,
    serve_verbatim_function_calling,
    verbatim_messages,
)
from sensorium.agent.llm import local_chat_format
from sensorium.agent.local_llm import ChatLocalLLM, LocalLLMServer
from sensorium.tools import ModelHost

pytestmark = pytest.mark.slow

IMAGE = {"type": "string", "enum": ["img1"], "description": "the image"}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "caption",
            "description": "Describe an image in one sentence.",
            "parameters": {
                "type": "object",
                "properties": {"image": IMAGE},
                "required": ["image"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "colours",
            "description": "Name the main colours of an image.",
            "parameters": {
                "type": "object",
                "properties": {
                    "image": IMAGE,
                    # SmolLM2 repeats itself inside an unbounded string until max_tokens
                    "question": {"type": "string", "maxLength": 80},
                },
                "required": ["image", "question"],
            },
        },
    },
]
TOOL_NAMES = {"caption", "colours"}
SYSTEM = SystemMessage("You answer questions about images with the tools. The image is img1.")
COLOUR_QUESTION = [SYSTEM, HumanMessage("What colour is the car in img1?")]


@pytest.fixture(scope="module")
def model() -> Iterator[ChatLocalLLM]:
    """The local LLM as the agent loads it: SmolLM2 in its own process."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    chat = load_chat_model(LLMSettings(backend="smollm2", max_tokens=64), ModelHost("cpu"))
    assert isinstance(chat, ChatLocalLLM)
    assert chat.server.chat_format == FUNCTION_CALLING_FORMAT
    yield chat
    chat.server.stop()


def assert_valid_call(call: Any) -> None:
    """A call of a bound tool whose JSON arguments follow that tool's schema."""
    assert call["name"] in TOOL_NAMES and call["type"] == "tool_call" and call["id"]
    assert call["args"]["image"] == "img1"
    if call["name"] == "colours":
        assert isinstance(call["args"]["question"], str)
        assert 0 < len(call["args"]["question"]) <= 80


# --- the setting -----------------------------------------------------------------------------


def test_the_packaged_model_calls_tools_and_a_users_gguf_keeps_its_template(
    tmp_path: Path,
) -> None:
    assert local_chat_format(LLMSettings()) == "chatml-function-calling"
    assert local_chat_format(LLMSettings(model_path=tmp_path / "m.gguf")) is None
    assert local_chat_format(LLMSettings(chat_format="chatml")) == "chatml"
    chosen = LLMSettings(model_path=tmp_path / "m.gguf", chat_format="chatml-function-calling")
    assert local_chat_format(chosen) == "chatml-function-calling"
    assert LLMSettings(chat_format=" ").chat_format is None  # TOML's way to say "default"
    with pytest.raises(ValidationError, match="is not a chat format name"):
        LLMSettings(chat_format="chatml; rm -rf /")


def test_an_unknown_chat_format_is_one_line_every_time() -> None:
    server = LocalLLMServer(smollm2_path(), chat_format="no-such-format")
    model = ChatLocalLLM.for_server(server)
    message = r"^the local LLM could not start: llama-cpp-python has no chat format 'no-such-fo"
    with pytest.raises(ModelUnavailableError, match=message):
        model.invoke("hi")
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError, match=message):
        model.invoke("hi")
    assert time.monotonic() - started < 1  # known at once: no second start


def test_a_crash_during_a_tool_call_is_one_line_and_the_next_call_restarts() -> None:
    server = LocalLLMServer(smollm2_path(), chat_format=FUNCTION_CALLING_FORMAT)
    bound = ChatLocalLLM.for_server(server, temperature=0.0).bind_tools(TOOLS)
    server.ready()
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the request is in flight when it crashes

    def crash() -> None:
        time.sleep(0.5)
        os.kill(pid, signal.SIGSEGV)
        os.kill(pid, signal.SIGCONT)

    threading.Thread(target=crash, daemon=True).start()
    try:
        with pytest.raises(ModelUnavailableError, match=r"process crashed \(killed by SIGSEGV"):
            bound.invoke(COLOUR_QUESTION)
        reply = bound.invoke(COLOUR_QUESTION)
        assert isinstance(reply, AIMessage) and len(reply.tool_calls) == 1
        assert server.pid not in (None, pid)
    finally:
        server.stop()


# --- the prompt the model sees ---------------------------------------------------------------


class PromptRecorder:
    """Stands in for `llama_cpp.Llama`: records each prompt, completes it with `text`."""

    verbose = False

    def __init__(self, text: str) -> None:
        self.text = text
        self.prompts: list[str] = []

    def create_completion(self, prompt: str, **_: Any) -> dict[str, Any]:
        self.prompts.append(prompt)
        return {
            "id": "cmpl-test",
            "object": "text_completion",
            "created": 0,
            "model": "test",
            "choices": [{"text": self.text, "index": 0, "logprobs": None, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }


def test_the_function_calling_prompt_is_verbatim_and_keeps_tool_results() -> None:
    from llama_cpp import llama_chat_format

    serve_verbatim_function_calling()
    handler: Any = llama_chat_format.get_chat_completion_handler(FUNCTION_CALLING_FORMAT)
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "colours", "arguments": '{"image": "img1"}'},
    }
    messages = [
        {"role": "user", "content": 'What\'s the colour of <the car> & "the sky"?'},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "red (0.93)"},
    ]
    llama = PromptRecorder("message")  # 'auto': it picks a reply, then writes it
    handler(llama=llama, messages=messages, tools=TOOLS, tool_choice="auto")
    prompt = llama.prompts[0]
    assert prompt.startswith("<|im_start|>system\n")  # the tools are listed: no system message
    assert "functions.colours:\n" in prompt
    assert 'What\'s the colour of <the car> & "the sky"?' in prompt  # no HTML escapes
    assert '<|im_start|>assistant\nfunctions.colours:\n{"image": "img1"}<|im_end|>' in prompt
    assert "<|im_start|>user\nfunctions.colours returned:\nred (0.93)<|im_end|>" in prompt
    assert "&#" not in prompt and "<|im_start|>tool" not in prompt

    plain = PromptRecorder("It is red.")
    reply: Any = handler(llama=plain, messages=messages)  # no tools: plain chat
    assert reply["choices"][0]["message"]["content"] == "It is red."
    assert "functions.colours returned:\nred (0.93)" in plain.prompts[0]
    assert not plain.prompts[0].startswith("<|im_start|>system")


def test_several_calls_in_one_message_are_one_a_line() -> None:
    calls = [
        {"id": f"c{i}", "type": "function", "function": {"name": name, "arguments": "{}"}}
        for i, name in enumerate(["caption", "colours"])
    ]
    mended = verbatim_messages([{"role": "assistant", "content": "", "tool_calls": calls}], True)
    assert [c["function"]["arguments"] for c in mended[1]["tool_calls"]] == ["{}\n", "{}"]
    assert mended[0] == {"role": "system", "content": ""}


# --- SmolLM2, for real -----------------------------------------------------------------------


def test_a_forced_tool_call_is_a_parsed_call_of_that_tool_every_time(model: ChatLocalLLM) -> None:
    bound = model.bind_tools(TOOLS, tool_choice="colours")
    first = bound.invoke(COLOUR_QUESTION)
    assert isinstance(first, AIMessage) and not first.invalid_tool_calls
    assert [call["name"] for call in first.tool_calls] == ["colours"]
    assert_valid_call(first.tool_calls[0])
    assert "function_call" not in first.additional_kwargs  # llama.cpp's legacy duplicate
    assert first.response_metadata["finish_reason"] == "tool_calls"

    again = bound.invoke(COLOUR_QUESTION)
    assert isinstance(again, AIMessage)
    assert [(c["name"], c["args"]) for c in again.tool_calls] == [
        (c["name"], c["args"]) for c in first.tool_calls
    ]


def test_bound_tools_default_to_auto_and_smollm2_calls_one(model: ChatLocalLLM) -> None:
    reply = model.bind_tools(TOOLS).invoke(COLOUR_QUESTION)
    assert isinstance(reply, AIMessage) and not reply.invalid_tool_calls
    assert len(reply.tool_calls) == 1  # llama-cpp-python returns one call at most
    assert_valid_call(reply.tool_calls[0])


def test_auto_can_still_reply_in_words(model: ChatLocalLLM) -> None:
    # The format writes an 'auto' reply empty; ChatLocalLLM asks for it again without tools.
    reply = model.bind_tools(TOOLS).invoke([SYSTEM, HumanMessage("Hello! How are you today?")])
    assert isinstance(reply, AIMessage)
    assert not reply.tool_calls and reply.text.strip()
    assert not reply.text.startswith("functions.")


def test_a_tool_result_goes_back_to_the_model(model: ChatLocalLLM) -> None:
    first = model.bind_tools(TOOLS, tool_choice="colours").invoke(COLOUR_QUESTION)
    assert isinstance(first, AIMessage) and first.tool_calls
    result = ToolMessage("The car is red.", tool_call_id=first.tool_calls[0]["id"])
    history: list[BaseMessage] = [*COLOUR_QUESTION, first, result]
    answer = model.bind_tools(TOOLS, tool_choice="none").invoke(history)
    assert isinstance(answer, AIMessage) and not answer.tool_calls
    assert "red" in answer.text.lower()
    follow_up = model.bind_tools(TOOLS).invoke(history)  # 'auto' after a result: no error
    assert isinstance(follow_up, AIMessage)
    assert follow_up.tool_calls or follow_up.text.strip()


def test_a_streamed_tool_call_arrives_whole(model: ChatLocalLLM) -> None:
    """llama-cpp-python cannot stream an 'auto' choice, and repeats the tool's name in every
    chunk of a forced one: a call with tools is answered in one piece."""
    for choice in ["colours", "auto"]:
        chunks = list(model.bind_tools(TOOLS, tool_choice=choice).stream(COLOUR_QUESTION))
        assert len(chunks) == 1
        assert [call["name"] for call in chunks[0].tool_calls] == (
            ["colours"] if choice == "colours" else [chunks[0].tool_calls[0]["name"]]
        )
        assert_valid_call(chunks[0].tool_calls[0])


def test_async_tool_calls(model: ChatLocalLLM) -> None:
    async def ask() -> tuple[BaseMessage, list[Any]]:
        reply = await model.bind_tools(TOOLS, tool_choice="caption").ainvoke(COLOUR_QUESTION)
        chunks = [c async for c in model.bind_tools(TOOLS).astream(COLOUR_QUESTION)]
        return reply, chunks

    reply, chunks = asyncio.run(ask())
    assert isinstance(reply, AIMessage)
    assert [call["name"] for call in reply.tool_calls] == ["caption"]
    assert_valid_call(reply.tool_calls[0])
    assert len(chunks) == 1 and len(chunks[0].tool_calls) == 1


def test_plain_replies_stream_token_by_token(model: ChatLocalLLM) -> None:
    messages = [HumanMessage("What colour is a ripe banana? Answer in one sentence.")]
    reply = model.invoke(messages)
    assert isinstance(reply, AIMessage) and reply.text.strip() and not reply.tool_calls
    chunks = list(model.stream(messages))
    assert len(chunks) > 3  # token by token
    assert "".join(chunk.text for chunk in chunks) == reply.text
