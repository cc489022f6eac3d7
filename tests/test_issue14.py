"""Issue 14: rough edges found by first users (proxy truth, dict keys, typos in proxy
controls, registered objects as results, blocking proxies on an event loop, locating the
name server, URI/port/config validation, clearer messages, pickling, typing)."""

import asyncio
import pickle

import pytest

import ember
from ember import errors
from ember.aio import AsyncProxy


def run(coro, timeout=30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@ember.expose
class Plain:
    def __init__(self):
        self.calls = []

    def ping(self):
        self.calls.append("ping")
        return "pong"


@ember.expose
class Box:
    def __init__(self, items=()):
        self.items = list(items)

    def __len__(self):
        return len(self.items)


# ---- 1. truth of a proxy ------------------------------------------------------------------


def test_proxy_truthy_without_remote_len(make_daemon):
    daemon = make_daemon()
    plain = Plain()
    uri = daemon.register(plain, "plain")
    with ember.Proxy(uri) as p:
        assert p  # no connection needed
        assert p._sock is None
        p._bind()
        assert bool(p) is True  # remote object has no __len__: no call, no error
        assert p.ping() == "pong"
        assert plain.calls == ["ping"]


def test_proxy_truth_follows_remote_len_when_exposed(make_daemon):
    daemon = make_daemon()
    empty = daemon.register(Box(), "empty")
    full = daemon.register(Box([1, 2]), "full")
    with ember.Proxy(empty) as e, ember.Proxy(full) as f:
        e._bind()
        f._bind()
        assert not e
        assert f
        assert len(f) == 2


def test_async_proxy_always_truthy(make_daemon):
    daemon = make_daemon(servertype="asyncio")
    uri = daemon.register(Box(), "empty")

    async def main():
        async with AsyncProxy(uri) as p:
            await p._bind()
            assert bool(p) is True

    run(main())


# ---- 3. unknown underscore attributes -----------------------------------------------------


@pytest.mark.parametrize("flavour", [ember.Proxy, AsyncProxy])
def test_unknown_proxy_control_refused(flavour):
    p = flavour("PYRO:x@127.0.0.1:1")
    with pytest.raises(AttributeError, match="_timout.*_timeout, _serializer, _oneway, _handshake, _max_retries"):
        p._timout = 1
    with pytest.raises(AttributeError, match="Pyro5 compatibility layer is not there yet: use '_timeout'"):
        p._pyroTimeout = 1
    with pytest.raises(AttributeError, match="'_pyroSomething' looks like a Pyro5 proxy attribute"):
        p._pyroSomething = 1
    p._timeout = 1.5
    p._max_retries = 2
    assert p._timeout == 1.5 and p._max_retries == 2


def test_subclass_declared_attributes_allowed():
    class MyProxy(ember.Proxy):
        _token: str

        def _validate_handshake_response(self, data):
            self._seen = data

    p = MyProxy("PYRO:x@127.0.0.1:1")
    p._token = "t"
    p._bound_uri = None  # internal names keep working
    with pytest.raises(AttributeError):
        p._tokn = "t"


# ---- 7. ports, URIs and object ids -------------------------------------------------------


def test_daemon_port_out_of_range():
    with pytest.raises(errors.CommunicationError, match="invalid port 70000: TCP ports are 0-65535"):
        ember.Daemon(port=70000)
    with pytest.raises(errors.CommunicationError, match="invalid port -1: TCP ports are 0-65535"):
        ember.Daemon(port=-1)
    with pytest.raises(errors.CommunicationError, match="invalid natport 70000"):
        ember.Daemon(natport=70000, nathost="example.com")


@pytest.mark.parametrize("text,message", [
    ("http://x", "unknown protocol 'http'; a Pyro URI starts with one of PYRO, PYRONAME"),
    ("PYRO:obj@host:-5", "port -5 is negative; ports are 0-65535"),
    ("PYRO:obj@host:70000", "port 70000 is out of range: ports are 0-65535"),
    ("PYRO:a@b@host:9", "object ids and names cannot contain '@'"),
    ("PYRONAME:a@b@host", "object ids and names cannot contain '@'"),
])
def test_bad_uris_say_what_is_wrong(text, message):
    with pytest.raises(errors.InvalidURIError, match=message.replace("(", r"\(")):
        ember.URI(text)


def test_object_id_with_at_refused(make_daemon):
    daemon = make_daemon()
    with pytest.raises(errors.DaemonError, match="'@' separates the object id from the location"):
        daemon.register(Plain(), "a@b")


# ---- 13. pickling proxies --------------------------------------------------------------------


def test_proxy_pickles_uri_and_options(make_daemon):
    daemon = make_daemon()
    uri = daemon.register(Plain(), "plain")
    with ember.Proxy(uri) as p:
        p._timeout = 3.0
        p._serializer = "serpent"
        p._oneway = {"ping"}
        p._max_retries = 2
        p._bind()
        q = pickle.loads(pickle.dumps(p))
    assert type(q) is ember.Proxy and q._pyroUri == uri
    assert (q._timeout, q._serializer, q._oneway, q._max_retries) == (3.0, "serpent", {"ping"}, 2)
    assert q._sock is None and "ping" in q._methods
    q._oneway = set()
    with q:
        assert q.ping() == "pong"


def test_async_proxy_pickles(make_daemon):
    daemon = make_daemon(servertype="asyncio")
    uri = daemon.register(Plain(), "plain")
    p = AsyncProxy(uri)
    p._timeout = 4.0
    q = pickle.loads(pickle.dumps(p))
    assert type(q) is AsyncProxy and q._pyroUri == uri and q._timeout == 4.0

    async def main():
        async with q:
            return await q.ping()

    assert run(main()) == "pong"


# ---- 8. config validation -----------------------------------------------------------------


def test_config_error_is_an_ember_error():
    from ember.config import ConfigError as FromConfig

    assert FromConfig is errors.ConfigError
    assert issubclass(errors.ConfigError, errors.PyroError) and issubclass(errors.ConfigError, ValueError)
    assert "ConfigError" in errors.__all__


@pytest.mark.parametrize("var,value,message", [
    ("PYRO_LOGLEVEL", "LOUD", r"invalid value 'LOUD' for config item LOGLEVEL \(from environment variable "
                              r"PYRO_LOGLEVEL\): expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("PYRO_COMMTIMEOUT", "abc", r"invalid value 'abc' for config item COMMTIMEOUT \(from environment variable "
                                r"PYRO_COMMTIMEOUT\): expected a number"),
    ("PYRO_NS_PORT", "70000", r"invalid value 70000 for config item NS_PORT .*expected a TCP port"),
])
def test_bad_environment_fails_at_start_with_item_value_and_allowed(monkeypatch, var, value, message):
    from ember.config import Config

    monkeypatch.setenv(var, value)
    with pytest.raises(errors.ConfigError, match=message):
        Config()


def test_bad_environment_stops_import(tmp_path):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYRO_LOGLEVEL="LOUD")
    out = subprocess.run([sys.executable, "-c", "import ember"], env=env, capture_output=True, text=True)
    assert out.returncode != 0
    assert "ConfigError: invalid value 'LOUD' for config item LOGLEVEL" in out.stderr


def test_bad_value_set_in_code_refused():
    from ember.config import Config

    cfg = Config(use_environment=False)
    with pytest.raises(errors.ConfigError, match="invalid value 'abc' for config item COMMTIMEOUT: expected a number"):
        cfg.COMMTIMEOUT = "abc"
    with pytest.raises(errors.ConfigError, match="config item COMMTIMEOUT: expected a number >= 0"):
        cfg.COMMTIMEOUT = -1
    with pytest.raises(errors.ConfigError, match="LOGLEVEL"):
        cfg.LOGLEVEL = "LOUD"
    with pytest.raises(errors.ConfigError, match="SERIALIZER: expected one of msgpack, serpent, json, marshal"):
        cfg.SERIALIZER = "pickle"
    cfg.COMMTIMEOUT = 2
    assert cfg.COMMTIMEOUT == 2.0 and isinstance(cfg.COMMTIMEOUT, float)
    cfg.LOGLEVEL = "debug"


# ---- 9. messages that say what to do --------------------------------------------------------


@ember.expose
class Slow:
    def sleep(self, seconds):
        import time

        time.sleep(seconds)
        return seconds

    def echo(self, value):
        return value


def test_timeout_names_method_and_uri(make_daemon):
    daemon = make_daemon()
    uri = daemon.register(Slow(), "slow")
    with ember.Proxy(uri) as p:
        p._timeout = 0.1
        with pytest.raises(errors.TimeoutError, match=f"call sleep to {uri} timed out .*after 0.1 s"):
            p.sleep(1)


@pytest.mark.parametrize("size", [20_000, 5_000_000])
def test_oversized_call_names_the_limit(make_daemon, servertype, size):
    cfg = ember.config.copy()
    cfg.MAX_MESSAGE_SIZE = 10_000
    daemon = make_daemon(servertype=servertype, config=cfg)
    uri = daemon.register(Slow(), "slow")
    with ember.Proxy(uri) as p:
        with pytest.raises(errors.MessageTooLargeError, match=r"exceeds MAX_MESSAGE_SIZE \(10000\).*raise "
                                                               "MAX_MESSAGE_SIZE on the daemon"):
            p.echo("x" * size)
        assert p.echo("small") == "small"  # the proxy reconnects


def test_unexposed_class_says_expose(make_daemon):
    class Hidden:
        def f(self):
            return 1

    daemon = make_daemon()
    uri = daemon.register(Hidden(), "hidden")
    with ember.Proxy(uri) as p, pytest.raises(errors.PyroError, match="mark its class with @ember.expose"):
        p.f()


def test_unknown_class_message_says_what_to_do():
    from ember import serializers

    ser = serializers.get("serpent")
    data = ser.dumps({"__class__": "myapp.Point", "x": 1})
    with pytest.raises(errors.SerializeError, match="register the class in both processes with "
                                                    r"ember.register_type\(cls\)"):
        ser.loads(data)


# ---- 2. non-string dict keys ----------------------------------------------------------------


@ember.expose
class Keys:
    def echo(self, value):
        return value

    def squares(self, n):
        return {i: i * i for i in range(n)}


@pytest.mark.parametrize("serializer", ["msgpack", "marshal", "serpent"])
def test_int_keys_round_trip(make_daemon, servertype, serializer):
    daemon = make_daemon(servertype=servertype)
    uri = daemon.register(Keys(), "keys")
    with ember.Proxy(uri) as p:
        p._serializer = serializer
        assert p.squares(3) == {0: 0, 1: 1, 2: 4}
        value = {1: "a", 2.5: "b", False: [{3: 4}], "s": {7: None}}
        assert p.echo(value) == value


def test_msgpack_simple_keys(make_daemon):
    daemon = make_daemon()
    uri = daemon.register(Keys(), "keys")
    with ember.Proxy(uri) as p:
        value = {None: 1, b"k": 2, 2**70: 3, -1: 4}
        assert p.echo(value) == value


def test_json_refuses_non_str_keys_and_says_why(make_daemon):
    daemon = make_daemon()
    uri = daemon.register(Keys(), "keys")
    with ember.Proxy(uri) as p:
        p._serializer = "json"
        with pytest.raises(errors.SerializeError, match="json serializer can only send dicts with str keys, "
                                                        r"got a key of type int \(1\).*Fix: convert the keys to str"):
            p.echo({"outer": [{1: "a"}]})
        with pytest.raises(errors.SerializeError, match="key of type int"):
            p.squares(2)  # the daemon's reply cannot be sent in json: the client is told why
        assert p.echo({"a": 1}) == {"a": 1}


# ---- 4. registered objects travel as proxies --------------------------------------------------


@ember.expose
class Node:
    other = None

    def me(self):
        return self

    def hello(self):
        return "hi"

    def neighbour(self):
        return Node.other

    def node_class(self):
        return Node


@pytest.mark.parametrize("mode", ["session", "single", "percall"])
@pytest.mark.parametrize("serializer", ["msgpack", "serpent", "json", "marshal"])
def test_returning_self_of_class_registered_by_class(make_daemon, servertype, mode, serializer):
    cls = ember.behavior(instance_mode=mode)(type(f"Node_{mode}", (Node,), {}))
    daemon = make_daemon(servertype=servertype)
    uri = daemon.register(cls, "node")
    with ember.Proxy(uri) as p:
        p._serializer = serializer
        me = p.me()
        assert isinstance(me, ember.Proxy) and me._pyroUri == uri
        with me:
            assert me.hello() == "hi"


def test_registered_instance_and_class_travel_as_proxies(make_daemon):
    daemon = make_daemon()
    other = Node()
    other_uri = daemon.register(other, "other")
    Node.other = other
    try:
        uri = daemon.register(Node, "node")
        with ember.Proxy(uri) as p:
            n = p.neighbour()
            assert isinstance(n, ember.Proxy) and n._pyroUri == other_uri
            c = p.node_class()
            assert isinstance(c, ember.Proxy) and c._pyroUri == uri
            n._release()
            c._release()
    finally:
        Node.other = None


def test_unregistered_instance_of_registered_class_is_not_a_proxy(make_daemon):
    @ember.expose
    class Maker:
        def make(self):
            return Maker()  # inherits the class's marks, but is not registered

    daemon = make_daemon()
    uri = daemon.register(Maker, "maker")
    with ember.Proxy(uri) as p, pytest.raises(errors.SerializeError, match="unsupported serialized class"):
        p.make()  # travelled as its attribute dict (unknown here), not as a proxy


def test_returning_self_to_async_proxy(make_daemon):
    daemon = make_daemon(servertype="asyncio")
    uri = daemon.register(ember.behavior(instance_mode="session")(type("NodeS", (Node,), {})), "node")

    async def main():
        async with AsyncProxy(uri) as p:
            me = await p.me()
            assert isinstance(me, AsyncProxy) and me._pyroUri == uri
            async with me:
                return await me.hello()

    assert run(main()) == "hi"


# ---- 6. explicit name server locations win ----------------------------------------------------


@pytest.fixture
def two_name_servers():
    from ember import naming

    decoy = naming.start_ns("127.0.0.1", 0, enable_broadcast=False)  # stands in for whatever listens on NS_PORT
    real = naming.start_ns("127.0.0.1", 0, enable_broadcast=False)
    try:
        yield decoy, real
    finally:
        decoy.shutdown()
        real.shutdown()


def test_uri_file_wins_over_ns_host_default(two_name_servers, tmp_path):
    decoy, real = two_name_servers
    uri_file = tmp_path / "ns.uri"
    uri_file.write_text(f"{real.uri}\n")
    with ember.config.override(NS_HOST="127.0.0.1", NS_PORT=decoy.daemon.port):
        with ember.locate_ns(broadcast=False, uri_file=uri_file) as ns:
            assert ns._pyroUri == real.uri
        with ember.config.override(NS_URI_FILE=str(uri_file)), ember.locate_ns(broadcast=False) as ns:
            assert ns._pyroUri == real.uri

        async def main():
            ns = await ember.aio.locate_ns(broadcast=False, uri_file=uri_file)
            try:
                return ns._pyroUri
            finally:
                await ns._release()

        assert run(main()) == real.uri
        # a missing file is reported, and the defaults are still tried after it
        with ember.locate_ns(broadcast=False, uri_file=tmp_path / "missing.uri") as ns:
            assert ns._pyroUri == decoy.uri


# ---- 5. a blocking proxy on the asyncio daemon's own loop ---------------------------------------


@ember.expose
class Caller:
    target = None

    async def via_blocking_proxy(self):
        with ember.Proxy(Caller.target) as p:
            p._timeout = 3  # before the fix: the loop froze until this timeout
            return p.ping()

    def via_blocking_proxy_in_thread(self):
        with ember.Proxy(Caller.target) as p:
            return p.ping()

    async def via_async_proxy(self):
        async with AsyncProxy(Caller.target) as p:
            return await p.ping()


def test_blocking_proxy_on_own_asyncio_loop_is_refused(make_daemon):
    daemon = make_daemon(servertype="asyncio")
    Caller.target = daemon.register(Plain(), "plain")
    try:
        uri = daemon.register(Caller(), "caller")
        with ember.Proxy(uri) as p:
            with pytest.raises(errors.DeadlockError, match="event loop thread of the asyncio daemon.*AsyncProxy"):
                p.via_blocking_proxy()
            assert p.via_blocking_proxy_in_thread() == "pong"
            assert p.via_async_proxy() == "pong"
    finally:
        Caller.target = None


def test_blocking_proxy_on_loop_to_other_daemon_still_works(make_daemon):
    other = make_daemon(servertype="thread")
    Caller.target = other.register(Plain(), "plain")
    try:
        daemon = make_daemon(servertype="asyncio")
        uri = daemon.register(Caller(), "caller")
        with ember.Proxy(uri) as p:
            assert p.via_blocking_proxy() == "pong"
    finally:
        Caller.target = None


def test_serpent_bytes_keys_explained():
    from ember import serializers

    ser = serializers.get("serpent")
    with pytest.raises(errors.SerializeError, match="bytes keys do not survive.*msgpack or marshal"):
        ser.loads(ser.dumps({b"k": 1}))


def test_extended_types_can_be_turned_off(make_daemon):
    """EXTENDED_TYPES=False: Ember peers exchange exactly what Pyro5 peers get (issue 15)."""
    import datetime
    import uuid as uuid_mod

    @ember.expose
    class Values:
        def stamp(self):
            return datetime.date(2026, 12, 1), uuid_mod.UUID(int=1)

    uri = make_daemon().register(Values, "values")
    with ember.Proxy(uri) as p:
        p._serializer = "serpent"
        assert tuple(p.stamp()) == (datetime.date(2026, 12, 1), uuid_mod.UUID(int=1))  # Ember to Ember
    with ember.config.override(EXTENDED_TYPES=False), ember.Proxy(uri) as p:
        p._serializer = "serpent"
        assert tuple(p.stamp()) == ("2026-12-01", "00000000-0000-0000-0000-000000000001")
    daemon = make_daemon()
    daemon.extended_types = False  # per daemon: what the Pyro5 compatibility layer does
    with ember.Proxy(daemon.register(Values, "values")) as p:
        p._serializer = "serpent"
        assert tuple(p.stamp()) == ("2026-12-01", "00000000-0000-0000-0000-000000000001")
