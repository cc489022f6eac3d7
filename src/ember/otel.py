"""``ember.otel``: OpenTelemetry tracing (see :mod:`ember.observability.otel`; needs ``ember[otel]``)."""

from __future__ import annotations

from .observability.otel import ClientTracer, ServerTracer, instrument, uninstrument

__all__ = ["ClientTracer", "ServerTracer", "instrument", "uninstrument"]
