"""Interop with the real Pyro5 package, both directions, every serializer."""

import threading
import time

import Pyro5.api
import Pyro5.errors
import Pyro5.protocol
import pytest

import ember
from ember import errors

from .services import Calc

SERIALIZERS = ["serpent", "marshal", "json", "msgpack"]


@pytest.fixture(params=SERIALIZERS)
def serializer(request):
    return request.param


# ---- a Pyro5 proxy calls an Ember daemon -------------------------------------------------

@pytest.fixture
def ember_calc(make_daemon, servertype):
    daemon = make_daemon(servertype=servertype)
    calc = Calc()
    return daemon, calc, daemon.register(calc, "calc")


def test_pyro5_client_calls_ember_daemon(ember_calc, serializer):
    daemon, calc, uri = ember_calc
    with Pyro5.api.Proxy(str(uri)) as p:
        p._pyroSerializer = serializer
        assert p.add(1, 2) == 3
        assert p.echo("héllo") == "héllo"
        assert {"add", "fail", "generator"} <= p._pyroMethods and p._pyroAttrs == {"value"}
        assert p._pyroOneway == {"slow_oneway"}
        if serializer != "marshal":  # Pyro5's marshal client cannot send property access or batches
            assert p.value == 1
            p.value = 5
            assert p.value == 5
            batch = Pyro5.api.BatchProxy(p)
            batch.add(1, 1)
            batch.echo("x")
            batch.fail()
            results = batch()
            assert next(results) == 2 and next(results) == "x"
            with pytest.raises(ValueError):
                next(results)
        with pytest.raises(ValueError, match="bad value") as info:
            p.fail()
        assert "ValueError: bad value" in "".join(Pyro5.errors.get_pyro_traceback(*_exc_info(info)))
        assert list(p.generator(3)) == [0, 10, 20]
        assert p.slow_oneway(0.01) is None
        assert calc.oneway_done.wait(5)
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            p._pyroInvoke("nope", (), {})


def _exc_info(info):
    return info.type, info.value, info.tb


def test_pyro5_client_daemon_object_and_ping(ember_calc, serializer):
    daemon, _, _ = ember_calc
    with Pyro5.api.Proxy(f"PYRO:Pyro.Daemon@{daemon.location}") as d:
        d._pyroSerializer = serializer
        assert d.ping() is None
        with pytest.raises(Pyro5.errors.SecurityError):
            d.registered()  # issue 13: Ember daemons list their objects only with DAEMON_LIST_OBJECTS
        with ember.config.override(DAEMON_LIST_OBJECTS=True):
            assert "calc" in d.registered()
        assert "add" in d.get_metadata("calc")["methods"]
        d._pyroBind()
        d._pyroConnection.send(  # a raw PING message, answered by a PING
            Pyro5.protocol.SendingMessage(Pyro5.protocol.MSG_PING, 0, 0, 42, b"ping").data
        )
        reply = Pyro5.protocol.recv_stub(d._pyroConnection, [Pyro5.protocol.MSG_PING])
        assert reply.data == b"pong"


def test_pyro5_unknown_object_and_exceptions_from_ember_errors(ember_calc):
    daemon, _, _ = ember_calc
    with pytest.raises(Pyro5.errors.CommunicationError, match="unknown object"):
        Pyro5.api.Proxy(f"PYRO:nothing@{daemon.location}")._pyroBind()
    with Pyro5.api.Proxy(f"PYRO:Pyro.Daemon@{daemon.location}") as d, pytest.raises(Pyro5.errors.DaemonError):
        d.get_metadata("nothing")


def test_pyro5_proxy_result_is_a_working_pyro5_proxy(make_daemon, servertype):
    daemon = make_daemon(servertype=servertype)
    calc = Calc()
    from .services import Other

    calc.other = Other()
    daemon.register(calc.other, "other")
    uri = daemon.register(calc, "calc")
    with Pyro5.api.Proxy(str(uri)) as p:
        other = p.get_other()
        assert isinstance(other, Pyro5.api.Proxy) and other.hello() == "hello from other"
        other._pyroRelease()


# ---- an Ember proxy calls a Pyro5 daemon ----------------------------------------------------

@Pyro5.api.expose
class PyroCalc:
    def __init__(self):
        self._value = 1
        self.done = threading.Event()

    def add(self, a, b):
        return a + b

    def fail(self):
        raise ValueError("pyro says no")

    def naming_fail(self):
        raise Pyro5.errors.NamingError("no such name")

    def generator(self, n):
        yield from range(n)

    @Pyro5.api.oneway
    def fire(self):
        self.done.set()

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, v):
        self._value = v


@pytest.fixture
def pyro5_calc():
    daemon = Pyro5.api.Daemon(host="127.0.0.1", port=0)
    calc = PyroCalc()
    uri = daemon.register(calc, "calc")
    t = threading.Thread(target=daemon.requestLoop, daemon=True)
    t.start()
    yield calc, str(uri)
    daemon.shutdown()
    t.join(5)
    daemon.close()


def test_ember_client_calls_pyro5_daemon(pyro5_calc, serializer):
    calc, uri = pyro5_calc
    with ember.Proxy(uri) as p:
        p._serializer = serializer
        assert p.add(2, 3) == 5
        assert p.value == 1
        p.value = 9
        assert p.value == 9
        assert p._oneway_server == {"fire"}
        with pytest.raises(ValueError, match="pyro says no") as info:
            p.fail()
        assert "ValueError: pyro says no" in errors.remote_traceback(info.value)
        with pytest.raises(errors.NamingError, match="no such name"):
            p.naming_fail()
        assert list(p.generator(3)) == [0, 1, 2]
        it = p.generator(100)
        assert next(it) == 0
        it.close()
        assert p.fire() is None
        assert calc.done.wait(5)
        batch = ember.BatchProxy(p)
        batch.add(1, 1)
        batch.add(2, 2)
        assert list(batch()) == [2, 4]
        if serializer != "marshal":  # a Pyro5 daemon cannot marshal its batch exception wrapper
            batch.add(1, 1)
            batch.fail()
            batch.add(2, 2)
            results = batch()
            assert next(results) == 2
            with pytest.raises(ValueError):
                next(results)
        assert p.add(1, 1) == 2


def test_ember_client_pyro5_daemon_object(pyro5_calc):
    _, uri = pyro5_calc
    location = uri.split("@")[1]
    with ember.Proxy(f"PYRO:Pyro.Daemon@{location}") as d:
        assert "calc" in d.registered() and d.ping() is None


def test_ember_client_sees_pyro5_refusal(pyro5_calc):
    _, uri = pyro5_calc
    location = uri.split("@")[1]
    with pytest.raises(errors.CommunicationError, match="unknown object"):
        ember.Proxy(f"PYRO:nope@{location}")._bind()


def test_mixed_chain_correlation(pyro5_calc, make_daemon):
    """An Ember proxy's correlation id reaches a Pyro5 daemon."""
    import uuid

    _, uri = pyro5_calc
    corr = uuid.uuid4()
    ember.current_context.correlation_id = corr
    try:
        with ember.Proxy(uri) as p:
            assert p.add(1, 1) == 2
    finally:
        ember.current_context.correlation_id = None
    time.sleep(0)
