"""The local LLM runs out of process: its build is portable, and a crash, a hang or a model
that cannot load costs one request (the turn falls back to the router), never the agent."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import HumanMessage

from sensorium import Agent, LLMSettings, ModelUnavailableError, Settings
from sensorium.agent import template_reply
from sensorium.agent.llama_worker import (
    compiled_features,
    cpu_flags,
    missing_on_this_cpu,
    not_portable,
)
from sensorium.agent.local_llm import ChatLocalLLM

pytestmark = pytest.mark.slow

X86 = platform.machine().lower() in {"x86_64", "amd64"}
NATIVE_AVX512_BUILD = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX_VNNI = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | "
    "BMI2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | "
    "AMX_INT8 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |"
)


# --- the build ------------------------------------------------------------------------------


def test_a_native_build_is_told_apart_from_a_portable_one() -> None:
    features = compiled_features(NATIVE_AVX512_BUILD)
    assert not_portable(features) == [
        "AMX_INT8",
        "AVX512",
        "AVX512_BF16",
        "AVX512_VBMI",
        "AVX512_VNNI",
        "AVX_VNNI",
    ]
    assert missing_on_this_cpu(features, {"avx", "avx2", "fma", "f16c", "pni", "ssse3", "bmi2"})[
        :2
    ] == ["AMX_INT8", "AVX512"]
    portable = compiled_features("CPU : SSE3 = 1 | AVX = 1 | AVX2 = 1 | FMA = 1 | F16C = 1 |")
    assert not_portable(portable) == []
    assert missing_on_this_cpu(portable, None) == []  # flags unknown: no judgement


@pytest.mark.skipif(not X86, reason="the x86 instruction-set check")
def test_the_installed_llama_cpp_build_is_portable_and_fits_this_cpu() -> None:
    """A build for the build machine's CPU (GGML_NATIVE) compiles in AVX-512 or AMX on such a
    machine and crashed in llama_decode there: this fails if one comes back."""
    info = subprocess.run(
        [sys.executable, "-c", "import llama_cpp; print(llama_cpp.llama_print_system_info())"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    features = compiled_features(info)
    assert {"AVX2", "FMA", "F16C"} <= features, info  # the x86-64-v3 baseline, parsed
    assert not_portable(features) == [], f"llama.cpp was built for a particular CPU: {info}"
    assert missing_on_this_cpu(features, cpu_flags()) == []


def test_the_makefile_built_llama_cpp_without_native_cpu_flags() -> None:
    stamp = Path(sys.prefix) / ".llama-installed"  # written by the Makefile's build step
    if not stamp.is_file():
        pytest.skip("llama-cpp-python was not built by the Makefile in this environment")
    flags = stamp.read_text()
    assert "-DGGML_NATIVE=OFF" in flags and "-march=native" not in flags, flags


# --- failures become one line; the turn goes on ---------------------------------------------


def local_settings(settings: Settings, **fields: Any) -> Settings:
    settings.llm = LLMSettings(backend="smollm2", **fields)
    return settings


class AtFirstRequest(BaseCallbackHandler):
    """Does something to the LLM process as the first request of a turn starts."""

    def __init__(self, action: Any) -> None:
        self.action = action
        self.fired = False

    def on_chat_model_start(self, *args: Any, **kwargs: Any) -> None:
        if not self.fired:
            self.fired = True
            self.action()


def crash_mid_request(pid: int) -> None:
    """Freeze the process so the request is in flight, then crash it with SIGSEGV."""
    os.kill(pid, signal.SIGSTOP)

    def crash() -> None:
        time.sleep(0.5)
        os.kill(pid, signal.SIGSEGV)
        os.kill(pid, signal.SIGCONT)

    threading.Thread(target=crash, daemon=True).start()


def test_a_crash_mid_turn_falls_back_and_the_next_turn_uses_a_new_process(
    settings: Settings, chelsea: Path
) -> None:
    agent = Agent(local_settings(settings))
    model = agent.chat_model
    assert isinstance(model, ChatLocalLLM) and not agent.warnings
    model.server.ready()
    first_pid = model.server.pid
    assert first_pid is not None
    model.callbacks = [AtFirstRequest(lambda: crash_mid_request(first_pid))]

    crashed = agent.ask("What animal is this?", [chelsea])
    assert crashed.answer == "cat"
    assert crashed.plan.llm_error is not None
    assert "the local LLM process crashed (killed by SIGSEGV" in crashed.plan.llm_error
    assert "\n" not in crashed.plan.llm_error
    assert [c.source for c in crashed.plan.calls] == ["router"] * len(crashed.plan.calls)
    # The template: a dead LLM is not asked again in the same turn.
    assert crashed.reply == template_reply(
        crashed.question, crashed.decisions, crashed.evidence, crashed.plan
    )

    again = agent.ask("What animal is this?", [chelsea])
    assert again.answer == "cat" and again.plan.llm_error is None
    assert model.server.pid not in (None, first_pid)


def test_a_hung_llm_is_stopped_after_the_timeout_and_replaced(
    settings: Settings, chelsea: Path
) -> None:
    # Long enough for a real answer on a busy 2-core machine (the turn after the hang needs
    # one), short enough to wait for once.
    agent = Agent(local_settings(settings, timeout_s=15))
    model = agent.chat_model
    assert isinstance(model, ChatLocalLLM)
    model.server.ready()
    hung_pid = model.server.pid
    assert hung_pid is not None
    model.callbacks = [AtFirstRequest(lambda: os.kill(hung_pid, signal.SIGSTOP))]

    started = time.monotonic()
    hung = agent.ask("What animal is this?", [chelsea])
    assert time.monotonic() - started < 2 * 15  # one timeout, not one per LLM call
    assert hung.answer == "cat"
    assert hung.plan.llm_error is not None and "did not answer in time" in hung.plan.llm_error
    assert not _alive(hung_pid)  # the hung process was ended

    again = agent.ask("What animal is this?", [chelsea])
    assert again.plan.llm_error is None and model.server.pid not in (None, hung_pid)


def test_a_model_that_cannot_load_is_one_line_every_time_without_retrying(
    settings: Settings, tmp_path: Path, chelsea: Path
) -> None:
    # A GGUF header that passes the quick check, then garbage: only llama.cpp finds out.
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (1).to_bytes(8, "little") + b"\xff" * 64)
    agent = Agent(local_settings(settings, model_path=bad))
    result = agent.ask("What animal is this?", [chelsea])
    assert result.answer == "cat"
    assert result.plan.llm_error == (
        f"the local LLM could not start: cannot load {bad}: not a valid GGUF model for "
        "llama.cpp; check llm.model_path"
    )
    model = agent.chat_model
    assert isinstance(model, ChatLocalLLM)
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="could not start"):
        model.invoke([HumanMessage("hi")])
    assert time.monotonic() - started < 1  # no second start


def test_the_llm_process_ends_with_the_agent_process_even_when_it_is_killed(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        """
        from sensorium import LLMSettings
        from sensorium.agent import load_chat_model
        from sensorium.tools import ModelHost
        model = load_chat_model(LLMSettings(backend="smollm2"), ModelHost("cpu"))
        model.server.ready()
        print(model.server.pid, flush=True)
        import time; time.sleep(600)
        """
    )
    # cwd: away from the repository root, whose sensorium/ folder would shadow the package
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert _alive(child)
    finally:
        parent.kill()
        parent.wait()
    assert not _alive(child, wait_s=10)


def _alive(pid: int, wait_s: float = 0.0) -> bool:
    """Whether `pid` still runs (a zombie awaiting its reaper does not) after `wait_s`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        if state == "Z" or time.monotonic() >= deadline:
            return state != "Z"
        time.sleep(0.1)
