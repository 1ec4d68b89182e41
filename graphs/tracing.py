"""OpenTelemetry spans: one per turn, per graph step and per expert call.

Spans go to OpenTelemetry's global tracer provider, which is a no-op until one is configured
(`[tracing]`, see `sensorium.agent.tracing`), so tracing costs nothing when it is off.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from opentelemetry import trace

from sensorium.tools import Evidence

TRACER = trace.get_tracer("sensorium")
F = TypeVar("F", bound=Callable[..., Any])


def traced_step(name: str, fn: F) -> F:
    """A graph node that runs inside a `sensorium.step` span named after it."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with TRACER.start_as_current_span(
            f"sensorium.step.{name}", attributes={"sensorium.node": name}
        ):
            return fn(*args, **kwargs)

    return run  # type: ignore[return-value]


def record_expert(span: trace.Span, evidence: Evidence) -> None:
    """What an expert call produced, as attributes of its span."""
    span.set_attribute("sensorium.expert", evidence.expert)
    span.set_attribute("sensorium.latency_ms", round(evidence.latency_ms, 3))
    span.set_attribute("sensorium.confidence", evidence.confidence)
    span.set_attribute("sensorium.where", evidence.where)
    if evidence.answer is not None:
        span.set_attribute("sensorium.answer", evidence.answer)
    if evidence.error:
        span.set_attribute("sensorium.error", evidence.error)
        span.set_status(trace.Status(trace.StatusCode.ERROR, evidence.error))


def in_current_context(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` bound to the caller's context, so spans it opens on a worker thread nest under the
    caller's span."""
    return functools.partial(contextvars.copy_context().run, fn)
