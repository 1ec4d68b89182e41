"""The `sensorium` command line: answers, JSON shape, one-line errors and exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from sensorium.tools import ImageInputError

SENSORIUM = Path(sys.executable).with_name("sensorium")


def test_ask_json_answers_cat_for_chelsea(cli, chelsea: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("ask", "What animal is this?", "--image", str(chelsea), "--json", "--no-llm")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["answer"] == "cat"
    assert data["abstained"] is False
    assert 0.01 <= data["confidence"] <= 0.99  # calibrated on photos: never certain
    assert "cat" in data["reply"].lower()
    assert {c["tool"] for c in data["plan"]} == {"classify", "answer_question"}
    assert all(set(c["arguments"]) == {"image", "question"} for c in data["plan"])
    for item in data["evidence"]:
        assert {"expert", "answer", "confidence", "latency_ms", "error"} <= set(item)
        assert item["error"] is None


def test_ask_answers_red_for_a_red_image(cli, red_image: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("ask", "What colour is this?", "-i", str(red_image), "--json", "--no-llm")
    assert result.code == 0, result.err
    assert json.loads(result.out)["answer"] == "red"


def test_ask_prints_the_reply_and_an_evidence_table(cli, chelsea: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("ask", "Describe this image", "-i", str(chelsea), "--no-llm")
    assert result.code == 0, result.err
    assert "cat" in result.out.lower()
    assert "Evidence" in result.out and "caption" in result.out


def test_a_question_without_an_image_is_allowed(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("ask", "What colour is this?", "--json", "--no-llm")
    assert result.code == 0, result.err
    data = json.loads(result.out)
    assert data["plan"] == [] and data["abstained"] is True
    assert "attach" in data["reply"]


def test_several_images_get_one_decision_each(cli, chelsea: Path, red_image: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli(
        "ask",
        "What colour is this?",
        "-i",
        str(red_image),
        "-i",
        str(chelsea),
        "--json",
        "--no-llm",
    )
    data = json.loads(result.out)
    assert len(data["decisions"]) == 2
    assert data["decisions"][0]["answer"] == "red"


def bad_images(tmp_path: Path, chelsea: Path) -> dict[str, Path]:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(chelsea.read_bytes()[:5000])
    empty = tmp_path / "empty.png"
    empty.touch()
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)
    return {
        "image not found": tmp_path / "missing.png",
        "is a directory": tmp_path,
        "not an image": text,
        "truncated or corrupt": truncated,
        "is empty (0 bytes)": empty,
        "decompression bomb": bomb,
    }


@pytest.mark.parametrize(
    "problem",
    [
        "image not found",
        "is a directory",
        "not an image",
        "truncated or corrupt",
        "is empty (0 bytes)",
        "decompression bomb",
    ],
)
def test_bad_images_get_one_line_and_exit_1(
    cli, tmp_path: Path, chelsea: Path, problem: str
) -> None:  # type: ignore[no-untyped-def]
    path = bad_images(tmp_path, chelsea)[problem]
    result = cli("ask", "What is this?", "-i", str(path), "--no-llm")
    assert result.code == 1
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and problem in lines[0]
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "the question is empty"),
        ("   ", "the question is empty"),
        ("x" * 10_000, "the question is 10,000 characters long; the limit is 2,000"),
    ],
)
def test_bad_questions_get_one_line_and_exit_1(
    cli, red_image: Path, question: str, message: str
) -> None:  # type: ignore[no-untyped-def]
    result = cli("ask", question, "-i", str(red_image), "--no-llm")
    assert result.code == 1
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")


def test_debug_shows_the_real_exception(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ImageInputError, match="image not found"):
        cli("--debug", "ask", "What?", "-i", str(tmp_path / "missing.png"))


def test_a_bad_config_file_is_one_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "bad.toml"
    config.write_text("device = 'tpu'\n")
    result = cli("--config", str(config), "tools", "list")
    assert result.code == 1
    assert result.err.startswith("error: invalid setting device")
    assert len(result.err.strip().splitlines()) == 1


def test_tools_list_json(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("tools", "list", "--json")
    assert result.code == 0
    tools = {t["name"]: t for t in json.loads(result.out)}
    assert {"classify", "embed_image", "caption", "colours", "answer_question"} <= set(tools)
    assert tools["answer_question"]["required"] == ["image", "question"]
    assert "question" in tools["colours"]["parameters"]


def test_tools_list_table(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("tools", "list")
    assert result.code == 0 and "answer_question" in result.out


def test_an_unknown_command_is_a_usage_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("fly")
    assert result.code == 2
    assert "No such command" in result.err


def run_installed(
    args: list[str], stdin: str = "", **env_vars: str
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", **env_vars}
    return subprocess.run(
        [str(SENSORIUM), *args], input=stdin, capture_output=True, text=True, env=env, timeout=600
    )


@pytest.mark.slow
def test_the_installed_command_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    result = run_installed(["ask", "What?", "-i", str(tmp_path / "nope.jpg")])
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"error: image not found: {tmp_path / 'nope.jpg'}; check the path"
    ]


@pytest.mark.slow
def test_chat_holds_a_conversation_and_resumes_a_thread(chelsea: Path) -> None:
    first = run_installed(
        ["chat", "--thread", "pets", "--no-llm"],
        stdin=f"/image {chelsea}\nWhat animal is this?\nDescribe this image\n"
        "/image /nowhere.png\n/quit\n",
    )
    assert first.returncode == 0, first.stderr
    assert "cat" in first.stdout.lower()
    assert "error: image not found: /nowhere.png" in first.stderr  # reported, chat goes on
    resumed = run_installed(
        ["chat", "--thread", "pets", "--no-llm"], stdin="/history\nIs this a dog?\n"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed: 2 earlier turns" in resumed.stderr
    assert "human: What animal is this?" in resumed.stdout
    assert "No" in resumed.stdout  # the attached image carried over from the last session


def test_chat_second_one_means_the_second_attached_image(  # type: ignore[no-untyped-def]
    cli, chelsea: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old bug: after attaching a second image, "the second one" answered the first."""
    coffee = chelsea.with_name("coffee.jpg")
    monkeypatch.setattr("sys.stdin", io.StringIO("What is in the second one?\n"))
    result = cli("chat", "--no-llm", "-i", str(chelsea), "-i", str(coffee))
    assert result.code == 0, result.err
    assert "espresso" in result.out.lower() and "cat" not in result.out.lower()
    assert "refers to image 2 (coffee.jpg)" in result.out


def test_index_with_only_missing_paths_is_one_line(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("index", str(tmp_path / "nowhere"))
    assert result.code == 1
    assert result.err.strip() == (
        f"error: nothing to index: {tmp_path / 'nowhere'} not found; check the paths"
    )


def test_by_default_a_text_only_question_gets_one_honest_sentence(cli) -> None:  # type: ignore[no-untyped-def]
    """No LLM by default: no warning (nothing is missing), and no made-up answer."""
    result = cli("ask", "What is the capital of France?", "--json")
    assert result.code == 0, result.err
    assert result.err == ""
    data = json.loads(result.out)
    assert data["reply"] == (
        "I answer questions about images; configure an LLM for other questions "
        "(see llm.backend in docs/configuration.md)."
    )
    assert data["answered_by"] == "nobody" and data["plan"] == [] and data["llm_error"] is None
    printed = cli("ask", "What is the capital of France?")
    assert data["reply"] in " ".join(printed.out.split())  # as written, wrapped or not


def test_by_default_the_demo_question_names_the_cat_without_a_warning(cli, chelsea: Path) -> None:  # type: ignore[no-untyped-def]
    """What `make demo` runs, and what .ci/run checks in its log."""
    result = cli("ask", "What animal is this?", "--image", str(chelsea))
    assert result.code == 0, result.err
    assert "warning:" not in result.err
    reply = result.out.splitlines()[0]
    assert reply.startswith("Cat. (") and "confidence; from " in reply


# The local GGUF path (`llm.backend = "smollm2"`, the `llm` extra), as a user opts into it.
LOCAL_LLM = {"SENSORIUM_LLM__BACKEND": "smollm2"}


@pytest.mark.slow
def test_ask_json_through_the_local_llm_answers_cat(chelsea: Path) -> None:
    result = run_installed(
        ["ask", "What animal is this?", "-i", str(chelsea), "--json"], **LOCAL_LLM
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr  # the local LLM loaded
    summary = json.loads(result.stdout)
    assert summary["answer"] == "cat" and summary["llm_error"] is None
    assert not [note for note in summary["plan_notes"] if "LLM plan unusable" in note]


@pytest.mark.slow
def test_a_piped_chat_with_the_local_llm_answers(chelsea: Path) -> None:
    # The LLM's process must not read the questions piped to the chat.
    result = run_installed(
        ["chat", "-i", str(chelsea)], stdin="What animal is this?\n/quit\n", **LOCAL_LLM
    )
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr
    assert "cat" in result.stdout.lower()
    assert "resume with: sensorium chat --thread" in result.stderr  # it read to /quit
