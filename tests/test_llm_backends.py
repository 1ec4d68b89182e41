"""LLM backends chosen in config: OpenAI-compatible servers (tested against llama-cpp-python's
own server on loopback, serving SmolLM2), Ollama, a transformers model, and what a dead or
misconfigured server does to a turn."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from devices import DEVICES
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from sensorium import Agent, LLMSettings, ModelUnavailableError, Settings, UserError, load_settings
from sensorium.agent import load_chat_model, smollm2_path, template_reply
from sensorium.agent.llm import call_chat_model
from sensorium.tools import ModelHost

pytestmark = pytest.mark.slow

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def free_port() -> int:
    """A loopback port nobody listens on (just now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def dead_url(path: str = "/v1") -> str:
    return f"http://127.0.0.1:{free_port()}{path}"


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with SmolLM2, on a free loopback port,
    in a function-calling chat format."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path())]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "8192"]
    command += ["--chat_format", "chatml-function-calling"]  # SmolLM2 can then call tools
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_for(url, process, log_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"llama.cpp server exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=2, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"llama.cpp server did not start in 120 s: {log_path.read_text()[-2000:]}")


def openai_settings(url: str, **fields: Any) -> LLMSettings:
    return LLMSettings(backend="openai", base_url=url, model="smollm2", **fields)


# --- an OpenAI-compatible server, for real -------------------------------------------------


def test_smollm2_plans_a_turn_by_tool_calls_over_an_openai_compatible_server(
    llama_server: str, settings: Settings, chelsea: Path
) -> None:
    """The wire path end to end: ChatOpenAI -> the server -> SmolLM2's tool call -> the expert
    -> its result back to SmolLM2 as a tool message -> SmolLM2's closing text."""
    settings.llm = openai_settings(llama_server, max_tokens=96)
    agent = Agent(settings)  # a served model plans by default (planner.policy = "auto")
    assert type(agent.chat_model).__name__ == "ChatOpenAI" and not agent.warnings
    assert agent.planner.source == "llm"
    result = agent.ask("What animal is this?", [chelsea])
    assert result.plan.llm_error is None, result.plan.llm_error
    llm_calls = [call for call in result.plan.calls if call.source == "llm"]
    assert llm_calls and all(call.error is None for call in llm_calls)
    assert {e.call_id for e in result.evidence} == {call.id for call in llm_calls}
    assert result.plan.steps >= 2  # the results went back to SmolLM2, which then stopped
    history = agent.history(result.thread_id, tool_messages=True)
    assert [m.tool_call_id for m in history if isinstance(m, ToolMessage)] == [
        call.id for call in llm_calls
    ]
    assert result.answer == "cat" and "cat" in result.reply.lower()


def test_max_tokens_reaches_a_llama_cpp_server(llama_server: str) -> None:
    # ChatOpenAI's own `max_completion_tokens` is ignored by llama-cpp-python's server.
    model = load_chat_model(openai_settings(llama_server, max_tokens=6), ModelHost("cpu"))
    assert model is not None
    reply = call_chat_model(model, [HumanMessage("Tell me a long story about a cat.")])
    assert isinstance(reply, AIMessage) and reply.content
    assert reply.usage_metadata is not None and reply.usage_metadata["output_tokens"] <= 6


def test_a_wrong_path_on_a_live_server_is_one_line_naming_the_url(llama_server: str) -> None:
    url = llama_server.removesuffix("/v1")
    model = load_chat_model(openai_settings(url), ModelHost("cpu"))
    assert model is not None
    message = (
        rf"^LLM server at {re.escape(url)} answered HTTP 404 \(Not Found\); check llm\.base_url "
        r"\(OpenAI-compatible servers usually end in /v1\) and llm\.model$"
    )
    with pytest.raises(ModelUnavailableError, match=message):
        call_chat_model(model, [HumanMessage("hi")])


# --- a dead server ---------------------------------------------------------------------------


def test_a_dead_server_is_one_line_naming_the_url() -> None:
    url = dead_url()
    model = load_chat_model(openai_settings(url), ModelHost("cpu"))
    assert model is not None
    message = (
        rf"^LLM server at {re.escape(url)} is unreachable \(ConnectError\); "
        r"start the server or fix llm\.base_url$"
    )
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError, match=message):
        call_chat_model(model, [HumanMessage("hi")])
    assert time.monotonic() - started < 5  # no retries


def test_a_password_in_the_url_is_not_repeated() -> None:
    port = free_port()
    model = load_chat_model(
        openai_settings(f"http://me:hunter2@127.0.0.1:{port}/v1"), ModelHost("cpu")
    )
    assert model is not None
    with pytest.raises(ModelUnavailableError) as info:
        call_chat_model(model, [HumanMessage("hi")])
    assert f"LLM server at http://me:***@127.0.0.1:{port}/v1 is unreachable" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize("backend", ["openai", "ollama"])
def test_a_dead_server_degrades_the_turn_to_router_and_template(
    backend: str, settings: Settings, red_image: Path
) -> None:
    url = dead_url("/v1" if backend == "openai" else "")
    settings.llm = LLMSettings(backend=backend, base_url=url, model="smollm2")
    result = Agent(settings).ask("What colour is this?", [red_image])
    assert result.answer == "red"
    assert result.reply == template_reply(
        result.question, result.decisions, result.evidence, result.plan
    )
    error = (
        f"LLM server at {url} is unreachable (ConnectError); start the server or fix llm.base_url"
    )
    assert result.plan.llm_error == error
    assert result.plan.notes == [f"the LLM failed ({error}); the router planned instead"]


# --- how each backend is built ---------------------------------------------------------------


def test_the_openai_backend_reads_its_key_from_the_named_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "sk-test-123")
    settings = openai_settings("https://api.openai.com/v1", api_key_env="MY_LLM_KEY")
    model: Any = load_chat_model(settings, ModelHost("cpu"))
    assert model.openai_api_key.get_secret_value() == "sk-test-123"
    assert model.max_retries == 0
    assert model.request_timeout.connect <= 5
    # OpenAI's own API refuses max_tokens next to the max_completion_tokens ChatOpenAI sends.
    assert model.max_tokens == 160 and not model.extra_body


def test_a_local_server_gets_a_placeholder_key_and_max_tokens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    model: Any = load_chat_model(openai_settings(dead_url(), max_tokens=33), ModelHost("cpu"))
    assert model.openai_api_key.get_secret_value() == "not-needed"
    assert model.max_tokens is None and model.extra_body == {"max_tokens": 33}


def test_an_empty_api_key_env_sends_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-this-server")
    settings = openai_settings(dead_url(), api_key_env="")
    assert settings.api_key_env is None
    model: Any = load_chat_model(settings, ModelHost("cpu"))
    assert model.openai_api_key.get_secret_value() == "not-needed"


def test_the_ollama_backend_uses_the_configured_url_and_model() -> None:
    settings = LLMSettings(
        backend="ollama", model="qwen2.5:0.5b", base_url="http://10.0.0.5:11434", max_tokens=42
    )
    model: Any = load_chat_model(settings, ModelHost("cpu"))
    assert type(model).__name__ == "ChatOllama"
    assert (model.model, model.base_url, model.num_predict) == (
        "qwen2.5:0.5b",
        "http://10.0.0.5:11434",
        42,
    )


def test_ollama_defaults_to_the_local_server() -> None:
    model: Any = load_chat_model(LLMSettings(backend="ollama", model="m"), ModelHost("cpu"))
    assert model.base_url == "http://127.0.0.1:11434"


@pytest.mark.parametrize(
    ("backend", "module", "package"),
    [
        ("openai", "langchain_openai", "langchain-openai"),
        ("ollama", "langchain_ollama", "langchain-ollama"),
        ("smollm2", "langchain_openai", "langchain-openai"),  # the local LLM's client
    ],
)
def test_a_missing_backend_package_names_the_extra(
    backend: str, module: str, package: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    monkeypatch.delitem(sys.modules, "sensorium.agent.local_llm", raising=False)
    settings = LLMSettings(backend=backend, base_url=dead_url(), model="m")
    message = rf"^the {backend} backend needs {package}; .*pip install 'sensorium\[llm\]'$"
    with pytest.raises(ModelUnavailableError, match=message):
        load_chat_model(settings, ModelHost("cpu"))


# --- transformers ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-layer Llama with a byte-level BPE tokenizer and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|im_start|>", "<|im_end|>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(["What colour is this?", "It is red.", "Reply with JSON."], trainer)
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        chat_template=CHAT_TEMPLATE,
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    folder = tmp_path_factory.mktemp("tiny-chat")
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("device", DEVICES)
def test_a_transformers_model_replies_within_max_tokens(tiny_chat_model: Path, device: str) -> None:
    settings = LLMSettings(backend="transformers", model=str(tiny_chat_model), max_tokens=5)
    model = load_chat_model(settings, ModelHost(device))
    assert model is not None and type(model).__name__ == "ChatTransformers"
    assert model.model.device.type == device  # type: ignore[attr-defined]
    reply = model.invoke([SystemMessage("Be brief."), HumanMessage("What colour is this?")])
    assert isinstance(reply, AIMessage) and isinstance(reply.content, str)
    assert reply.usage_metadata is not None
    assert 1 <= reply.usage_metadata["output_tokens"] <= 5


def test_transformers_sampling_is_repeatable_with_a_seed(tiny_chat_model: Path) -> None:
    settings = LLMSettings(
        backend="transformers", model=str(tiny_chat_model), max_tokens=6, temperature=1.0, seed=7
    )
    model = load_chat_model(settings, ModelHost("cpu"))
    assert model is not None
    assert model.invoke("hi").content == model.invoke("hi").content


def test_a_missing_transformers_folder_is_one_line(tmp_path: Path) -> None:
    settings = LLMSettings(backend="transformers", model=str(tmp_path / "nope"))
    with pytest.raises(
        ModelUnavailableError,
        match=r"^transformers model folder not found: .*nope; fix llm\.model$",
    ):
        load_chat_model(settings, ModelHost("cpu"))


def test_a_transformers_model_without_chat_template_is_refused(
    tiny_chat_model: Path, tmp_path: Path
) -> None:
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(tiny_chat_model, plain)
    (plain / "chat_template.jinja").unlink()
    settings = LLMSettings(backend="transformers", model=str(plain))
    with pytest.raises(ModelUnavailableError, match=r"has no chat template; use an instruct"):
        load_chat_model(settings, ModelHost("cpu"))


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"SENSORIUM_LLM__BACKEND": "openai"},
            "invalid setting llm: backend 'openai' needs llm.base_url and llm.model",
        ),
        (
            {"SENSORIUM_LLM__BACKEND": "openai", "SENSORIUM_LLM__MODEL": "m"},
            "invalid setting llm: backend 'openai' needs llm.base_url",
        ),
        (
            {"SENSORIUM_LLM__BACKEND": "ollama"},
            "invalid setting llm: backend 'ollama' needs llm.model",
        ),
        (
            {"SENSORIUM_LLM__BACKEND": "transformers"},
            "invalid setting llm: backend 'transformers' needs llm.model",
        ),
        (
            {"SENSORIUM_LLM__BASE_URL": "localhost:8080"},
            "invalid setting llm.base_url: 'localhost:8080' is not an http(s) URL; "
            "use e.g. http://127.0.0.1:8080/v1",
        ),
        (
            {"SENSORIUM_LLM__API_KEY_ENV": "sk-secret-value"},
            "invalid setting llm.api_key_env: api_key_env names an environment variable "
            "(e.g. OPENAI_API_KEY), never the key itself",
        ),
    ],
)
def test_bad_llm_settings_are_one_line_naming_the_fields(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    clean = {"XDG_CONFIG_HOME": str(tmp_path), "SENSORIUM_DATA_DIR": str(tmp_path / "data")}
    with pytest.raises(UserError) as info:
        load_settings(env=clean | env)
    assert str(info.value) == f"{message} (from defaults or SENSORIUM_* variables)"
    assert "sk-secret-value" not in str(info.value)


def test_openai_settings_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        '[llm]\nbackend = "openai"\nbase_url = "http://127.0.0.1:8080/v1/"\n'
        'model = "smollm2"\napi_key_env = "LOCAL_KEY"\ntimeout_s = 10\n'
    )
    llm = load_settings(config, env={"SENSORIUM_DATA_DIR": str(tmp_path)}).llm
    assert (llm.backend, llm.base_url, llm.model) == (
        "openai",
        "http://127.0.0.1:8080/v1",
        "smollm2",
    )
    assert (llm.api_key_env, llm.timeout_s) == ("LOCAL_KEY", 10)
