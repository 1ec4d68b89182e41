"""The turn graph: parallel fan-out, per-turn evidence, failures, timeouts, persistence."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from PIL import Image

from sensorium import Agent, Evidence, ImageRef, Settings, build_graph
from sensorium.agent import template_reply
from sensorium.graphs import (
    PlannerReply,
    Reply,
    TurnView,
    compile_graph,
    memory_checkpointer,
    sqlite_checkpointer,
)
from sensorium.tools import ImageStore, ModelHost, Registry, ToolContext, expert

both_started = threading.Barrier(2, timeout=10)


@expert
def left(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Waits for `right` to start: only parallel execution lets both finish.

    Args:
        image: the image
    """
    both_started.wait()
    return Evidence(answer="cat", confidence=0.9)


@expert
def right(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Waits for `left` to start.

    Args:
        image: the image
    """
    both_started.wait()
    return Evidence(answer="dog", confidence=0.4)


@expert
def broken(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Always fails.

    Args:
        image: the image
    """
    raise RuntimeError("sensor on fire\nsecond line")


@expert
def slow(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Takes longer than the timeout.

    Args:
        image: the image
    """
    time.sleep(3)
    return Evidence(answer="late", confidence=1.0)


class FixedPlanner:
    """Calls the same tools in every turn's first step, on the turn's first image."""

    def __init__(self, *tools: str) -> None:
        self.tools = tools

    def __call__(self, view: TurnView) -> PlannerReply:
        if view.step > 1:
            return PlannerReply(message=AIMessage(content=""), source="router")
        image = view.memory.attached[0].sha256
        calls = [
            {"name": t, "args": {"image": image}, "id": f"c{i}"} for i, t in enumerate(self.tools)
        ]
        return PlannerReply(message=AIMessage(content="", tool_calls=calls), source="router")


class TemplateResponder:
    def respond(self, question, decisions, evidence, plan):  # type: ignore[no-untyped-def]
        return Reply(text=template_reply(question, decisions, evidence, plan))


def make_graph(
    tmp_path: Path, *tools: str, timeout: float = 30.0, checkpointer=None
) -> tuple[CompiledStateGraph, ImageRef]:  # type: ignore[type-arg]
    store = ImageStore(tmp_path / "images")
    image = store.add_image(Image.new("RGB", (16, 16), (10, 200, 10)), name="green")
    graph = compile_graph(
        planner=FixedPlanner(*tools),
        responder=TemplateResponder(),
        registry=Registry([left, right, broken, slow]),
        context=ToolContext(host=ModelHost("cpu"), images=store),
        expert_timeout_s=timeout,
        checkpointer=checkpointer or memory_checkpointer(),
    )
    return graph, image


def turn(graph: CompiledStateGraph, image: ImageRef, thread: str = "t") -> dict:  # type: ignore[type-arg]
    question = "What is it?"
    return graph.invoke(
        {"messages": [HumanMessage(question)], "question": question, "images": [image]},
        {"configurable": {"thread_id": thread}},
    )


def test_experts_run_in_parallel(tmp_path: Path) -> None:
    both_started.reset()
    graph, image = make_graph(tmp_path, "left", "right")
    state = turn(graph, image)
    assert sorted(e.expert for e in state["evidence"]) == ["left", "right"]
    assert all(e.error is None for e in state["evidence"])
    decision = state["decisions"][0]
    assert decision.answer == "cat"
    assert decision.runner_up == "dog"


def test_a_second_turn_does_not_see_the_first_turns_evidence(tmp_path: Path) -> None:
    graph, image = make_graph(tmp_path, "broken")
    first = turn(graph, image)
    second = turn(graph, image)
    assert len(first["evidence"]) == 1
    assert len(second["evidence"]) == 1
    # The conversation itself accumulates: question, calls, result, reply per turn.
    assert [m.type for m in second["messages"]] == ["human", "ai", "tool", "ai"] * 2


def test_a_failing_expert_becomes_evidence_and_the_turn_completes(tmp_path: Path) -> None:
    both_started.reset()
    graph, image = make_graph(tmp_path, "broken", "left", "right")
    state = turn(graph, image)
    failed = next(e for e in state["evidence"] if e.expert == "broken")
    assert failed.error == "RuntimeError: sensor on fire"
    assert state["decisions"][0].answer == "cat"
    assert "broken (RuntimeError: sensor on fire)" in state["reply"]


def test_a_slow_expert_times_out_and_the_turn_completes(tmp_path: Path) -> None:
    graph, image = make_graph(tmp_path, "slow", "broken", timeout=0.3)
    started = time.perf_counter()
    state = turn(graph, image)
    assert time.perf_counter() - started < 2.5
    late = next(e for e in state["evidence"] if e.expert == "slow")
    assert late.error == "timed out after 0.3 s"
    assert late.image == image.sha256
    assert state["decisions"][0].abstained


def test_images_travel_by_reference_not_as_pixels(tmp_path: Path) -> None:
    path = tmp_path / "threads.sqlite"
    graph, image = make_graph(tmp_path, "broken", checkpointer=sqlite_checkpointer(path))
    state = turn(graph, image)
    assert state["images"] == [image]
    stored = next((tmp_path / "images").rglob("*.png")).read_bytes()
    content = _database_bytes(path)
    assert image.sha256.encode() in content
    assert stored[16:80] not in content  # no pixels
    assert b"iVBORw0KGgo" not in content  # no base64 PNG


def _database_bytes(path: Path) -> bytes:
    connection = sqlite3.connect(path)
    content = b""
    tables = connection.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
    for (table,) in tables:
        for row in connection.execute(f"SELECT * FROM {table}"):
            for value in row:
                content += value if isinstance(value, bytes) else str(value).encode()
    connection.close()
    return content


def test_threads_persist_in_sqlite_across_agents(settings: Settings, red_image: Path) -> None:
    first = Agent(
        settings, chat_model=None, checkpointer=sqlite_checkpointer(settings.threads_path)
    )
    first.ask("What colour is this?", [red_image], thread_id="kept")
    second = Agent(
        settings, chat_model=None, checkpointer=sqlite_checkpointer(settings.threads_path)
    )
    history = second.history("kept")
    assert [m.type for m in history] == ["human", "ai"]
    assert history[0].content == "What colour is this?"
    assert second.history("unknown") == []


def test_build_graph_returns_a_compiled_langgraph(settings: Settings) -> None:
    graph = build_graph(settings, chat_model=None)
    assert isinstance(graph, CompiledStateGraph)
    assert {"begin", "agent", "expert", "observe", "respond"} <= set(graph.get_graph().nodes)


def test_a_follow_up_on_a_thread_keeps_its_images(settings: Settings, red_image: Path) -> None:
    agent = Agent(settings, chat_model=None)
    first = agent.ask("What colour is this?", [red_image], thread_id="follow")
    again = agent.ask("Is it red?", thread_id="follow")
    assert again.images == first.images
    assert again.answer == "yes"
    cleared = agent.ask("What colour is this?", [], thread_id="follow")
    assert cleared.images == [] and cleared.plan.calls == []


@expert
def steady(ctx: ToolContext, image: ImageRef) -> Evidence:
    """Answers at once.

    Args:
        image: the image
    """
    return Evidence(answer="red", confidence=0.9)


def sqlite_agent(settings: Settings) -> Agent:
    """An agent whose threads live in the SQLite file the CLI uses, with `steady` and `broken`."""
    return Agent(
        settings,
        chat_model=None,
        registry=Registry([steady, broken]),
        checkpointer=sqlite_checkpointer(settings.threads_path),
    )


def test_a_turn_is_checkpointed_once_and_reloads_after_a_restart(
    settings: Settings, red_image: Path
) -> None:
    # Agent.ask saves a thread when the turn ends (durability="exit"), not after every step.
    agent = sqlite_agent(settings)
    agent.ask("What colour is this?", [red_image], thread_id="kept", tools=["steady"])
    agent.ask("Are you sure?", thread_id="kept", tools=["steady"])
    saver = agent.graph.checkpointer
    assert isinstance(saver, BaseCheckpointSaver)
    assert len(list(saver.list({"configurable": {"thread_id": "kept"}}))) == 2
    restarted = sqlite_agent(settings)  # a new process would open the file the same way
    assert [m.type for m in restarted.history("kept")] == ["human", "ai", "human", "ai"]
    again = restarted.ask("And now?", thread_id="kept", tools=["steady"])
    assert again.answer == "red" and again.images[0].name == "red.png"  # images remembered


def test_a_turn_that_raises_still_saves_what_it_reached(
    settings: Settings, red_image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = sqlite_agent(settings)
    agent.ask("What colour is this?", [red_image], thread_id="t", tools=["steady"])

    def fail(*args: object, **kwargs: object) -> str:
        raise RuntimeError("responder down")

    monkeypatch.setattr(agent.responder, "respond", fail)
    with pytest.raises(RuntimeError, match="responder down"):
        agent.ask("Are you sure?", thread_id="t", tools=["steady"])
    monkeypatch.undo()
    # As with per-step checkpoints: the question is kept, the turn stopped before `respond`.
    reopened = sqlite_agent(settings)
    assert [m.type for m in reopened.history("t")] == ["human", "ai", "human"]
    snapshot = reopened.graph.get_state({"configurable": {"thread_id": "t"}})
    assert snapshot.next == ("respond",)
    assert reopened.ask("Again?", thread_id="t", tools=["steady"]).answer == "red"


CRASHING_TURN = """
import os, sys
from sensorium import Agent, Evidence, ImageRef, LLMSettings, Registry, Settings, expert
from sensorium.graphs import sqlite_checkpointer
from sensorium.tools import ToolContext

@expert
def steady(ctx: ToolContext, image: ImageRef) -> Evidence:
    '''Answers at once.

    Args:
        image: the image
    '''
    return Evidence(answer="red", confidence=0.9)

@expert
def crash(ctx: ToolContext, image: ImageRef) -> Evidence:
    '''Kills the process in the middle of the turn, as a crash or `kill -9` would.

    Args:
        image: the image
    '''
    os._exit(3)

settings = Settings(data_dir=sys.argv[1], llm=LLMSettings(backend="none"))
agent = Agent(settings, chat_model=None, registry=Registry([steady, crash]),
              checkpointer=sqlite_checkpointer(settings.threads_path))
agent.ask("What colour is this?", [sys.argv[2]], thread_id="kept", tools=["steady"])
agent.ask("Are you sure?", thread_id="kept", tools=["crash"])
"""


def test_a_crash_mid_turn_leaves_the_thread_as_its_last_turn_left_it(
    settings: Settings, red_image: Path
) -> None:
    # Run outside the checkout, whose `sensorium/` folder would shadow the installed package.
    process = subprocess.run(
        [sys.executable, "-c", CRASHING_TURN, str(settings.data_dir), str(red_image)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=settings.data_dir.parent,
    )
    assert process.returncode == 3, process.stderr
    connection = sqlite3.connect(settings.threads_path)
    assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    connection.close()
    agent = sqlite_agent(settings)
    assert [m.type for m in agent.history("kept")] == ["human", "ai"]  # no half turn
    again = agent.ask("Are you sure?", thread_id="kept", tools=["steady"])
    assert again.answer == "red"
    assert [m.type for m in agent.history("kept")] == ["human", "ai", "human", "ai"]


def test_sqlite_threads_use_wal_without_an_fsync_per_commit(tmp_path: Path) -> None:
    saver = sqlite_checkpointer(tmp_path / "threads.sqlite")
    assert saver.conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert saver.conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
