"""Name server interop with the real Pyro5 package, both ways."""

import contextlib
import socket
import threading

import Pyro5.api
import Pyro5.errors
import Pyro5.nameserver
import pytest

import ember
from ember import errors, naming

from .services import Calc


@contextlib.contextmanager
def pyro5_config(**items):
    saved = {name: getattr(Pyro5.config, name) for name in items}
    for name, value in items.items():
        setattr(Pyro5.config, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(Pyro5.config, name, value)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ember_ns():
    with naming.start_ns("127.0.0.1", 0, bcport=0) as service:
        yield service


@pytest.fixture
def pyro5_ns():
    uri, daemon, bc = Pyro5.nameserver.start_ns(host="127.0.0.1", port=0, enableBroadcast=False)
    assert bc is None
    bcserver = Pyro5.nameserver.BroadcastServer(uri, bchost="127.255.255.255", bcport=0)
    bcserver.runInThread()
    stop = threading.Event()
    thread = threading.Thread(target=daemon.requestLoop, args=(lambda: not stop.is_set(),))
    thread.start()
    yield uri, daemon, bcserver
    stop.set()
    daemon.shutdown()
    thread.join()
    bcserver.close()
    daemon.close()


# ---- Pyro5 clients against Ember's name server ------------------------------------------------

def test_pyro5_program_registers_a_pyro_name_but_not_the_name_server(ember_ns):
    with Pyro5.api.locate_ns("127.0.0.1", ember_ns.daemon.port) as ns:
        ns.register("Pyro.MyService", "PYRO:Pyro.MyService@127.0.0.1:5555")
        assert str(ns.lookup("Pyro.MyService")) == "PYRO:Pyro.MyService@127.0.0.1:5555"
        with pytest.raises(Pyro5.errors.NamingError, match="cannot be replaced"):
            ns.register("Pyro.NameServer", "PYRO:evil@127.0.0.1:5555")
        assert ns.remove("Pyro.NameServer") == 0
        assert ns.lookup("Pyro.NameServer").object == "Pyro.NameServer"
        assert ns.remove("Pyro.MyService") == 1


@pytest.mark.parametrize("serializer", ["serpent", "msgpack", "json", "marshal"])
def test_pyro5_locate_ns_and_registry_calls_against_ember(ember_ns, make_daemon, serializer):
    daemon = make_daemon()
    calc_uri = daemon.register(Calc, "calc")
    with pyro5_config(SERIALIZER=serializer):
        with Pyro5.api.locate_ns("127.0.0.1", ember_ns.daemon.port) as ns:
            ns.ping()
            ns.register("calc.p5", str(calc_uri), metadata={"math", "v1"})
            ns.register("calc.bare", Pyro5.api.URI(str(calc_uri)))
            with pytest.raises(Pyro5.errors.NamingError, match="name already registered"):
                ns.register("calc.p5", str(calc_uri), safe=True)
            found = ns.lookup("calc.p5")
            assert isinstance(found, Pyro5.api.URI) and str(found) == str(calc_uri)
            found, meta = ns.lookup("calc.p5", return_metadata=True)
            assert set(meta) == {"math", "v1"}
            listed = ns.list(prefix="calc.", return_metadata=True)
            assert set(listed) == {"calc.p5", "calc.bare"}
            assert listed["calc.p5"][0] == str(calc_uri) and set(listed["calc.p5"][1]) == {"math", "v1"}
            assert set(listed["calc.bare"][1]) == set()  # empty metadata encodes over every serializer
            assert set(ns.yplookup(meta_all=["math"], return_metadata=False)) == {"calc.p5"}
            assert ns.count() == 3
            ns.set_metadata("calc.bare", {"x"})
            assert ns.remove(prefix="calc.") == 2
            assert ns.count() == 1


def test_pyro5_proxies_resolve_pyroname_and_pyrometa_through_ember(ember_ns, make_daemon):
    daemon = make_daemon()
    ember_ns.nameserver.register("calc.named", daemon.register(Calc, "calc"), metadata=["math"])
    loc = ember_ns.daemon.location
    with Pyro5.api.Proxy(f"PYRONAME:calc.named@{loc}") as p:
        assert p.add(1, 2) == 3
    with Pyro5.api.Proxy(f"PYROMETA:math@{loc}") as p:
        assert p.add(2, 3) == 5
    with Pyro5.api.Proxy(f"PYRONAME:unknown@{loc}") as p, pytest.raises(Pyro5.errors.NamingError,
                                                                       match="unknown name"):
        p._pyroBind()


def test_pyro5_finds_ember_ns_by_broadcast(ember_ns):
    with pyro5_config(NS_HOST="127.0.0.1", NS_PORT=_free_port(), NS_BCPORT=ember_ns.broadcast.port,
                      BROADCAST_ADDRS=["127.255.255.255"]):
        with Pyro5.api.locate_ns() as ns:
            assert str(ns._pyroUri) == str(ember_ns.uri)
            assert ns.count() == 1


# ---- Ember clients against Pyro5's name server --------------------------------------------------

def test_ember_locate_ns_and_pyroname_against_pyro5_ns(pyro5_ns, make_daemon, servertype):
    uri, _daemon, _bc = pyro5_ns
    daemon = make_daemon(servertype=servertype)
    with ember.locate_ns("127.0.0.1", uri.port) as ns:
        ns.ping()
        ns.register("calc.e", daemon.register(Calc, "calc"), metadata=["math"])
        assert ns.lookup("calc.e") == daemon.uri_for("calc")
        assert set(ns.lookup("calc.e", return_metadata=True)[1]) == {"math"}
        assert set(ns.list(prefix="calc.")) == {"calc.e"}
        with pytest.raises(errors.NamingError, match="unknown name"):
            ns.lookup("nope")
    loc = f"127.0.0.1:{uri.port}"
    with ember.Proxy(f"PYRONAME:calc.e@{loc}") as p:
        assert p.add(4, 5) == 9
    with ember.Proxy(f"PYROMETA:math@{loc}") as p:
        assert p.add(1, 1) == 2


def test_ember_daemon_publishes_in_pyro5_ns(pyro5_ns):
    uri, pyro_daemon, _bc = pyro5_ns
    with ember.Daemon(ns=str(uri)) as daemon:
        daemon.register(Calc, "calc.pub", metadata={"m"})
        with Pyro5.api.Proxy(uri) as ns:
            assert "calc.pub" in ns.list()
    with Pyro5.api.Proxy(uri) as ns:
        assert "calc.pub" not in ns.list()


def test_ember_finds_pyro5_ns_by_broadcast(pyro5_ns):
    uri, _daemon, bc = pyro5_ns
    found = naming.broadcast_for_ns(bc.getPort(), ["127.255.255.255"])
    assert str(found) == str(uri)
    with ember.config.override(NS_HOST="127.0.0.1", NS_PORT=_free_port(), NS_BCPORT=bc.getPort()):
        with ember.locate_ns() as ns:
            assert str(ns._pyroUri) == str(uri)


def test_ember_nsc_against_pyro5_ns(pyro5_ns):
    import subprocess
    import sys

    uri, _daemon, _bc = pyro5_ns
    with Pyro5.api.Proxy(uri) as ns:
        ns.register("plain.entry", "PYRO:x@127.0.0.1:1")  # no metadata: a frozenset on Pyro5's side
    r = subprocess.run([sys.executable, "-m", "ember.nsc", "-n", "127.0.0.1", "-p", str(uri.port), "list"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "plain.entry --> PYRO:x@127.0.0.1:1" in r.stdout
