"""A daemon in its own process with OpenTelemetry tracing (used by test_otel.py).

Prints its URI, serves until a line arrives on stdin, then prints the finished spans as JSON.
"""

import json
import sys

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import ember
import ember.otel


@ember.expose
class Traced:
    def add(self, a, b):
        return a + b

    def fail(self):
        raise ValueError("traced failure")


exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
ember.otel.instrument(tracer_provider=provider)
with ember.Daemon(servertype=sys.argv[1]) as daemon:
    print(daemon.register(Traced, "traced"), flush=True)
    daemon.start()
    sys.stdin.readline()
spans = [{
    "name": s.name, "kind": s.kind.name, "trace_id": s.context.trace_id, "span_id": s.context.span_id,
    "parent": s.parent.span_id if s.parent else None, "attributes": dict(s.attributes or {}),
    "status": s.status.status_code.name,
} for s in exporter.get_finished_spans()]
print(json.dumps(spans), flush=True)
