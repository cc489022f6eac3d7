"""LOGWIRE: every wire message, both roles, every server type, on the ``ember.wire`` logger (issue 14.10)."""

import asyncio
import logging
import re
import uuid

import pytest

import ember
from ember import serializers
from ember.protocol import ClientSession, Message, MsgType, ServerSession, encode

from .services import Calc

HEADER = re.compile(r"^(?P<who>proxy|daemon \(127\.0\.0\.1:\d+\)) (?P<dir>sent|received) (?P<type>[A-Z]+) "
                    r"ser=(?P<ser>\d+) flags=(?P<flags>0x[0-9a-f]+) seq=(?P<seq>\d+) data=(?P<data>\d+) "
                    r"annotations=(?P<ann>\d+) (?P<keys>\[.*\]) corr=(?P<corr>\S+)$")


def wire_records(caplog):
    return [r for r in caplog.records if r.name == "ember.wire"]


def headers(caplog):
    """(who, direction, type, groupdict) of every INFO record of ember.wire."""
    out = []
    for r in wire_records(caplog):
        if r.levelno == logging.INFO:
            m = HEADER.match(r.getMessage())
            assert m, r.getMessage()
            out.append((m["who"].split()[0], m["dir"], m["type"], m.groupdict()))
    return out


@pytest.fixture
def traced_call():
    ctx = ember.current_context
    corr = uuid.uuid4()
    ctx.correlation_id, ctx.annotations = corr, {"XTRA": b"12345"}
    yield corr
    ctx.correlation_id, ctx.annotations = None, {}


@pytest.mark.parametrize("flavour", ["blocking", "async"])
def test_logwire_logs_every_message_of_both_roles(make_daemon, servertype, flavour, caplog, traced_call):
    with ember.config.override(LOGWIRE=True), caplog.at_level(logging.DEBUG, "ember.wire"):
        daemon = make_daemon(servertype=servertype)
        uri = daemon.register(Calc, "calc")
        if flavour == "blocking":
            with ember.Proxy(uri) as p:
                assert p.add(20, 22) == 42
        else:
            async def call():
                async with ember.AsyncProxy(uri) as p:
                    return await p.add(20, 22)
            assert asyncio.run(call()) == 42
    seen = headers(caplog)
    flow = [(who, d, t) for who, d, t, _ in seen]
    for step in [("proxy", "sent", "CONNECT"), ("daemon", "received", "CONNECT"), ("daemon", "sent", "CONNECTOK"),
                 ("proxy", "received", "CONNECTOK"), ("proxy", "sent", "INVOKE"), ("daemon", "received", "INVOKE"),
                 ("daemon", "sent", "RESULT"), ("proxy", "received", "RESULT")]:
        assert step in flow, (step, flow)
    invoke = [f for who, d, t, f in seen if (who, d, t) == ("daemon", "received", "INVOKE") and f["keys"] != "[]"]
    assert invoke, seen
    fields = invoke[-1]
    assert fields["ser"] == "4" and int(fields["seq"]) >= 1 and fields["corr"] == str(traced_call)
    assert "'XTRA'" in fields["keys"] and int(fields["ann"]) >= 8 + 5 and int(fields["data"]) > 0
    payloads = [r.getMessage() for r in wire_records(caplog) if r.levelno == logging.DEBUG]
    assert any("INVOKE" in m and "add" in m for m in payloads)  # the payload, at debug level
    assert any("RESULT" in m and "payload b'*'" in m for m in payloads)  # msgpack's 42


def test_logwire_header_only_at_info_and_nothing_when_off(make_daemon, caplog):
    daemon = make_daemon()
    uri = daemon.register(Calc, "calc")
    with caplog.at_level(logging.DEBUG, "ember.wire"), ember.Proxy(uri) as p:
        assert p.add(1, 2) == 3
    assert not wire_records(caplog)  # LOGWIRE is off by default
    with ember.config.override(LOGWIRE=True), caplog.at_level(logging.INFO, "ember.wire"):
        daemon = make_daemon()
        uri = daemon.register(Calc, "calc")
        with ember.Proxy(uri) as p:
            assert p.add(1, 2) == 3
    assert headers(caplog) and all(r.levelno == logging.INFO for r in wire_records(caplog))


def test_sessions_log_what_they_send_and_receive(caplog):
    cfg = ember.config.copy()
    cfg.LOGWIRE = True
    client = ClientSession(serializers.get("serpent"), cfg)
    server = ServerSession(logwire=True, peer=("::1", 4000))
    with caplog.at_level(logging.DEBUG, "ember.wire"):
        server.feed(client.connect_frame("hello", "obj"))
        connect = server.next_message()
        ok = server.accept(connect, serializers.get("serpent").dumps({"handshake": "hi"}), {}, False)
        client.decoder.feed(server.encode(ok))
        client.handshake(client.decoder.next_message(), "x")
    flow = [r.getMessage().split(" ser=")[0] for r in caplog.records if r.levelno == logging.INFO]
    assert flow == ["proxy sent CONNECT", "daemon ([::1]:4000) received CONNECT", "daemon ([::1]:4000) sent CONNECTOK",
                    "proxy received CONNECTOK"]
    # without LOGWIRE the decoder has no hook: one `is None` test per message
    assert ServerSession().decoder.on_message is None
    assert ClientSession(serializers.get("serpent")).wirelog is None
    frame = encode(Message(MsgType.PING, 42, 0, 7, b"x"))
    quiet = ServerSession(established=True)
    quiet.feed(frame)
    assert quiet.next_message().seq == 7
