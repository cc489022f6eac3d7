"""The name server: its remote interface, storage, broadcast discovery, resolution, autoclean."""

import re
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

import ember
from ember import errors, naming
from ember.config import Config
from ember.naming.nameserver import NAMESERVER_NAME
from ember.naming.responder import REQUEST, BroadcastResponder

from .services import Calc, wait_for


@pytest.fixture(params=["memory", "sql", "redis"])
def ns_service(request, tmp_path):
    if request.param == "redis":
        storage = request.getfixturevalue("redis_url")
    else:
        storage = None if request.param == "memory" else f"sql:{tmp_path / 'ns.sqlite'}"
    service = naming.start_ns("127.0.0.1", 0, bcport=0, storage=storage)
    yield service
    service.shutdown()


@pytest.fixture
def ns(ns_service):
    proxy = ember.locate_ns("127.0.0.1", ns_service.daemon.port)
    yield proxy
    proxy._release()


@pytest.fixture
def calc_daemon(make_daemon):
    daemon = make_daemon()
    daemon.register(Calc, "calc")
    return daemon



# ---- the remote interface ------------------------------------------------------------------

@pytest.mark.parametrize("serializer", ["msgpack", "serpent", "json", "marshal"])
def test_every_call_over_every_serializer(ns_service, serializer):
    with ember.Proxy(ns_service.uri) as ns:
        ns._serializer = serializer
        assert ns.ping() is None
        assert ns.count() == 1
        ns.register("shop.cart", "PYRO:cart@127.0.0.1:5001", metadata=["v2", "class:Cart"])
        ns.register("shop.till", ember.URI("PYRO:till@127.0.0.1:5002"))
        ns.register("office.printer", "PYRO:printer@127.0.0.1:5003", safe=True, metadata={"v2"})
        assert ns.count() == 4
        uri = ns.lookup("shop.cart")
        assert isinstance(uri, ember.URI) and str(uri) == "PYRO:cart@127.0.0.1:5001"
        uri, meta = ns.lookup("shop.cart", return_metadata=True)
        assert set(meta) == {"v2", "class:Cart"}
        assert ns.list(prefix="shop.") == {"shop.cart": "PYRO:cart@127.0.0.1:5001",
                                           "shop.till": "PYRO:till@127.0.0.1:5002"}
        listed = ns.list(prefix="shop.", return_metadata=True)
        assert set(listed["shop.till"][1]) == set() and set(listed["shop.cart"][1]) == {"v2", "class:Cart"}
        assert set(ns.list(regex=r"s.*\.t")) == {"shop.till"}
        assert set(ns.list()) == {NAMESERVER_NAME, "shop.cart", "shop.till", "office.printer"}
        assert set(ns.yplookup(meta_all=["v2"])) == {"shop.cart", "office.printer"}
        assert set(ns.yplookup(meta_any=["class:Cart", "nothing"])) == {"shop.cart"}
        assert ns.yplookup(["v2", "class:Cart"], None, False) == {"shop.cart": "PYRO:cart@127.0.0.1:5001"}
        assert ns.yplookup() == {}
        ns.set_metadata("shop.till", ["cash"])
        assert set(ns.lookup("shop.till", True)[1]) == {"cash"}
        ns.set_metadata("shop.till", None)
        assert set(ns.lookup("shop.till", True)[1]) == set()
        assert ns.remove("shop.till") == 1
        assert ns.remove("shop.till") == 0
        assert ns.remove(prefix="office.") == 1
        assert ns.remove(regex="shop") == 1
        assert set(ns.list()) == {NAMESERVER_NAME}


def test_positional_and_keyword_forms_as_pyro5_sends_them(ns):
    ns.register("a.b", "PYRO:x@127.0.0.1:1", False, ["t"])
    assert str(ns.lookup("a.b", False)) == "PYRO:x@127.0.0.1:1"
    assert ns.list("a.", None, True)["a.b"][0] == "PYRO:x@127.0.0.1:1"
    assert ns.yplookup(["t"], None, False) == {"a.b": "PYRO:x@127.0.0.1:1"}
    assert ns.remove("a.b", None, None) == 1


def test_the_name_server_registers_itself_and_cannot_be_removed(ns_service, ns):
    uri, meta = ns.lookup(NAMESERVER_NAME, return_metadata=True)
    assert uri == ns_service.uri
    assert "class:Pyro5.nameserver.NameServer" in meta
    assert ns.remove(NAMESERVER_NAME) == 0
    assert ns.remove(prefix="Pyro") == 0
    assert ns.remove(regex=".*") == 0
    assert ns.count() == 1


def test_dotted_names_are_groups(ns):
    for name in ("shop.fruit.apple", "shop.fruit.pear", "shop.till", "shopping", "office.desk"):
        ns.register(name, "PYRO:x@127.0.0.1:1")
    assert set(ns.list(group="shop")) == {"shop.fruit.apple", "shop.fruit.pear", "shop.till"}
    assert set(ns.list(group="shop.fruit")) == {"shop.fruit.apple", "shop.fruit.pear"}
    assert ns.remove(group="shop.fruit") == 2
    assert set(ns.list(group="shop")) == {"shop.till"}
    assert "shopping" in ns.list()


def test_list_filters_by_metadata_and_combines_filters(ns):
    ns.register("a.one", "PYRO:x@127.0.0.1:1", metadata=["red", "big"])
    ns.register("a.two", "PYRO:x@127.0.0.1:2", metadata=["red"])
    ns.register("b.three", "PYRO:x@127.0.0.1:3", metadata=["big"])
    assert set(ns.list(metadata_all=["red", "big"])) == {"a.one"}
    assert set(ns.list(metadata_any=["big"])) == {"a.one", "b.three"}
    assert set(ns.list(prefix="a.", metadata_any=["big"])) == {"a.one"}
    with pytest.raises(ValueError, match="at the same time"):  # Pyro5's rule (issue 15)
        ns.yplookup(meta_all=["red"], meta_any=["big"])
    with pytest.raises(ValueError, match="one thing at a time"):
        ns.list(prefix="a.", regex="a")
    assert set(ns.yplookup(meta_all=[], meta_any=["big"])) == {"a.one", "b.three"}  # empty = not given
    assert ns.yplookup(meta_all=[]) == {}


def test_register_overwrites_unless_safe(ns):
    ns.register("dup", "PYRO:x@127.0.0.1:1")
    ns.register("dup", "PYRO:y@127.0.0.1:2")
    assert str(ns.lookup("dup")) == "PYRO:y@127.0.0.1:2"
    with pytest.raises(errors.NamingError, match="name already registered: dup"):
        ns.register("dup", "PYRO:z@127.0.0.1:3", safe=True)
    assert str(ns.lookup("dup")) == "PYRO:y@127.0.0.1:2"


@pytest.mark.parametrize("name", ["", "has space", "tab\tname", "at@host", "line\nbreak", "Pyro.Mine", "€uro"])
def test_any_string_is_a_name_as_in_pyro5(ns, name):
    # names that cannot be written in a PYRONAME: URI stay reachable through lookup
    ns.register(name, "PYRO:x@127.0.0.1:1", metadata=["t"])
    assert str(ns.lookup(name)) == "PYRO:x@127.0.0.1:1"
    assert ns.list(prefix=name)[name] == "PYRO:x@127.0.0.1:1"
    ns.set_metadata(name, ["u"])
    assert set(ns.lookup(name, return_metadata=True)[1]) == {"u"}
    assert ns.remove(name) == 1
    assert ns.count() == 1


@pytest.mark.parametrize("name, exc, message", [
    (42, TypeError, "name must be a str"),
    (None, TypeError, "name must be a str"),
    ("Pyro.NameServer", errors.NamingError, "cannot be replaced"),
])
def test_invalid_names_are_refused_and_the_server_keeps_serving(ns_service, ns, name, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        ns.register(name, "PYRO:x@127.0.0.1:1")
    assert ns.count() == 1
    assert ns.lookup(NAMESERVER_NAME) == ns_service.uri
    with pytest.raises(errors.NamingError, match="cannot be changed"):
        ns.set_metadata(NAMESERVER_NAME, ["mine"])
    with pytest.raises(TypeError, match="name must be a str"):
        ns.lookup(42)
    ns.ping()


@pytest.mark.parametrize("uri", ["PYRONAME:other", "PYRONAME:other@127.0.0.1:9090", "PYROMETA:a,b",
                                 "PYROMETA:a@127.0.0.1:9090", "PYRO:obj@./u:/tmp/sock"])
def test_a_name_maps_to_any_valid_uri(ns, uri):
    ns.register("good.name", uri)
    assert ns.lookup("good.name") == ember.URI(uri)
    assert ns.list()["good.name"] == uri


@pytest.mark.parametrize("uri, exc, message", [
    ("nonsense", errors.PyroError, "invalid uri"),
    ("PYRO:obj@host", errors.PyroError, "missing port"),
    ("PYRO:obj@[zz]:1", errors.PyroError, "not an IPv6 address"),
    (12345, TypeError, "only URIs or strings"),
    (None, TypeError, "only URIs or strings"),
])
def test_invalid_uris_are_refused(ns, uri, exc, message):
    with pytest.raises(exc, match=re.escape(message)):
        ns.register("good.name", uri)
    assert "good.name" not in ns.list()


@pytest.mark.parametrize("metadata", ["just-a-string", [1, 2], 42])
def test_invalid_metadata_is_refused(ns, metadata):
    with pytest.raises(TypeError, match="metadata"):
        ns.register("good.name", "PYRO:x@127.0.0.1:1", metadata=metadata)
    ns.register("good.name", "PYRO:x@127.0.0.1:1")
    with pytest.raises(TypeError, match="metadata should not be a str"):
        ns.set_metadata("good.name", "oops")
    for bad in ("oops", 42):
        with pytest.raises(TypeError, match="meta_all"):
            ns.yplookup(meta_all=bad)
        with pytest.raises(TypeError, match="meta_any"):
            ns.yplookup(meta_any=bad)


def test_bad_regex_and_unknown_names(ns):
    with pytest.raises(errors.NamingError, match=r"invalid regex '\[': "):
        ns.list(regex="[")
    with pytest.raises(errors.NamingError, match="invalid regex"):
        ns.remove(regex="(unclosed")
    with pytest.raises(errors.NamingError, match="unknown name: nobody"):
        ns.lookup("nobody")
    with pytest.raises(errors.NamingError, match="unknown name: nobody"):
        ns.set_metadata("nobody", ["x"])
    ns.ping()


def test_concurrent_registrations(ns_service):
    def worker(i):
        with ember.Proxy(ns_service.uri) as ns:
            for j in range(20):
                ns.register(f"w{i}.n{j}", f"PYRO:o{j}@127.0.0.1:{1000 + i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ns_service.nameserver.count() == 1 + 6 * 20


# ---- storage --------------------------------------------------------------------------------

def test_sqlite_storage_survives_a_restart(tmp_path):
    spec = f"sql:{tmp_path / 'ns.sqlite'}"
    with naming.start_ns("127.0.0.1", 0, storage=spec, enable_broadcast=False) as svc:
        with ember.Proxy(svc.uri) as ns:
            ns.register("kept", "PYRO:k@127.0.0.1:1", metadata=["m"])
    with naming.start_ns("127.0.0.1", 0, storage=spec, enable_broadcast=False) as svc:
        with ember.Proxy(svc.uri) as ns:
            uri, meta = ns.lookup("kept", return_metadata=True)
            assert str(uri) == "PYRO:k@127.0.0.1:1" and set(meta) == {"m"}
            # its own entry points at the new address, not the old one
            assert ns.lookup(NAMESERVER_NAME) == svc.uri


def test_corrupt_sqlite_file_gives_a_clear_startup_error(tmp_path):
    bad = tmp_path / "garbage.db"
    bad.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(errors.NamingError, match=re.escape(str(bad)) + ".*not a usable SQLite database"):
        naming.NameServerService("127.0.0.1", 0, storage=f"sql:{bad}", enable_broadcast=False)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE something (x)")
    with pytest.raises(errors.NamingError, match="not one written by Ember"):
        naming.NameServerService("127.0.0.1", 0, storage=f"sql:{other}", enable_broadcast=False)
    with pytest.raises(errors.NamingError, match="unknown name server storage 'dbm:x'"):
        naming.NameServerService("127.0.0.1", 0, storage="dbm:x", enable_broadcast=False)


def test_storage_backends_share_one_interface(tmp_path):
    for storage in (naming.MemoryStorage(), naming.SqlStorage(str(tmp_path / "s.db"))):
        assert storage.put_if_absent("a", "PYRO:a@h:1", frozenset({"x"}))
        assert not storage.put_if_absent("a", "PYRO:b@h:1", frozenset())
        storage.put("b", "PYRO:b@h:1", frozenset())
        assert storage.get("a") == ("PYRO:a@h:1", frozenset({"x"}))
        assert storage.set_metadata("b", frozenset({"y"}))
        assert not storage.set_metadata("zz", frozenset())
        assert storage.count() == 2
        assert storage.remove(["a", "zz"]) == 1
        assert storage.items() == {"b": ("PYRO:b@h:1", frozenset({"y"}))}
        storage.close()


# ---- autoclean ------------------------------------------------------------------------------

def test_autoclean_removes_registrations_of_dead_daemons(make_daemon):
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False, autoclean=0.2) as svc:
        alive = make_daemon()
        dying = ember.Daemon()
        dying.start()
        with ember.Proxy(svc.uri) as ns:
            ns.register("alive", alive.register(Calc, "calc"))
            ns.register("dying", dying.register(Calc, "calc"))
            ns.register("dying.too", dying.uri_for("Pyro.Daemon"))
            time.sleep(0.6)
            assert set(ns.list()) == {NAMESERVER_NAME, "alive", "dying", "dying.too"}
            dying.shutdown()
            assert wait_for(lambda: set(ns.list()) == {NAMESERVER_NAME, "alive"})


def test_autoclean_sweep_spares_a_daemon_that_comes_back(make_daemon):
    ns_obj = naming.NameServer()
    cleaner = naming.AutoCleaner(ns_obj, 10)
    daemon = make_daemon()
    ns_obj.register("x", daemon.register(Calc, "calc"))
    ns_obj.register("ghost", "PYRO:g@127.0.0.1:1")
    ns_obj.register("alias", "PYRONAME:x")  # names leading to names have no daemon to probe
    ns_obj.register("tagged", "PYROMETA:a,b@127.0.0.1:1")
    assert cleaner.sweep() == 0  # first failure only marks it
    assert cleaner.sweep() == 1  # second consecutive failure removes it
    assert set(ns_obj.list()) == {"x", "alias", "tagged"}


# ---- broadcast discovery ---------------------------------------------------------------------

def test_broadcast_discovery_on_the_loopback_network(ns_service):
    assert ns_service.broadcast is not None
    assert ns_service.broadcast.host == "127.255.255.255"
    found = naming.broadcast_for_ns(ns_service.broadcast.port, ["127.255.255.255"])
    assert found == ns_service.uri


def test_responder_ignores_anything_but_the_request():
    responder = BroadcastResponder("PYRO:Pyro.NameServer@127.0.0.1:1", "127.255.255.255", 0).start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.settimeout(0.3)
            for junk in (b"", b"GET_NSURI\n", b"get_nsuri", b"\xff" * 90):
                s.sendto(junk, ("127.255.255.255", responder.port))
                with pytest.raises(OSError):
                    s.recvfrom(100)
            s.sendto(REQUEST, ("127.255.255.255", responder.port))
            assert s.recvfrom(100)[0] == b"PYRO:Pyro.NameServer@127.0.0.1:1"
    finally:
        responder.close()


def test_responder_for_a_wildcard_bound_name_server_answers_with_the_reachable_address():
    responder = BroadcastResponder("PYRO:Pyro.NameServer@0.0.0.0:4321", "127.255.255.255", 0).start()
    try:
        found = naming.broadcast_for_ns(responder.port, ["127.255.255.255"])
        assert str(found) == "PYRO:Pyro.NameServer@127.0.0.1:4321"
    finally:
        responder.close()


def test_no_broadcast_responder_on_unix_socket_or_when_disabled(tmp_path):
    with naming.start_ns(unixsocket=str(tmp_path / "ns.sock")) as svc:
        assert svc.broadcast is None
        with ember.locate_ns("./u:" + str(tmp_path / "ns.sock")) as ns:
            assert ns.count() == 1
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as svc:
        assert svc.broadcast is None


# ---- locate_ns --------------------------------------------------------------------------------

def test_locate_ns_tries_configured_host_then_broadcast_then_uri_file(ns_service, tmp_path):
    free = _free_port()
    with ember.config.override(NS_HOST="127.0.0.1", NS_PORT=ns_service.daemon.port):
        with ember.locate_ns() as ns:
            assert ns._pyroUri == ns_service.uri
    with ember.config.override(NS_HOST="127.0.0.1", NS_PORT=free, NS_BCPORT=ns_service.broadcast.port):
        with ember.locate_ns() as ns:
            assert ns.count() >= 1
        uri_file = tmp_path / "ns.uri"
        uri_file.write_text(f"{ns_service.uri}\n")
        with ember.locate_ns(broadcast=False, uri_file=uri_file) as ns:
            assert ns._pyroUri == ns_service.uri
        with ember.config.override(NS_URI_FILE=str(uri_file)), ember.locate_ns(broadcast=False) as ns:
            assert ns.ping() is None


def test_locate_ns_failure_says_what_it_tried(tmp_path):
    free = _free_port()
    with ember.config.override(NS_HOST="127.0.0.1", NS_PORT=free, NS_BCPORT=free):
        with pytest.raises(errors.NamingError) as info:
            naming.locate_ns(uri_file=tmp_path / "missing.uri")
    text = str(info.value)
    assert f"127.0.0.1:{free}" in text
    assert "broadcast to 127.255.255.255" in text and "no answer" in text
    assert "missing.uri" in text
    with pytest.raises(errors.NamingError, match=f"cannot locate the name server at 127.0.0.1:{free}"):
        naming.locate_ns("127.0.0.1", free)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- resolving magic URIs -------------------------------------------------------------------

def test_pyroname_and_pyrometa_proxies(ns_service, calc_daemon):
    nsloc = ns_service.daemon.location
    with ember.Proxy(ns_service.uri) as ns:
        ns.register("calc.one", calc_daemon.uri_for("calc"), metadata=["math"])
    with ember.Proxy(f"PYRONAME:calc.one@{nsloc}") as p:
        assert p.add(1, 2) == 3
        assert p._bound_uri == calc_daemon.uri_for("calc")
    with ember.Proxy(f"PYROMETA:math@{nsloc}") as p:
        assert p.add(2, 2) == 4
    assert ember.resolve(f"PYRONAME:calc.one@{nsloc}") == calc_daemon.uri_for("calc")
    with pytest.raises(errors.NamingError, match="unknown name: nope"):
        ember.Proxy(f"PYRONAME:nope@{nsloc}")._bind()
    with pytest.raises(errors.NamingError, match="no registrations available"):
        ember.resolve(f"PYROMETA:math,absent@{nsloc}")


def test_a_name_leading_to_another_magic_uri_is_followed(ns_service, calc_daemon):
    nsloc = ns_service.daemon.location
    ns = ns_service.nameserver
    ns.register("calc.real", calc_daemon.uri_for("calc"), metadata=["real"])
    ns.register("calc.alias", f"PYRONAME:calc.real@{nsloc}")
    ns.register("calc.meta", f"PYROMETA:real@{nsloc}")
    ns.register("calc.alias2", f"PYRONAME:calc.meta@{nsloc}")
    with ember.Proxy(f"PYRONAME:calc.alias2@{nsloc}") as p:
        assert p.add(1, 2) == 3
    assert ember.resolve(f"PYRONAME:calc.alias@{nsloc}") == calc_daemon.uri_for("calc")
    ns.register("loop.a", f"PYRONAME:loop.b@{nsloc}")
    ns.register("loop.b", f"PYRONAME:loop.a@{nsloc}")
    with pytest.raises(errors.NamingError, match="lead to one another"):
        ember.resolve(f"PYRONAME:loop.a@{nsloc}")


def test_pyroname_without_location_uses_locate_ns(ns_service, calc_daemon):
    ns_service.nameserver.register("calc.located", calc_daemon.uri_for("calc"))
    with ember.config.override(NS_HOST="127.0.0.1", NS_PORT=ns_service.daemon.port):
        with ember.Proxy("PYRONAME:calc.located") as p:
            assert p.add(5, 5) == 10


def test_pyrometa_picks_among_all_matches(ns_service, make_daemon):
    daemons = [make_daemon() for _ in range(3)]
    for i, d in enumerate(daemons):
        ns_service.nameserver.register(f"calc.{i}", d.register(Calc, "calc"), metadata=["pool"])
    seen = {ember.resolve(f"PYROMETA:pool@{ns_service.daemon.location}") for _ in range(40)}
    assert seen == {d.uri_for("calc") for d in daemons}


def test_proxy_re_resolves_its_name_after_a_reconnect(ns_service, make_daemon):
    first = ember.Daemon()
    first.start()
    ns_service.nameserver.register("moving", first.register(Calc, "calc"))
    proxy = ember.Proxy(f"PYRONAME:moving@{ns_service.daemon.location}")
    try:
        assert proxy.add(1, 1) == 2
        first.shutdown()
        second = make_daemon()
        ns_service.nameserver.register("moving", second.register(Calc, "calc"))
        proxy._reconnect(tries=3, wait=0.05)
        assert proxy.add(2, 3) == 5
        assert proxy._bound_uri == second.uri_for("calc")
    finally:
        proxy._release()
        first.shutdown()


def test_lookup_delay_waits_for_a_late_registration(ns_service, calc_daemon):
    def late():
        time.sleep(0.3)
        ns_service.nameserver.register("late.calc", calc_daemon.uri_for("calc"))

    t = threading.Thread(target=late)
    t.start()
    try:
        with ember.config.override(NS_LOOKUP_DELAY=3.0):
            assert ember.resolve(f"PYRONAME:late.calc@{ns_service.daemon.location}") == calc_daemon.uri_for("calc")
    finally:
        t.join()
    with ember.config.override(NS_LOOKUP_DELAY=0.3), pytest.raises(errors.NamingError, match="unknown name"):
        ember.resolve(f"PYRONAME:never@{ns_service.daemon.location}")


def test_pyroloc_asks_the_daemon_directly(calc_daemon):
    with ember.Proxy(f"PYROLOC:calc@{calc_daemon.location}") as p:
        assert p.add(3, 4) == 7
    with ember.Proxy(f"PYROLOC://{calc_daemon.location}/calc") as p:
        assert p.add(3, 5) == 8
    with pytest.raises(errors.NamingError, match="has no object named 'nothing'"):
        ember.resolve(f"PYROLOC:nothing@{calc_daemon.location}")
    with pytest.raises(errors.NamingError, match="no daemon reachable"):
        ember.resolve(f"PYROLOC:calc@127.0.0.1:{_free_port()}")


# ---- daemons publishing their names ---------------------------------------------------------

def test_daemon_publishes_and_unpublishes_names(ns_service, servertype):
    nameserver = ns_service.nameserver
    with ember.Daemon(servertype=servertype, ns=ns_service.uri) as daemon:
        daemon.start()
        uri = daemon.register(Calc, "calc.pub", metadata={"math"})
        daemon.register(Calc(), ns_name="calc.other")
        daemon.register(Calc())  # no name: not published
        assert nameserver.lookup("calc.pub", True) == (uri, {"math"})
        assert "calc.other" in nameserver.list()
        assert nameserver.count() == 3
        daemon.unregister("calc.pub")
        assert "calc.pub" not in nameserver.list()
    assert nameserver.count() == 1


def test_daemon_can_leave_names_at_shutdown(ns_service):
    with ember.Daemon(ns=ember.Proxy(ns_service.uri), ns_unregister=False) as daemon:
        daemon.register(Calc, "calc.kept")
    assert "calc.kept" in ns_service.nameserver.list()


def test_daemon_name_server_errors(ns_service):
    with ember.Daemon() as daemon:
        with pytest.raises(errors.DaemonError, match="has no name server"):
            daemon.register(Calc, ns_name="x")
        assert list(daemon.objects_by_id) == ["Pyro.Daemon"]
    with ember.Daemon(ns=ns_service.uri) as daemon:
        with pytest.raises(errors.NamingError, match="cannot be replaced"):
            daemon.register(Calc, ns_name="Pyro.NameServer")
        assert list(daemon.objects_by_id) == ["Pyro.Daemon"]


def test_pyro_names_other_than_the_name_server_can_be_registered(ns):
    """Only Pyro.NameServer is protected: services such as Pyro.EventService register under Pyro."""
    ns.register("Pyro.EventService", "PYRO:Pyro.EventService@127.0.0.1:1")
    assert str(ns.lookup("Pyro.EventService")) == "PYRO:Pyro.EventService@127.0.0.1:1"
    ns.set_metadata("Pyro.EventService", {"events"})
    assert ns.remove("Pyro.EventService") == 1
    ns_uri = ns.lookup("Pyro.NameServer")
    with pytest.raises(errors.NamingError, match="cannot be changed"):
        ns.set_metadata("Pyro.NameServer", {"x"})
    assert ns.remove("Pyro.NameServer") == 0
    assert ns.remove(prefix="Pyro.") == 0
    assert ns.lookup("Pyro.NameServer") == ns_uri


def test_serve_with_use_ns(ns_service):
    with ember.config.override(NS_HOST="127.0.0.1", NS_PORT=ns_service.daemon.port):
        daemon = ember.Daemon()
        t = threading.Thread(target=ember.serve, args=({Calc: "calc.served"},),
                             kwargs={"daemon": daemon, "use_ns": True, "verbose": False})
        t.start()
        try:
            assert wait_for(lambda: "calc.served" in ns_service.nameserver.list())
            with ember.Proxy("PYRONAME:calc.served") as p:
                assert p.add(1, 2) == 3
        finally:
            daemon.shutdown()
            t.join()
    assert "calc.served" not in ns_service.nameserver.list()


def test_no_loopback_broadcast_address_is_not_fatal(monkeypatch):
    """Systems without 127.255.255.255 (macOS) still get a name server, just no responder."""
    from ember.naming import service as service_module

    def unavailable(uri, host, port):
        raise errors.CommunicationError(f"cannot bind the broadcast responder to udp {host}:{port}")

    monkeypatch.setattr(service_module, "BroadcastResponder", unavailable)
    with naming.start_ns("127.0.0.1", 0, bcport=0) as svc:
        assert svc.broadcast is None
        with ember.Proxy(svc.uri) as ns:
            assert ns.count() == 1
    with pytest.raises(errors.CommunicationError, match="cannot bind the broadcast responder"):
        naming.start_ns("127.0.0.1", 0, bchost="127.0.0.1", bcport=0)


def test_naming_doc_says_plainly_that_default_broadcasts_reach_the_lan():
    # issue 14.15: the Pyro5-compatible default sends discovery to the whole LAN; keep the
    # default, but naming.md must say so and how to stay on one host
    text = (Path(__file__).resolve().parent.parent / "docs" / "naming.md").read_text()
    section = text.split("### Broadcasts reach the whole LAN by default", 1)[1].split("\n### ", 1)[0]
    defaults = Config(use_environment=False).BROADCAST_ADDRS
    assert defaults == ["<broadcast>", "0.0.0.0"]
    for addr in defaults:
        assert f"`{addr}`" in section
    for remedy in ("PYRO_BROADCAST_ADDRS=127.255.255.255", "NS_HOST", "NS_URI_FILE", "broadcast=False"):
        assert remedy in section
