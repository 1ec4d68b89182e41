"""Turning tracing on: an OpenTelemetry tracer provider with the configured exporter.

The spans themselves are opened where the work happens (`sensorium.graphs.tracing`); without
a provider they are no-ops. OpenTelemetry allows one global provider per process, so the
first agent with tracing on sets it, and later ones reuse it.
"""

from __future__ import annotations

import sys
import threading

from opentelemetry import trace

from sensorium.agent.settings import TracingSettings

_lock = threading.Lock()
_configured: TracingSettings | None = None


def configure_tracing(settings: TracingSettings) -> bool:
    """Install the exporter `settings` name (once per process); False when tracing is off."""
    global _configured
    if settings.exporter == "none":
        return False
    with _lock:
        if _configured is not None:
            return True
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )

        provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        if settings.exporter == "console":
            # stderr: stdout carries the CLI's replies and JSON.
            provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr)))
        else:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporter = (
                OTLPSpanExporter(endpoint=settings.endpoint)
                if settings.endpoint
                else OTLPSpanExporter()
            )
            provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        _configured = settings
        return True
