"""OpenTelemetry tracing: off by default; on, one span per turn, graph step and expert call,
nested, with the expert's latency, confidence and error as attributes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from sensorium.agent import TracingSettings
from sensorium.agent.tracing import configure_tracing

SENSORIUM = Path(sys.executable).with_name("sensorium")


def spans_in(text: str) -> list[dict[str, Any]]:
    """The JSON objects OpenTelemetry's console exporter wrote, in order."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while (start := text.find("{", at)) >= 0:
        try:
            span, at = decoder.raw_decode(text, start)
            found.append(span)
        except ValueError:
            at = start + 1
    return [s for s in found if "name" in s and "context" in s]


def test_tracing_is_off_unless_configured() -> None:
    assert configure_tracing(TracingSettings()) is False


def test_a_turn_is_traced_step_by_step_down_to_each_expert(chelsea: Path) -> None:
    env = os.environ | {"SENSORIUM_TRACING__EXPORTER": "console"}
    done = subprocess.run(
        [str(SENSORIUM), "ask", "What animal is this?", "-i", str(chelsea), "--no-llm", "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["answer"].lower() == "cat"  # spans stay off stdout
    spans = {s["context"]["span_id"]: s for s in spans_in(done.stderr)}
    turn = next(s for s in spans.values() if s["name"] == "sensorium.turn")
    assert turn["attributes"]["sensorium.answer"].lower() == "cat"
    assert {s["context"]["trace_id"] for s in spans.values()} == {turn["context"]["trace_id"]}
    steps = [s["name"] for s in spans.values() if s["name"].startswith("sensorium.step.")]
    assert {"sensorium.step.agent", "sensorium.step.expert", "sensorium.step.respond"} <= set(steps)
    experts = [s for s in spans.values() if s["name"].startswith("sensorium.expert.")]
    assert {s["attributes"]["sensorium.expert"] for s in experts} >= {"classify", "answer_question"}
    for expert in experts:
        step = spans[expert["parent_id"]]
        assert (
            step["name"] == "sensorium.step.expert"
            and step["parent_id"] == turn["context"]["span_id"]
        )
        assert expert["attributes"]["sensorium.latency_ms"] > 0
        assert 0 <= expert["attributes"]["sensorium.confidence"] <= 1


def test_an_expert_error_marks_its_span() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    from sensorium.graphs.tracing import record_expert
    from sensorium.tools import Evidence

    exported = InMemorySpanExporter()
    provider = TracerProvider()  # a local one: the process-wide provider stays untouched
    provider.add_span_processor(SimpleSpanProcessor(exported))
    with provider.get_tracer("test").start_as_current_span("sensorium.expert.caption") as span:
        record_expert(span, Evidence(expert="caption", error="timed out after 120 s"))
    (finished,) = exported.get_finished_spans()
    assert finished.attributes["sensorium.error"] == "timed out after 120 s"  # type: ignore[index]
    assert finished.status.status_code is StatusCode.ERROR
