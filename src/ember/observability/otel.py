"""OpenTelemetry tracing for Ember (the optional extra ``ember[otel]``).

>>> import ember.otel
>>> ember.otel.instrument()        # uses the global TracerProvider unless given one

After :func:`instrument`, every proxy call (blocking or asyncio) is a ``CLIENT`` span and
every call a daemon dispatches is a ``SERVER`` span, named ``<object id>/<method>`` with the
attributes of the OpenTelemetry RPC semantic conventions (``rpc.system`` = ``"ember"``,
``rpc.service`` = the object id, ``rpc.method``, ``server.address``/``server.port`` on the
client, ``client.address``/``client.port`` on the server) and ``ember.correlation_id`` when
the call carries one. The client puts the W3C ``traceparent`` (and ``tracestate``) into the
call's annotations ``TRPT``/``TRST``, so the server span is the client span's child across
processes; Pyro5 peers ignore those annotations. While a server span is open it is the
current span of the method's thread or task, so calls the method makes are its children.

Daemons created after :func:`instrument` are traced; pass existing ones to it
(``instrument(daemons=[daemon])``). :func:`uninstrument` stops tracing new calls.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..client.hooks import add_client_hook, remove_client_hook
from ..server.hooks import add_default_hook, remove_default_hook

__all__ = ["instrument", "uninstrument", "ClientTracer", "ServerTracer", "TRACEPARENT", "TRACESTATE"]

TRACEPARENT = "TRPT"  # annotation ids carrying the W3C trace context
TRACESTATE = "TRST"
_SYSTEM = "ember"
_propagator = TraceContextTextMapPropagator()
_installed: list[tuple[Any, Any]] = []  # (client tracer, server tracer) of the current instrument()


def _correlation(call: Any) -> dict[str, str]:
    corr = getattr(call, "correlation_id", None)
    return {"ember.correlation_id": str(corr)} if corr is not None else {}


def _fail(span: Any, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class ClientTracer:
    """Client hook: a CLIENT span per call, its context injected into the call's annotations."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    def before_call(self, call: Any) -> None:
        uri = call.uri
        attributes: dict[str, Any] = {"rpc.system": _SYSTEM, "rpc.service": call.object_id, "rpc.method": call.method}
        if uri.sockname is not None:
            attributes["server.address"] = uri.sockname
            attributes["network.transport"] = "unix"
        else:
            attributes["server.address"] = uri.host
            attributes["server.port"] = uri.port
        attributes.update(_correlation(call))
        span = self.tracer.start_span(f"{call.object_id}/{call.method}", kind=SpanKind.CLIENT, attributes=attributes)
        carrier: dict[str, str] = {}
        _propagator.inject(carrier, context=trace.set_span_in_context(span))
        if "traceparent" in carrier:
            call.annotations[TRACEPARENT] = carrier["traceparent"].encode("ascii")
        if carrier.get("tracestate"):
            call.annotations[TRACESTATE] = carrier["tracestate"].encode("ascii")
        call.state["otel.span"] = span

    def after_call(self, call: Any, result: Any, exc: BaseException | None) -> None:
        span = call.state.pop("otel.span", None)
        if span is None:
            return
        if exc is not None:
            _fail(span, exc)
        span.end()


class ServerTracer:
    """Server hook: a SERVER span per dispatched call, the child of the caller's span."""

    def __init__(self, tracer: Any) -> None:
        self.tracer = tracer

    def call_started(self, call: Any) -> None:
        carrier = {}
        ann = call.annotations
        if TRACEPARENT in ann:
            carrier["traceparent"] = ann[TRACEPARENT].decode("ascii", "replace")
            if TRACESTATE in ann:
                carrier["tracestate"] = ann[TRACESTATE].decode("ascii", "replace")
        parent = _propagator.extract(carrier)
        attributes: dict[str, Any] = {"rpc.system": _SYSTEM, "rpc.service": call.object_id, "rpc.method": call.method}
        addr = getattr(call.conn, "addr", None)
        if isinstance(addr, tuple) and len(addr) >= 2:
            attributes["client.address"] = str(addr[0])
            attributes["client.port"] = int(addr[1])
        attributes.update(_correlation(call))
        span = self.tracer.start_span(f"{call.object_id}/{call.method}", context=parent, kind=SpanKind.SERVER,
                                      attributes=attributes)
        # oneway work finishes on another thread: only calls that end where they began become current
        token = None if call.oneway else otel_context.attach(trace.set_span_in_context(span))
        call.state["otel"] = (span, token)

    def _end(self, call: Any, exc: BaseException | None) -> None:
        span, token = call.state.pop("otel", (None, None))
        if span is None:
            return
        if exc is not None:
            _fail(span, exc)
        span.end()
        if token is not None:
            otel_context.detach(token)

    def call_finished(self, call: Any, result: Any) -> None:
        self._end(call, None)

    def call_failed(self, call: Any, exc: BaseException) -> None:
        self._end(call, exc)


def instrument(tracer_provider: Any = None, daemons: Any = ()) -> None:
    """Trace every proxy call and every call dispatched by daemons created from now on (and
    by ``daemons``). ``tracer_provider`` defaults to OpenTelemetry's global one. Calling it
    again replaces the previous instrumentation."""
    uninstrument()
    tracer = trace.get_tracer("ember", tracer_provider=tracer_provider)
    client, server = ClientTracer(tracer), ServerTracer(tracer)
    add_client_hook(client)
    add_default_hook(server)
    for daemon in daemons:
        daemon.add_hook(server)
    _installed.append((client, server))


def uninstrument() -> None:
    """Stop tracing proxy calls and stop instrumenting new daemons."""
    while _installed:
        client, server = _installed.pop()
        remove_client_hook(client)
        remove_default_hook(server)
