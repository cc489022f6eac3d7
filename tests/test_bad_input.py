"""Bad input never takes a daemon down: the offending connection is closed (with a reason
where the protocol allows one) and every other client keeps being served."""

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

import ember
from ember import errors, serializers
from ember.protocol import Message, MsgType, encode

from .services import Calc, read_reply


@pytest.fixture
def served(make_daemon, servertype):
    daemon = make_daemon(servertype=servertype)
    uri = daemon.register(Calc(), "calc")
    good = ember.Proxy(uri)
    assert good.add(1, 1) == 2
    yield daemon, uri, good
    good._release()


def _raw(daemon):
    s = socket.create_connection((daemon.host, daemon.port), timeout=5)
    return s




def _connect_raw(daemon):
    s = _raw(daemon)
    ser = serializers.get("msgpack")
    s.sendall(encode(Message(MsgType.CONNECT, 4, 0, 0, ser.dumps({"handshake": "hello", "object": "calc"}))))
    reply = read_reply(s)
    assert reply.type == MsgType.CONNECTOK
    return s


def test_garbage_gets_connectfail_and_others_continue(served, caplog):
    daemon, _, good = served
    with caplog.at_level(logging.WARNING, logger="ember"):
        s = _raw(daemon)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n" + b"x" * 40)
        reply = read_reply(s)
        assert reply.type == MsgType.CONNECTFAIL
        assert "bad tag" in serializers.get("marshal").loads(reply.data)
        assert s.recv(10) == b""  # closed
        s.close()
    assert good.add(2, 2) == 4
    assert any("closing connection" in r.message for r in caplog.records)


def test_wrong_protocol_version_told_early(served):
    daemon, _, good = served
    s = _raw(daemon)
    s.sendall(b"PYRO\x00\x30")  # a Pyro4 peer, recognised after 6 bytes
    reply = read_reply(s)
    assert "invalid protocol version: 48" in serializers.get("marshal").loads(reply.data)
    s.close()
    assert good.add(2, 2) == 4


def test_invoke_before_connect_refused(served):
    daemon, _, good = served
    s = _raw(daemon)
    ser = serializers.get("msgpack")
    s.sendall(encode(Message(MsgType.INVOKE, 4, 0, 1, ser.dumps_call("calc", "add", (1, 2), {}))))
    reply = read_reply(s)
    assert reply.type == MsgType.CONNECTFAIL
    assert "invalid msg type 4 received (expected: 1)" in serializers.get("marshal").loads(reply.data)
    s.close()
    assert good.add(2, 2) == 4


def test_unknown_serializer_in_connect_closes(served):
    daemon, _, good = served
    s = _raw(daemon)
    s.sendall(encode(Message(MsgType.CONNECT, 99, 0, 0, b"whatever")))
    assert s.recv(100) == b""
    s.close()
    assert good.add(2, 2) == 4


def test_truncated_message_then_disconnect(served):
    daemon, _, good = served
    s = _connect_raw(daemon)
    frame = encode(Message(MsgType.INVOKE, 4, 0, 1, serializers.get("msgpack").dumps_call("calc", "add", (1, 2), {})))
    s.sendall(frame[:30])
    s.close()
    assert good.add(3, 3) == 6


def test_oversized_message_closes_without_reading_body(served):
    daemon, _, good = served
    s = _connect_raw(daemon)
    header = bytearray(encode(Message(MsgType.INVOKE, 4, 0, 1, b"")))
    header[0x0C:0x10] = (2**31).to_bytes(4, "big")  # claims 2 GiB, over MAX_MESSAGE_SIZE
    s.sendall(bytes(header))
    # issue 14: the call is answered with an exception naming the limit, then the connection
    # closes; nothing was allocated for the body
    reply = read_reply(s)
    assert reply.type == MsgType.RESULT and reply.flags & 0x01 and reply.seq == 1
    exc = serializers.get("msgpack").loads(reply.data)
    assert isinstance(exc, errors.MessageTooLargeError) and "MAX_MESSAGE_SIZE" in str(exc)
    assert s.recv(100) == b""
    s.close()
    assert good.add(3, 3) == 6


def test_oversized_message_client_side_limit(served):
    _, uri, _ = served
    with ember.config.override(MAX_MESSAGE_SIZE=1000), ember.Proxy(uri) as p:
        with pytest.raises(errors.MessageTooLargeError):
            p.echo("x" * 2000)


def test_malformed_payload_gets_exception_and_connection_survives(served):
    daemon, _, good = served
    s = _connect_raw(daemon)
    s.sendall(encode(Message(MsgType.INVOKE, 4, 0, 1, b"\xc1\xc1\xc1")))
    reply = read_reply(s)
    assert reply.type == MsgType.RESULT and reply.flags & 0x01
    exc = serializers.get("msgpack").loads(reply.data)
    assert isinstance(exc, errors.SerializeError)
    ser = serializers.get("msgpack")
    s.sendall(encode(Message(MsgType.INVOKE, 4, 0, 2, ser.dumps_call("calc", "add", (1, 2), {}))))
    assert ser.loads(read_reply(s).data) == 3
    s.close()


def test_forbidden_class_in_arguments_refused(served):
    daemon, _, good = served
    s = _connect_raw(daemon)
    ser = serializers.get("msgpack")
    s.sendall(encode(Message(MsgType.INVOKE, 4, 0, 1,
                             ser.dumps_call("calc", "echo", ({"__class__": "__main__.Evil"},), {}))))
    reply = read_reply(s)
    exc = ser.loads(reply.data)
    assert isinstance(exc, errors.SecurityError)
    s.close()
    assert good.add(1, 1) == 2


def test_disconnect_mid_call(served):
    daemon, uri, good = served
    p = ember.Proxy(uri)
    p._timeout = 0.05
    with pytest.raises(errors.TimeoutError):
        p.sleepy(0.3)
    p._release()
    assert good.add(4, 4) == 8
    time.sleep(0.4)
    assert good.add(5, 5) == 10


def test_slow_client_does_not_block_others(served):
    daemon, _, good = served
    s = _connect_raw(daemon)
    frame = encode(Message(MsgType.INVOKE, 4, 0, 1, serializers.get("msgpack").dumps_call("calc", "add", (1, 2), {})))
    s.sendall(frame[:10])  # never finishes its message
    for i in range(5):
        assert good.add(i, i) == 2 * i
    s.close()


def test_client_side_garbage_reply_is_protocol_error():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    import threading

    def fake_server():
        conn, _ = listener.accept()
        conn.recv(1000)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 40)
        time.sleep(0.2)
        conn.close()

    t = threading.Thread(target=fake_server)
    t.start()
    with pytest.raises(errors.ProtocolError, match="bad tag"):
        ember.Proxy(f"PYRO:x@127.0.0.1:{port}")._bind()
    t.join()
    listener.close()


def test_cannot_connect_is_communication_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(errors.CommunicationError, match="cannot connect"):
        ember.Proxy(f"PYRO:x@127.0.0.1:{port}")._bind()


SERVER = textwrap.dedent(
    """
    import sys, ember
    sys.path.insert(0, {root!r})
    from tests.services import Calc
    d = ember.Daemon(port={port}, servertype={servertype!r})
    d.register(Calc(), "calc")
    print("ready", flush=True)
    d.request_loop()
    """
)


def _start_server(port, servertype):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen([sys.executable, "-c", SERVER.format(root=root, port=port, servertype=servertype)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    return proc


def test_killed_server_and_reconnect(servertype):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    proc = _start_server(port, servertype)
    try:
        p = ember.Proxy(f"PYRO:calc@127.0.0.1:{port}")
        assert p.add(1, 2) == 3
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        with pytest.raises(errors.ConnectionClosedError):
            p.add(1, 2)
        with pytest.raises(errors.CommunicationError):
            p.add(1, 2)  # nothing listens now
        proc = _start_server(port, servertype)
        p._reconnect(tries=20, wait=0.1)
        assert p.add(2, 3) == 5  # same fixed object id on the restarted server
        p._release()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        proc.stdout.close()
