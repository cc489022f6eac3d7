"""Scale-out (issue 19): leases, replicated names, the client lookup cache, several name
servers on one registry (memory, SQLite and a real redis-server), event services sharing
Redis Streams, and the chaos test."""

import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import ember
from ember import errors, naming
from ember.client import resolve as resolve_mod
from ember.events import EventServer, Publisher, Subscriber
from ember.naming.storage import Leases, Replicated, open_storage

from .services import wait_for

HELPER = str(Path(__file__).with_name("replica_daemon.py"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(params=["memory", "sql", "redis"])
def storage_spec(request, tmp_path):
    if request.param == "redis":
        return request.getfixturevalue("redis_url")
    return "memory" if request.param == "memory" else f"sql:{tmp_path / 'ns.sqlite'}"


@pytest.fixture
def ns_svc(storage_spec):
    with naming.start_ns("127.0.0.1", 0, storage=storage_spec, enable_broadcast=False) as service:
        yield service


class Replicas:
    """Replica daemon processes (tests/replica_daemon.py), SIGKILLed by pid at teardown."""

    def __init__(self):
        self.procs = []

    def start(self, worker_id, *names, ns_port=None, ns_hosts=(), lease=1.0, die_on_call=False):
        env = dict(os.environ, PYRO_NS_LEASE_TIME=str(lease), PYRO_NS_HOST="127.0.0.1",
                   PYRO_NS_HOSTS=",".join(ns_hosts), REPLICA_DIE_ON_CALL="1" if die_on_call else "0",
                   PYRO_NS_LOOKUP_CACHE="0")
        if ns_port is not None:
            env["PYRO_NS_PORT"] = str(ns_port)
        proc = subprocess.Popen([sys.executable, HELPER, worker_id, *names], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        self.procs.append(proc)
        line = proc.stdout.readline()
        if not line.startswith("ready"):
            proc.kill()
            pytest.fail(f"replica {worker_id} did not start: {line!r} {proc.stderr.read()!r}")
        return proc, [ember.URI(u) for u in line.split()[1:]]

    def kill(self, proc):
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self):
        for proc in self.procs:
            self.kill(proc)
            proc.stdout.close()
            proc.stderr.close()


@pytest.fixture
def replicas():
    made = Replicas()
    yield made
    made.close()


@ember.expose
class Who:
    def __init__(self, tag):
        self.tag = tag

    @ember.idempotent
    def whoami(self):
        return self.tag


# ---- storage: leases and replicas on every back-end -----------------------------------------

def test_storage_leases_and_replicas(storage_spec):
    st = open_storage(storage_spec)
    try:
        assert isinstance(st, Leases) and isinstance(st, Replicated)
        lease = st.grant_lease(0.4)
        st.put_leased("svc", "PYRO:a@h:1", frozenset({"m"}), lease, "replica")
        st.put_leased("svc", "PYRO:b@h:2", frozenset({"m"}), None, "replica")
        st.put_leased("solo", "PYRO:s@h:3", frozenset(), lease)
        assert st.replicas("svc") == (("PYRO:a@h:1", "PYRO:b@h:2"), frozenset({"m"}))
        assert st.get("svc") == ("PYRO:a@h:1", frozenset({"m"}))
        assert st.items()["svc"] == ("PYRO:a@h:1", frozenset({"m"})) and st.count() == 2
        assert st.renew_lease(lease)
        assert wait_for(lambda: st.get("solo") is None, 5)
        assert st.replicas("svc") == (("PYRO:b@h:2",), frozenset({"m"})) and st.count() == 1
        assert not st.renew_lease(lease)
        with pytest.raises(errors.NamingError, match="unknown or expired lease"):
            st.put_leased("late", "PYRO:l@h:1", frozenset(), lease)
        # "replace" (Pyro5's register) replaces every replica; "absent" (safe) refuses an existing name
        st.put_leased("svc", "PYRO:c@h:4", frozenset(), None, "replace")
        assert st.replicas("svc") == (("PYRO:c@h:4",), frozenset())
        assert not st.put_leased("svc", "PYRO:x@h:9", frozenset(), None, "absent")
        # a replica registered again moves to the end, with the new metadata for the name
        st.put_leased("svc", "PYRO:d@h:5", frozenset({"v2"}), None, "replica")
        st.put_leased("svc", "PYRO:c@h:4", frozenset({"v3"}), None, "replica")
        assert st.replicas("svc") == (("PYRO:d@h:5", "PYRO:c@h:4"), frozenset({"v3"}))
        # revoking a lease removes its registrations at once
        other = st.grant_lease(30)
        st.put_leased("x", "PYRO:x@h:1", frozenset(), other, "replica")
        st.put_leased("svc", "PYRO:e@h:6", frozenset({"v3"}), other, "replica")
        assert st.revoke_lease(other) == 2 and st.get("x") is None and st.revoke_lease(other) == 0
        assert st.replicas("svc")[0] == ("PYRO:d@h:5", "PYRO:c@h:4")
        assert st.remove_uri("svc", "PYRO:d@h:5") and not st.remove_uri("svc", "PYRO:d@h:5")
        assert st.remove_uri("svc", "PYRO:c@h:4") and st.get("svc") is None
    finally:
        st.close()


def test_sqlite_file_of_schema_1_is_upgraded(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE registrations (name TEXT PRIMARY KEY, uri TEXT NOT NULL, metadata TEXT NOT NULL)")
        db.execute("INSERT INTO registrations VALUES ('kept', 'PYRO:k@h:1', '[\"m\"]')")
        db.execute("PRAGMA user_version=1")
    st = naming.SqlStorage(str(path))
    try:
        assert st.get("kept") == ("PYRO:k@h:1", frozenset({"m"}))
        st.put_leased("kept", "PYRO:k2@h:2", frozenset({"m"}), None, "replica")
        assert st.replicas("kept") == (("PYRO:k@h:1", "PYRO:k2@h:2"), frozenset({"m"}))
    finally:
        st.close()


# ---- the name server's remote interface --------------------------------------------------------

def test_replicated_names_and_leases_over_the_wire(ns_svc):
    a, b, c = "PYRO:a@127.0.0.1:1", "PYRO:b@127.0.0.1:2", "PYRO:c@127.0.0.1:3"
    with ember.Proxy(ns_svc.uri) as ns:
        ns.register("svc", a, metadata=["x"], replicated=True)
        ns.register("svc", b, metadata=["x"], replicated=True)
        assert ns.replicas("svc") == [a, b]
        uris, meta = ns.replicas("svc", return_metadata=True)
        assert set(meta) == {"x"}
        assert {str(ns.lookup("svc")) for _ in range(60)} == {a, b}  # a Pyro5 client gets one, at random
        assert ns.list(prefix="svc") == {"svc": a} and ns.count() == 2
        assert ns.remove("svc", uri=a) == 1 and ns.remove("svc", uri=a) == 0
        assert ns.replicas("svc") == [b]
        ns.register("svc", c)  # Pyro5's register: one name, one URI
        assert ns.replicas("svc") == [c]
        with pytest.raises(errors.NamingError, match="already registered"):
            ns.register("svc", a, safe=True, replicated=True)
        with pytest.raises(errors.NamingError, match="unknown name: nothing"):
            ns.replicas("nothing")
        lease = ns.grant_lease(0.5)
        ns.register("tmp", a, lease=lease)
        ns.register("svc", b, lease=lease, replicated=True)
        assert ns.renew_lease(lease)
        assert wait_for(lambda: "tmp" not in ns.list(), 5)
        assert ns.replicas("svc") == [c] and not ns.renew_lease(lease)
        with pytest.raises(errors.NamingError, match="unknown or expired lease"):
            ns.register("tmp", a, lease=lease)
        with pytest.raises(errors.NamingError, match="out of range"):
            ns.grant_lease(0)
        with pytest.raises(TypeError):
            ns.register("tmp", a, lease=42)
        lease = ns.grant_lease(30)
        ns.register("tmp", a, lease=lease)
        assert ns.revoke_lease(lease) == 1 and "tmp" not in ns.list()


def test_pyro5_client_looks_up_one_replica(ns_svc):
    Pyro5_api = pytest.importorskip("Pyro5.api")
    with ember.Proxy(ns_svc.uri) as ns:
        ns.register("svc", "PYRO:a@127.0.0.1:1", replicated=True)
        ns.register("svc", "PYRO:b@127.0.0.1:2", replicated=True)
    with Pyro5_api.Proxy(str(ns_svc.uri)) as ns:
        seen = {str(ns.lookup("svc")) for _ in range(40)}
    assert seen == {"PYRO:a@127.0.0.1:1", "PYRO:b@127.0.0.1:2"}


# ---- daemons: leases renewed while alive, names gone after a SIGKILL -------------------------------

@pytest.mark.timeout(60)
def test_names_of_a_killed_daemon_disappear_within_the_lease(ns_svc, replicas):
    lease = 1.0
    port = ns_svc.daemon.port
    doomed, (doomed_uri,) = replicas.start("doomed", "svc.work", ns_port=port, lease=lease)
    _alive, (alive_uri,) = replicas.start("alive", "svc.work", ns_port=port, lease=lease)
    ns = ns_svc.nameserver
    assert ns.replicas("svc.work") == [str(doomed_uri), str(alive_uri)]
    time.sleep(3 * lease)  # several lease times: the publishers renew, nothing expires
    assert ns.replicas("svc.work") == [str(doomed_uri), str(alive_uri)]
    replicas.kill(doomed)
    killed = time.monotonic()
    # gone within the lease time (plus a margin for a loaded machine), with no name server pinging anyone
    assert wait_for(lambda: ns.replicas("svc.work") == [str(alive_uri)], lease + 3)
    assert time.monotonic() - killed < lease + 3


def test_publisher_registers_again_when_its_lease_was_lost(make_daemon):
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as svc, \
            ember.config.override(NS_LEASE_TIME=0.6):
        daemon = ember.Daemon(host="127.0.0.1", ns=svc.uri)
        try:
            daemon.register(Who("a"), "svc.who", replicated=True)
            publisher = daemon._publisher
            assert publisher.lease is not None
            svc.nameserver.revoke_lease(publisher.lease)  # as if the registry had lost it
            assert svc.nameserver.list(prefix="svc.") == {}
            assert wait_for(lambda: "svc.who" in svc.nameserver.list(), 5)
            daemon.unregister("svc.who")
            assert "svc.who" not in svc.nameserver.list()
        finally:
            daemon.shutdown()


def test_no_lease_with_lease_time_zero_or_a_pyro5_style_name_server():
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as svc, ember.config.override(NS_LEASE_TIME=0):
        with ember.Daemon(host="127.0.0.1", ns=svc.uri) as daemon:
            daemon.register(Who("a"), "plain")
            assert daemon._publisher.lease is None and daemon._publisher._thread is None
            assert "plain" in svc.nameserver.list()
        assert "plain" not in svc.nameserver.list()


# ---- PYRONAME proxies over replicas ----------------------------------------------------------------

def _who_daemons(svc, make_daemon, tags):
    daemons = []
    for tag in tags:
        d = make_daemon(ns=svc.uri)
        d.register(Who(tag), "svc.who", replicated=True)
        daemons.append(d)
    return daemons


def test_new_connections_go_round_robin_and_fail_over_on_connect(make_daemon):
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as svc, \
            ember.config.override(NS_LOOKUP_CACHE=30.0):
        a, b = _who_daemons(svc, make_daemon, "ab")
        name = f"PYRONAME:svc.who@{svc.daemon.location}"
        seen = []
        for _ in range(6):
            with ember.Proxy(name) as p:
                seen.append(p.whoami())
        assert sorted(seen) == ["a", "a", "a", "b", "b", "b"]
        assert all(x != y for x, y in zip(seen, seen[1:], strict=False))  # round robin: turns alternate
        # 'a' goes away without the name server knowing yet (the cached lookup still lists it)
        a.server.shutdown()
        for _ in range(4):
            with ember.Proxy(name) as p:
                assert p.whoami() == "b"
        assert resolve_mod._cached(name) == (b.uri_for("svc.who"),)  # the dead one left the cache


def test_lookup_cache_saves_round_trips_and_is_dropped_on_connection_failure(make_daemon):
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as svc:
        calls = []
        real = svc.nameserver.replicas

        def counting(*args, **kwargs):
            calls.append(args)
            return real(*args, **kwargs)

        svc.nameserver.replicas = counting
        first = make_daemon()
        svc.nameserver.register("moving", first.register(Who("first"), "w"))
        name = f"PYRONAME:moving@{svc.daemon.location}"
        with ember.config.override(NS_LOOKUP_CACHE=30.0):
            for _ in range(5):
                with ember.Proxy(name) as p:
                    assert p.whoami() == "first"
            assert len(calls) == 1
            first.server.shutdown()
            second = make_daemon()
            svc.nameserver.register("moving", second.register(Who("second"), "w"))
            with ember.Proxy(name) as p:
                assert p.whoami() == "second"  # the cached URI failed: looked up again
            assert len(calls) == 2
        with ember.config.override(NS_LOOKUP_CACHE=0):
            for _ in range(3):
                with ember.Proxy(name) as p:
                    p.whoami()
            assert len(calls) == 5


@pytest.mark.timeout(60)
def test_in_flight_call_moves_to_another_replica_only_when_idempotent(replicas):
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as svc, ember.config.override(NS_LOOKUP_CACHE=0):
        port = svc.daemon.port
        replicas.start("ok", "svc.crash", ns_port=port, lease=5)
        name = f"PYRONAME:svc.crash@{svc.daemon.location}"

        def bound_to(uri):
            for _ in range(20):
                p = ember.Proxy(name)
                p._bind()
                if p._bound_uri == uri:
                    return p
                p._release()
            pytest.fail(f"no proxy bound to {uri}")

        _doomed, (doomed_uri,) = replicas.start("doomed1", "svc.crash", ns_port=port, lease=5, die_on_call=True)
        with bound_to(doomed_uri) as p:
            assert "crash_idempotent" in p._idempotent and "crash" not in p._idempotent
            with pytest.raises(errors.ConnectionClosedError):
                p.crash()  # may have run: the caller gets the error
        _doomed, (doomed_uri,) = replicas.start("doomed2", "svc.crash", ns_port=port, lease=5, die_on_call=True)
        with bound_to(doomed_uri) as p:
            assert p.crash_idempotent() == "ok"  # ran again on the other replica
            assert p._bound_uri != doomed_uri


def test_async_proxy_spreads_and_fails_over_too(make_daemon):
    import asyncio

    from ember.aio import AsyncProxy

    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as svc, \
            ember.config.override(NS_LOOKUP_CACHE=30.0):
        a, b = _who_daemons(svc, make_daemon, "ab")
        name = f"PYRONAME:svc.who@{svc.daemon.location}"

        async def run():
            seen = []
            for _ in range(4):
                async with AsyncProxy(name) as p:
                    seen.append(await p.whoami())
            a.server.shutdown()
            for _ in range(3):
                async with AsyncProxy(name) as p:
                    seen.append(await p.whoami())
            return seen

        seen = asyncio.run(run())
        assert sorted(seen[:4]) == ["a", "a", "b", "b"] and seen[4:] == ["b", "b", "b"]


# ---- several name servers on one registry --------------------------------------------------------

def test_ns_hosts_spread_over_name_servers_sharing_one_registry(tmp_path, make_daemon):
    spec = f"sql:{tmp_path / 'shared.db'}"
    with naming.start_ns("127.0.0.1", 0, storage=spec, enable_broadcast=False) as one, \
            naming.start_ns("127.0.0.1", 0, storage=spec, enable_broadcast=False) as two:
        dead = f"127.0.0.1:{_free_port()}"
        hosts = [dead, f"127.0.0.1:{one.daemon.port}", f"127.0.0.1:{two.daemon.port}"]
        with ember.config.override(NS_HOSTS=hosts, NS_HOST="127.0.0.1", NS_PORT=_free_port()):
            ports = set()
            for _ in range(30):
                with ember.locate_ns(broadcast=False) as ns:
                    ports.add(ns._pyroUri.port)
            assert ports == {one.daemon.port, two.daemon.port}  # random order: both get clients
            d = make_daemon(ns=True)
            d.register(Who("x"), "shared.who")
            assert str(two.nameserver.lookup("shared.who")) == str(d.uri_for("shared.who"))
            with ember.Proxy("PYRONAME:shared.who") as p:
                assert p.whoami() == "x"
    assert resolve_mod._ns_item("[::1]:9999").host == "::1" and resolve_mod._ns_item("[::1]:9999").port == 9999
    assert resolve_mod._ns_item("h").port == ember.config.NS_PORT
    assert resolve_mod._ns_item("./u:/tmp/ns.sock").sockname == "/tmp/ns.sock"


# ---- Redis: bad URLs, an outage ---------------------------------------------------------------------

def test_bad_redis_url_is_a_clear_start_up_error(redis_server):
    url = f"redis://127.0.0.1:{_free_port()}/0"
    with pytest.raises(errors.NamingError) as info:
        naming.NameServerService("127.0.0.1", 0, storage=url, enable_broadcast=False)
    assert url in str(info.value) and "cannot use the name server storage" in str(info.value)
    with pytest.raises(errors.NamingError, match="invalid Redis URL 'redis://127.0.0.1:port/0'"):
        naming.NameServerService("127.0.0.1", 0, storage="redis://127.0.0.1:port/0", enable_broadcast=False)
    with pytest.raises(errors.NamingError) as info:
        open_storage(f"redis://:s3cret@127.0.0.1:{_free_port()}/0")
    assert "s3cret" not in str(info.value) and ":***@127.0.0.1" in str(info.value)
    out = subprocess.run([sys.executable, "-m", "ember.naming", "-n", "127.0.0.1", "-p", "0", "-x", "-s", url],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and url in out.stderr, out.stderr


@pytest.mark.timeout(60)
def test_redis_going_away_gives_naming_errors_and_calls_recover(own_redis):
    with naming.start_ns("127.0.0.1", 0, storage=own_redis.url, enable_broadcast=False) as svc:
        with ember.Proxy(svc.uri) as ns:
            ns.register("a", "PYRO:a@127.0.0.1:1")
            own_redis.stop()
            for call in (lambda: ns.lookup("a"), lambda: ns.register("b", "PYRO:b@127.0.0.1:2"), ns.count,
                         lambda: ns.list(prefix="a")):
                with pytest.raises(errors.NamingError, match=f"name server storage {own_redis.url} failed"):
                    call()
            own_redis.start()  # an empty Redis (no persistence in the tests) on the same port
            ns.register("b", "PYRO:b@127.0.0.1:2")
            assert str(ns.lookup("b")) == "PYRO:b@127.0.0.1:2"


# ---- the event service on Redis Streams -----------------------------------------------------------

class Collector(Subscriber):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received = []

    def event(self, event):
        self.received.append(event)


@pytest.mark.timeout(60)
def test_event_services_share_subjects_and_replay_through_redis(redis_url):
    one = EventServer("127.0.0.1", 0, ns=False, storage=redis_url).start()
    two = EventServer("127.0.0.1", 0, ns=False, storage=redis_url).start()
    subs = []
    try:
        live = Collector(one.uri).start()
        subs.append(live)
        live.subscribe("orders")
        with Publisher(two.uri) as pub:
            for i in range(5):
                pub.publish("orders", i)
        with Publisher(one.uri) as pub:
            pub.publish("orders", 5)
        assert wait_for(lambda: len(live.received) == 6, 10)
        assert sorted(e["message"] for e in live.received) == list(range(6))
        assert sorted(e["seq"] for e in live.received) == list(range(1, 7))  # one numbering for both services
        # replay by seq on the other service sees what was published on either
        late = Collector(two.uri).start()
        subs.append(late)
        late.subscribe("orders", since=2)
        assert wait_for(lambda: len(late.received) == 4, 10)
        assert [e["seq"] for e in late.received] == [3, 4, 5, 6]
        assert [e["message"] for e in late.received] == [2, 3, 4, 5]
    finally:
        for sub in subs:
            sub.close()
        one.shutdown()
        two.shutdown()
    third = EventServer("127.0.0.1", 0, ns=False, storage=redis_url)
    try:
        assert third.service.storage.last_seq() == 6  # the counter lives in Redis
    finally:
        third.shutdown()


def test_bad_event_storage_url():
    url = f"redis://127.0.0.1:{_free_port()}/0"
    with pytest.raises(errors.PyroError, match=f"cannot use the event storage {url}"):
        EventServer("127.0.0.1", 0, ns=False, storage=url)


# ---- chaos: 3 name servers, 4 daemons, 2 replicated names, 8 client threads, SIGKILLs ------------------

class NameServers:
    """``ember ns`` processes on one Redis registry, SIGKILLed by pid at teardown."""

    def __init__(self):
        self.procs = {}

    def start(self, storage):
        port = _free_port()
        proc = subprocess.Popen([sys.executable, "-m", "ember.naming", "-n", "127.0.0.1", "-p", str(port), "-x",
                                 "-s", storage], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs[port] = proc
        for line in proc.stdout:
            if "Press Ctrl-C" in line:
                return port
        pytest.fail(f"ember ns did not start: {proc.stderr.read()!r}")

    def kill(self, port):
        proc = self.procs[port]
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def close(self):
        for port, proc in self.procs.items():
            self.kill(port)
            proc.stdout.close()
            proc.stderr.close()


@pytest.fixture
def name_servers():
    made = NameServers()
    yield made
    made.close()


@pytest.mark.timeout(120)
def test_chaos_no_call_fails_while_a_daemon_and_a_name_server_are_killed(redis_url, name_servers, replicas):
    lease = 2.0
    ports = [name_servers.start(redis_url) for _ in range(3)]
    hosts = [f"127.0.0.1:{port}" for port in ports]
    daemons = {}
    for i, name in enumerate(["chaos.a", "chaos.a", "chaos.b", "chaos.b"]):
        proc, (uri,) = replicas.start(f"d{i}", name, ns_hosts=hosts, lease=lease)
        daemons[f"d{i}"] = (proc, uri)
    errors_seen, calls, served_by = [], [0] * 8, {}
    stop = threading.Event()
    lock = threading.Lock()

    def client(index):
        name = "PYRONAME:chaos.a" if index % 2 == 0 else "PYRONAME:chaos.b"
        n = 0
        while not stop.is_set():
            try:
                with ember.Proxy(name) as p:  # a new proxy every few calls: lookups and connects keep going
                    for _ in range(random.randint(1, 8)):
                        result, worker = p.work(n)
                        assert result == n + 1
                        n += 1
                        calls[index] += 1
                        with lock:
                            served_by[worker] = served_by.get(worker, 0) + 1
            except Exception as exc:  # noqa: BLE001 - every failure is what the test looks for
                errors_seen.append(f"client {index}: {type(exc).__name__}: {exc}")
                time.sleep(0.05)

    with ember.config.override(NS_HOSTS=hosts, NS_HOST="127.0.0.1", NS_PORT=_free_port(), NS_LOOKUP_CACHE=1.0,
                               COMMTIMEOUT=5.0):
        threads = [threading.Thread(target=client, args=(i,), name=f"chaos-{i}") for i in range(8)]
        for t in threads:
            t.start()
        try:
            time.sleep(6)
            before_kill = dict(served_by)
            doomed_proc, doomed_uri = daemons["d0"]
            replicas.kill(doomed_proc)
            name_servers.kill(ports[0])
            killed = time.monotonic()
            with ember.Proxy(f"PYRO:Pyro.NameServer@{hosts[1]}") as ns:
                gone = wait_for(lambda: str(doomed_uri) not in ns.replicas("chaos.a"), lease + 3)
                gone_after = time.monotonic() - killed
                assert ns.replicas("chaos.a") == [str(daemons["d1"][1])]
                assert len(ns.replicas("chaos.b")) == 2
            time.sleep(max(0.0, 14 - (time.monotonic() - killed)))
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
    assert errors_seen == []
    assert gone, f"the killed daemon's name was still registered {gone_after:.1f} s after the kill"
    assert all(calls), calls
    assert {"d0", "d1", "d2", "d3"} <= set(before_kill)  # the calls were spread over every replica
    assert served_by["d1"] > before_kill["d1"]  # and d1 took over d0's share


@pytest.mark.timeout(90)
def test_event_service_processes_share_subjects_through_redis(redis_url):
    """An ``ember events -s redis://`` process and an in-process event service: a subscriber
    on one sees what is published on the other, and replay by seq works across them."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "ember.cli", "events", "-n", "127.0.0.1", "-p", str(port), "-x",
                             "-s", redis_url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    local = None
    subs = []
    try:
        uri = None
        for line in proc.stdout:
            if line.startswith("URI = "):
                uri = line.split("=", 1)[1].strip()
            if "Press Ctrl-C" in line:
                break
        assert uri is not None, proc.stderr.read()
        local = EventServer("127.0.0.1", 0, ns=False, storage=redis_url).start()
        here = Collector(local.uri).start()
        there = Collector(uri).start()
        subs += [here, there]
        here.subscribe("ticks")
        there.subscribe("ticks")
        with Publisher(uri) as pub:  # published in the other process
            pub.publish_many([("ticks", i) for i in range(3)])
        with Publisher(local.uri) as pub:  # and here
            pub.publish("ticks", 3)
        for sub in (here, there):
            assert wait_for(lambda sub=sub: len(sub.received) == 4, 10)
            assert sorted(e["seq"] for e in sub.received) == [1, 2, 3, 4]
        replay = Collector(uri).start()
        subs.append(replay)
        replay.subscribe("ticks", since=1)
        assert wait_for(lambda: len(replay.received) == 3, 10)
        assert [e["message"] for e in replay.received] == [1, 2, 3]  # seq 4 was published in this process
    finally:
        for sub in subs:
            sub.close()
        if local is not None:
            local.shutdown()
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_event_services_sharing_redis_register_one_replicated_name(redis_url):
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as svc:
        servers = [EventServer("127.0.0.1", 0, ns=svc.uri, storage=redis_url) for _ in range(2)]
        try:
            assert svc.nameserver.replicas("Pyro.EventService") == [str(s.uri) for s in servers]
        finally:
            for server in servers:
                server.shutdown()
        assert "Pyro.EventService" not in svc.nameserver.list()


def test_nsc_replicas():
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as svc:
        svc.nameserver.register("svc", "PYRO:a@127.0.0.1:1", replicated=True, metadata=["m"])
        svc.nameserver.register("svc", "PYRO:b@127.0.0.1:2", replicated=True, metadata=["m"])
        r = subprocess.run([sys.executable, "-m", "ember.nsc", "-n", "127.0.0.1", "-p", str(svc.daemon.port),
                            "replicas", "svc"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "svc --> 2 replica(s)" in r.stdout and "PYRO:a@127.0.0.1:1" in r.stdout and "PYRO:b@127.0.0.1:2" in r.stdout
        r = subprocess.run([sys.executable, "-m", "ember.nsc", "-n", "127.0.0.1", "-p", str(svc.daemon.port),
                            "replicas", "nothing"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "unknown name: nothing" in r.stderr


@pytest.mark.timeout(60)
def test_rediss_url_with_a_password(tmp_path):
    """``rediss://:PASSWORD@host:port/db`` (TLS): the name server works; a wrong password is a
    start-up error naming the URL with the password hidden."""
    from .redis_fixture import redis_binary

    trustme = pytest.importorskip("trustme")
    binary = redis_binary()
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                             "--tls-cert-file", str(tmp_path / "server.pem"), "--tls-key-file", str(tmp_path / "server.key"),
                             "--tls-ca-cert-file", str(tmp_path / "ca.pem"), "--tls-auth-clients", "no",
                             "--requirepass", "s3cret", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"rediss://:s3cret@127.0.0.1:{port}/0?ssl_ca_certs={tmp_path / 'ca.pem'}&prefix=tls"
        storage = None
        deadline = time.monotonic() + 10
        while storage is None:
            try:
                storage = open_storage(url)
            except errors.NamingError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        storage.close()
        with naming.start_ns("127.0.0.1", 0, storage=url, enable_broadcast=False) as svc:
            assert "s3cret" not in svc.describe() and ":***@127.0.0.1" in svc.describe()
            with ember.Proxy(svc.uri) as ns:
                ns.register("secure", "PYRO:s@127.0.0.1:1", replicated=True)
                assert ns.replicas("secure") == ["PYRO:s@127.0.0.1:1"]
        with pytest.raises(errors.NamingError) as info:
            open_storage(url.replace("s3cret", "n0tit"))
        assert f"rediss://:***@127.0.0.1:{port}/0" in str(info.value) and "n0tit" not in str(info.value)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_autoclean_removes_only_the_dead_replica(make_daemon):
    alive = make_daemon()
    alive_uri = alive.register(Who("alive"), "w")
    dead_uri = f"PYRO:w@127.0.0.1:{_free_port()}"
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as svc:
        ns = svc.nameserver
        ns.register("svc", dead_uri, replicated=True)
        ns.register("svc", alive_uri, replicated=True)
        cleaner = naming.nameserver.AutoCleaner(ns, 3)
        assert cleaner.sweep() == 0  # a first failure only marks the location
        assert cleaner.sweep() == 1
        assert ns.replicas("svc") == [str(alive_uri)]


def test_idempotent_marks_methods_and_travels_only_to_ember_peers():
    from ember.server.meta import class_meta

    meta = class_meta(Who)
    assert meta.idempotent == {"whoami"} and "whoami" in meta.methods
    assert meta.as_dict(docs=True)["idempotent"] == {"whoami"}
    assert set(meta.as_dict()) == {"methods", "oneway", "attrs"}  # what a Pyro5 peer gets
    with pytest.raises(TypeError, match="marks a method"):
        ember.idempotent(Who)
    with pytest.raises(TypeError, match="marks a method"):
        ember.idempotent(42)


def test_name_servers_sharing_redis_list_themselves_under_pyro_nameserver(redis_url):
    with naming.start_ns("127.0.0.1", 0, storage=redis_url, enable_broadcast=False) as one:
        with naming.start_ns("127.0.0.1", 0, storage=redis_url, enable_broadcast=False) as two:
            assert one.nameserver.replicas("Pyro.NameServer") == [str(one.uri), str(two.uri)]
            assert {str(one.nameserver.lookup("Pyro.NameServer")) for _ in range(40)} == {str(one.uri), str(two.uri)}
            assert one.nameserver.count() == 1
            assert one.nameserver.remove("Pyro.NameServer") == 0
        assert one.nameserver.replicas("Pyro.NameServer") == [str(one.uri)]  # a stopped one leaves at once
