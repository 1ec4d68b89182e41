"""The local LLM's own process: check that the llama.cpp build fits this CPU, then serve the
model with llama-cpp-python's OpenAI-compatible server on a Unix socket.

`LocalLLMServer` starts it as a script, `python -P llama_worker.py --model M --socket S
--parent PID`, so that it imports nothing of Sensorium but this file. The agent's process
never imports llama.cpp: a segfault, an abort or an illegal instruction here ends this
process only. A problem this process can name is one line on stderr
and exit status `EXIT_UNUSABLE`; it also exits when its parent is gone.

The 'chatml-function-calling' format (SmolLM2's default) is served with its prompt mended
(`verbatim_messages`): llama-cpp-python renders it with HTML autoescaping, drops tool results
and lists the tools only inside a system message.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, cast

EXIT_UNUSABLE = 3
INSTALL_HINT = "install the LLM extra: pip install 'sensorium[llm]'"
# The name the server gives the model; clients ask for it by this name.
MODEL_ALIAS = "local"
# llama-cpp-python's ChatML format that answers with OpenAI tool calls (SmolLM2's default).
FUNCTION_CALLING_FORMAT = "chatml-function-calling"

# llama.cpp's names for x86 instruction-set extensions -> the Linux /proc/cpuinfo flag.
CPU_FLAGS = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX_VNNI": "avx_vnni",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}
# What a portable x86 build (GGML_NATIVE=OFF) compiles in: x86-64-v3 (Intel Haswell and AMD
# Zen onwards). Any other extension (AVX-512, AMX, AVX-VNNI) means the build targeted the
# CPU it was built on: such a build crashed in llama_decode on an AVX-512/AMX Xeon.
PORTABLE_X86 = frozenset({"SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2"})


def compiled_features(system_info: str) -> set[str]:
    """The x86 extensions a llama.cpp build uses, read from `llama_print_system_info()`
    ("CPU : SSE3 = 1 | AVX2 = 1 | ... | LLAMAFILE = 1 |")."""
    enabled = re.findall(r"([A-Z][A-Z0-9_]*) = 1", system_info)
    return {name for name in enabled if name in CPU_FLAGS}


def not_portable(features: set[str]) -> list[str]:
    """Extensions a portable build would not have compiled in."""
    return sorted(features - PORTABLE_X86)


def cpu_flags() -> set[str] | None:
    """This CPU's flags from /proc/cpuinfo; None where that cannot be read (not Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    match = re.search(r"^flags\s*:(.*)$", text, re.MULTILINE)
    return set(match.group(1).split()) if match else None


def missing_on_this_cpu(features: set[str], flags: set[str] | None) -> list[str]:
    """Extensions the build uses that this CPU lacks (none when the flags are unknown)."""
    if flags is None:
        return []
    return sorted(name for name in features if CPU_FLAGS[name] not in flags)


def _fail(message: str) -> NoReturn:
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(EXIT_UNUSABLE)


def _exit_with_parent(parent: int) -> None:
    """End this process when the agent that started it is gone (even if it was killed)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def verbatim_messages(messages: list[dict[str, Any]], tools: bool) -> list[dict[str, Any]]:
    """OpenAI chat messages as 'chatml-function-calling' must get them to render faithfully.

    Its template escapes HTML ("What's" reaches the model as "What&#39;s", a past call's
    arguments as {&#34;image&#34;: ...}): text is marked safe, so it goes in verbatim. It has
    no place for a tool's result (a 'tool' message vanished, leaving a bare
    "<|im_start|>tool"): a result becomes a user turn, "functions.<name> returned:" and the
    result. And it lists the tools in the system message only: with tools and no system
    message, an empty one is added.
    """
    from markupsafe import Markup

    names: dict[str, str] = {}  # tool_call_id -> the tool's name
    mended: list[dict[str, Any]] = []
    for message in messages:
        message = dict(message)
        content = message.get("content")
        if isinstance(content, str):
            message["content"] = Markup(content)
        if message.get("tool_calls"):
            calls = []
            for index, call in enumerate(message["tool_calls"]):
                function = dict(call["function"])
                names[call.get("id") or ""] = function["name"]
                # one call a line, as the system message shows them (the template joins them)
                end = "\n" if index + 1 < len(message["tool_calls"]) else ""
                function["arguments"] = Markup((function.get("arguments") or "{}") + end)
                calls.append({**call, "function": function})
            message["tool_calls"] = calls
        if message.get("role") in {"tool", "function"}:
            name = names.get(message.get("tool_call_id") or "") or message.get("name") or "tool"
            result = content if isinstance(content, str) else str(content)
            message = {"role": "user", "content": Markup(f"functions.{name} returned:\n{result}")}
        mended.append(message)
    if tools and not any(message.get("role") == "system" for message in mended):
        mended.insert(0, {"role": "system", "content": Markup("")})
    return mended


def serve_verbatim_function_calling() -> None:
    """Register 'chatml-function-calling' anew, as llama-cpp-python's own handler fed
    `verbatim_messages` (this process only)."""
    from llama_cpp import llama_chat_format

    upstream: Callable[..., Any] = llama_chat_format.chatml_function_calling

    def handler(llama: Any, messages: list[dict[str, Any]], **kwargs: Any) -> Any:
        tools = bool(kwargs.get("tools") or kwargs.get("functions"))
        return upstream(llama, verbatim_messages(messages, tools), **kwargs)

    registry = cast(Any, llama_chat_format.LlamaChatCompletionHandlerRegistry)()  # a singleton
    registry.register_chat_completion_handler(FUNCTION_CALLING_FORMAT, handler, overwrite=True)


def _check_chat_format(name: str) -> None:
    """Fail (one line) unless llama-cpp-python knows the chat format `name`: a registered
    one, or 'chat_template.<name>' (a template in the GGUF file, which only the model knows).

    An unknown format would otherwise load and then fail every request with an HTTP 500.
    """
    if name.startswith("chat_template."):
        return
    from llama_cpp import llama_chat_format

    try:
        llama_chat_format.get_chat_completion_handler(name)
    except Exception:
        _fail(
            f"llama-cpp-python has no chat format {name!r}; fix llm.chat_format "
            "(e.g. 'chatml-function-calling', 'chatml', or 'chat_template.default' for the "
            "GGUF file's own template)"
        )


def main(argv: list[str] | None = None) -> None:
    """Check the build against the CPU, load the model and serve until stopped."""
    parser = argparse.ArgumentParser(prog="llama_worker.py")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--parent", type=int, required=True)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chat-format", default=None)
    args = parser.parse_args(argv)
    _exit_with_parent(args.parent)
    try:
        import llama_cpp
        import uvicorn
        from llama_cpp.server.app import create_app
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except ImportError as exc:
        _fail(
            f"the local LLM needs llama-cpp-python[server] ({exc.name} is missing); {INSTALL_HINT}"
        )
    features = compiled_features(llama_cpp.llama_print_system_info().decode(errors="replace"))
    missing = missing_on_this_cpu(features, cpu_flags())
    if missing:
        _fail(
            f"this llama-cpp-python was built for another CPU: it uses {', '.join(missing)}, "
            "which this CPU lacks; reinstall it portably (see docs/install.md)"
        )
    if args.chat_format is not None:
        _check_chat_format(args.chat_format)
    if args.chat_format == FUNCTION_CALLING_FORMAT:
        serve_verbatim_function_calling()
    try:
        app = create_app(
            server_settings=ServerSettings(host="127.0.0.1"),
            model_settings=[
                ModelSettings(
                    model=str(args.model),
                    model_alias=MODEL_ALIAS,
                    n_ctx=args.n_ctx,
                    seed=args.seed,
                    chat_format=args.chat_format,
                    verbose=False,
                )
            ],
        )
    except Exception:  # llama.cpp's own message is several lines of loader detail
        _fail(
            f"cannot load {args.model}: not a valid GGUF model for llama.cpp; check llm.model_path"
        )
    uvicorn.run(app, uds=args.socket, log_level="warning")


if __name__ == "__main__":
    main()
