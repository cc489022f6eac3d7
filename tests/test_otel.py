"""OpenTelemetry: a CLIENT span per proxy call and a SERVER span per dispatched call, the
server span the client span's child across two processes (SDK in-memory exporters)."""

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import ember
import ember.otel

SERVER = Path(__file__).with_name("otel_server.py")


@pytest.fixture
def client_spans():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ember.otel.instrument(tracer_provider=provider)
    yield exporter
    ember.otel.uninstrument()


@pytest.fixture
def traced_server(servertype):
    proc = subprocess.Popen([sys.executable, str(SERVER), servertype], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        uri = proc.stdout.readline().strip()
        assert uri.startswith("PYRO:traced@"), uri

        def finish():
            out, _ = proc.communicate("stop\n", timeout=20)
            return json.loads(out)

        yield uri, finish
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_server_span_is_the_client_spans_child_across_processes(client_spans, traced_server):
    uri, finish = traced_server
    with ember.Proxy(uri) as p:
        ember.current_context.correlation_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
        try:
            assert p.add(1, 2) == 3
            with pytest.raises(ValueError):
                p.fail()
        finally:
            ember.current_context.correlation_id = None
    server = {s["name"]: s for s in finish()}
    client = {s.name: s for s in client_spans.get_finished_spans()}
    for name in ("traced/add", "traced/fail"):
        c, s = client[name], server[name]
        assert c.kind.name == "CLIENT" and s["kind"] == "SERVER"
        assert s["trace_id"] == c.context.trace_id
        assert s["parent"] == c.context.span_id
        assert s["attributes"]["rpc.system"] == c.attributes["rpc.system"] == "ember"
        assert s["attributes"]["rpc.service"] == "traced" and s["attributes"]["rpc.method"] == name.split("/")[1]
        assert c.attributes["server.address"] == "127.0.0.1" and c.attributes["server.port"] == int(uri.rsplit(":", 1)[1])
        assert s["attributes"]["ember.correlation_id"] == "12345678-1234-5678-1234-567812345678"
    assert client["traced/fail"].status.status_code.name == "ERROR" and server["traced/fail"]["status"] == "ERROR"
    assert client["traced/add"].status.status_code.name == "UNSET" and server["traced/add"]["status"] == "UNSET"


def test_async_proxy_calls_are_traced_too(client_spans, traced_server):
    uri, finish = traced_server

    async def main():
        async with ember.AsyncProxy(uri) as p:
            return await p.add(2, 3)

    assert asyncio.run(main()) == 5
    server = {s["name"]: s for s in finish()}
    (client,) = [s for s in client_spans.get_finished_spans() if s.name == "traced/add"]
    assert server["traced/add"]["parent"] == client.context.span_id


def test_uninstrument_stops_tracing(make_daemon):
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    ember.otel.instrument(tracer_provider=provider)
    ember.otel.uninstrument()
    daemon = make_daemon()

    @ember.expose
    class Plain:
        def ping(self):
            return "pong"

    with ember.Proxy(daemon.register(Plain, "plain")) as p:
        assert p.ping() == "pong"
    assert exporter.get_finished_spans() == ()
