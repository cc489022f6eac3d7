"""The event service (issue 17): real daemons on loopback, Pyro5 peers, an ``ember events`` process."""

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import Pyro5
import Pyro5.api
import pytest

import ember
from ember import errors, naming
from ember.events import AsyncSubscriber, EventServer, EventService, Publisher, Subscriber

from .services import pyro5_daemon, wait_for

ENV = dict(os.environ, PYRO_BROADCAST_ADDRS="127.255.255.255")


@pytest.fixture
def nameserver():
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as service:
        yield service


@pytest.fixture
def server():
    srv = EventServer("127.0.0.1", 0, ns=False).start()
    yield srv
    srv.shutdown()


class Collector(Subscriber):
    """Keeps what it receives; ``gate`` (when set) holds every event until it is opened."""

    def __init__(self, *args, gate=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.received = []
        self.gate = gate

    def event(self, event):
        if self.gate is not None:
            self.gate.wait(10)
        self.received.append(event)

    def seqs(self):
        return [e["seq"] for e in self.received]

    def messages(self):
        return [e["message"] for e in self.received]


@pytest.fixture
def subscribers(server):
    made = []

    def make(cls=Collector, **kwargs):
        sub = cls(server.uri, **kwargs).start()
        made.append(sub)
        return sub

    yield make
    for sub in made:
        if sub.gate is not None:
            sub.gate.set()
        sub.close()


# ---- the basics and the name server --------------------------------------------------------------

def test_registered_in_the_name_server_and_found_through_it(nameserver):
    port = nameserver.daemon.port
    with EventServer("127.0.0.1", 0, ns_host="127.0.0.1", ns_port=port).start() as srv:
        assert str(nameserver.nameserver.lookup("Pyro.EventService")) == str(srv.uri)
        assert srv.uri.object == "Pyro.EventService"
        with Collector(ns_host="127.0.0.1", ns_port=port) as sub, Publisher(ns_host="127.0.0.1", ns_port=port) as pub:
            sub.subscribe("greetings")
            pub.publish("greetings", "hello")
            assert wait_for(lambda: len(sub.received) == 1)
        # found by broadcast-free default lookup too (NS_HOST/NS_PORT)
        with ember.config.override(NS_HOST="127.0.0.1", NS_PORT=port), Publisher() as pub:
            pub.publish("greetings", "again")
            assert pub.stats()["published"] == 2
    assert "Pyro.EventService" not in nameserver.nameserver.list()


def test_events_are_plain_dicts_with_subject_message_time_seq(server, subscribers):
    sub = subscribers()
    sub.subscribe("a", "b")
    sub.subscribe_match(r"news\.")
    before = time.time()
    with Publisher(server.uri) as pub:
        pub.publish("a", {"x": [1, 2]})
        pub.publish(["b", "c", "news.sport"], 7)  # a list of subjects: one event on each
        pub.publish("nobody.listens", 1)           # unknown subjects are fine
        pub.publish("xnews.sport", 2)               # patterns match from the start only
    assert wait_for(lambda: len(sub.received) == 3)
    time.sleep(0.05)
    assert [(e["subject"], e["message"]) for e in sub.received] == [("a", {"x": [1, 2]}), ("b", 7), ("news.sport", 7)]
    assert sub.seqs() == [1, 2, 4]
    for e in sub.received:
        assert set(e) == {"subject", "message", "time", "seq"}
        assert isinstance(e["time"], float) and before - 1 <= e["time"] <= time.time() + 1
    assert sub.last_seq == 4
    sub.unsubscribe("a", r"news\.")
    with Publisher(server.uri) as pub:
        pub.publish("a", "gone")
        pub.publish("news.x", "gone")
        pub.publish("b", "still")
    assert wait_for(lambda: len(sub.received) == 4)
    assert sub.received[-1]["message"] == "still"
    stats = server.service.stats()
    assert stats["published"] == 9
    (entry,) = stats["subscribers"].values()
    assert entry["subjects"] == ["b"] and entry["patterns"] == [] and entry["delivered"] == 4
    assert entry["batching"] is True  # Subscriber exposes events(list)


def test_a_subscriber_without_events_gets_one_call_per_event(server, make_daemon):
    got = []

    @ember.expose
    class Plain:
        @ember.oneway
        def event(self, event):
            got.append(event["message"])

    cfg = ember.config.copy()
    cfg.ONEWAY_THREADED = False
    daemon = make_daemon(config=cfg)
    plain = daemon.register(Plain())
    with Publisher(server.uri) as pub:
        pub.proxy.subscribe(["p"], ember.Proxy(plain))
        pub.publish_many([("p", i) for i in range(50)])
        assert wait_for(lambda: len(got) == 50)
        assert got == list(range(50))
        (entry,) = pub.stats()["subscribers"].values()
        assert entry["batching"] is False and entry["delivered"] == 50


def test_listen_in_the_foreground():
    with EventServer("127.0.0.1", 0, ns=False).start() as srv:
        class Three(Collector):
            def event(self, event):
                super().event(event)
                if len(self.received) == 3:
                    self.close()

        sub = Three(srv.uri)
        sub.subscribe("t")
        done = threading.Event()

        def foreground():
            sub.listen()  # returns when event() closes the subscriber
            done.set()

        t = threading.Thread(target=foreground)
        t.start()
        with Publisher(srv.uri) as pub:
            for i in range(3):
                pub.publish("t", i)
        assert done.wait(10)
        t.join(5)
        assert sub.messages() == [0, 1, 2]
        assert wait_for(lambda: not srv.service.stats()["subscribers"])  # close() unsubscribed


def test_async_subscriber(server):
    async def main():
        async with AsyncSubscriber(server.uri) as sub:
            await sub.subscribe("async")
            await sub.subscribe_match(r"as")
            with Publisher(server.uri) as pub:
                for i in range(20):
                    await asyncio.to_thread(pub.publish, "async", i)
            got = []
            async for event in sub:
                got.append(event["message"])
                if len(got) == 20:
                    break
            return got, sub.last_seq

    got, last = asyncio.run(main())
    assert got == list(range(20)) and last == 20  # matched by a subject and a pattern: delivered once
    assert wait_for(lambda: not server.service.stats()["subscribers"])


# ---- Pyro5 programs as publisher and subscriber ----------------------------------------------------

class Pyro5Listener:
    def __init__(self):
        self.received = []

    @Pyro5.api.expose
    def event(self, event):
        self.received.append(event)


@pytest.mark.parametrize("serializer", ["serpent", "json", "marshal", "msgpack"])
def test_pyro5_publisher_and_pyro5_subscriber(server, serializer, monkeypatch):
    monkeypatch.setattr(Pyro5.config, "SERVERTYPE", "multiplex")
    monkeypatch.setattr(Pyro5.config, "SERIALIZER", serializer)
    listener = Pyro5Listener()
    with pyro5_daemon() as daemon:
        daemon.register(listener)
        with Pyro5.api.Proxy(str(server.uri)) as es:
            # Pyro5 sends a registered object as a proxy to it (but not with marshal: pass the proxy)
            callback = daemon.proxyFor(listener) if serializer == "marshal" else listener
            es.subscribe(["pyro5.news"], callback)
            es.subscribe_match([r"pyro5\.w"], callback)
            es.publish("pyro5.news", {"n": 1, "text": "hello"})
            es.publish(["pyro5.weather", "other"], [1.5, "rain"])
            es._pyroOneway.add("publish")
            for i in range(20):
                es.publish("pyro5.news", i)  # oneway: the service keeps their order
            assert wait_for(lambda: len(listener.received) == 22)
            # Pyro5 runs each oneway call in a thread of its own: the calls arrive in order, their
            # handlers may finish out of order, and seq gives the order back
            listener.received.sort(key=lambda e: e["seq"])
            first, second = listener.received[:2]
            assert first["subject"] == "pyro5.news" and first["message"] == {"n": 1, "text": "hello"}
            assert second["subject"] == "pyro5.weather" and list(second["message"]) == [1.5, "rain"]
            assert [e["message"] for e in listener.received[2:]] == list(range(20))
            seqs = [e["seq"] for e in listener.received]
            assert seqs == sorted(seqs) and isinstance(first["time"], float)
            stats = es.stats()
            assert stats["published"] == 23
            es.unsubscribe(["pyro5.news", r"pyro5\.w"], callback)
            assert wait_for(lambda: not es.stats()["subscribers"])


# ---- delivery semantics ----------------------------------------------------------------------------

@pytest.fixture
def stuck():
    """A proxy to a 'subscriber' that never answers: a listening socket nobody accepts from."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield ember.Proxy(f"PYRO:stuck@127.0.0.1:{sock.getsockname()[1]}")
    sock.close()  # resets the connections waiting in its backlog


def test_a_stuck_subscriber_delays_neither_the_others_nor_the_publisher(subscribers, server, stuck):
    fast = subscribers()
    fast.subscribe("load")  # a queue of the default size: it does not fill
    with Publisher(server.uri) as pub:
        # queue settings are taken when a subscriber first subscribes
        with ember.config.override(EVENTS_QUEUE_SIZE=10, EVENTS_QUEUE_POLICY="drop-oldest", EVENTS_TIMEOUT=2.0):
            pub.proxy.subscribe(["load"], stuck)
        start = time.monotonic()
        for i in range(300):
            pub.publish("load", i)
        took = time.monotonic() - start
        assert wait_for(lambda: len(fast.received) == 300)
        stats = pub.stats()["subscribers"]
    assert took < 5 and fast.messages() == list(range(300))
    assert stats[str(fast.uri)]["dropped"] == 0 and stats[str(fast.uri)]["delivered"] == 300
    stuck_stats = stats[str(stuck._pyroUri)]
    assert stuck_stats["queued"] == 10 and stuck_stats["delivered"] == 0
    assert stuck_stats["dropped"] >= 300 - 10 - ember.config.EVENTS_BATCH_SIZE


def test_a_slow_subscriber_gets_the_newest_events_in_order(subscribers, server):
    with ember.config.override(EVENTS_QUEUE_SIZE=10, EVENTS_QUEUE_POLICY="drop-oldest"):
        gate = threading.Event()
        slow = subscribers(gate=gate)
        slow.subscribe("big")
        big = "x" * 65536  # big enough that socket buffers cannot hold them all
        with Publisher(server.uri) as pub:
            for i in range(300):
                pub.publish("big", [i, big])
            assert wait_for(lambda: pub.stats()["subscribers"][str(slow.uri)]["queued"] == 10)
            gate.set()
            assert wait_for(lambda: slow.received and slow.received[-1]["message"][0] == 299)
            dropped = pub.stats()["subscribers"][str(slow.uri)]["dropped"]
        assert dropped > 0 and len(slow.received) + dropped == 300
        assert slow.seqs() == sorted(slow.seqs())


def test_block_policy_holds_the_publisher_until_the_stuck_subscriber_is_dropped(subscribers, server, stuck):
    with ember.config.override(EVENTS_QUEUE_SIZE=5, EVENTS_QUEUE_POLICY="block", EVENTS_TIMEOUT=0.5,
                               EVENTS_MAX_FAILURES=2, EVENTS_BATCH_SIZE=1):
        fast = subscribers()
        fast.subscribe("bp")
        published = []
        with Publisher(server.uri) as pub:
            pub.proxy.subscribe(["bp"], stuck)

            def publish():
                with Publisher(server.uri) as p:
                    for i in range(50):
                        p.publish("bp", i)
                        published.append(i)

            t = threading.Thread(target=publish)
            t.start()
            time.sleep(0.3)
            assert len(published) <= 5 + 1 + 1  # held back: the queue, the one being sent, the one waiting
            t.join(15)
            assert len(published) == 50
            assert wait_for(lambda: len(fast.received) == 50)
            assert fast.messages() == list(range(50))  # back-pressure, no loss
            stats = pub.stats()["subscribers"]
        assert str(stuck._pyroUri) not in stats and stats[str(fast.uri)]["dropped"] == 0


def test_order_under_four_concurrent_publishers(subscribers, server):
    subs = [subscribers(), subscribers()]
    for s in subs:
        s.subscribe("order")
    n = 250

    def publish(k):
        with Publisher(server.uri) as pub:
            for i in range(n):
                if i % 50 == 49:
                    pub.publish_many([("order", (k, i))])
                else:
                    pub.publish("order", (k, i))

    threads = [threading.Thread(target=publish, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    for s in subs:
        assert wait_for(lambda s=s: len(s.received) == 4 * n, timeout=15)
        assert s.seqs() == sorted(s.seqs()) == list(range(1, 4 * n + 1))
        for k in range(4):
            assert [tuple(m)[1] for m in s.messages() if tuple(m)[0] == k] == list(range(n))
    assert subs[0].seqs() == subs[1].seqs() and subs[0].messages() == subs[1].messages()


def test_failing_subscriber_is_unsubscribed_and_logged(server, caplog):
    with ember.config.override(EVENTS_MAX_FAILURES=2):
        @ember.expose
        class Gone:
            def event(self, event):
                pass

        daemon = ember.Daemon()
        uri = daemon.register(Gone())
        daemon.shutdown()  # nobody listens there any more
        caplog.set_level(logging.WARNING, logger="ember.services.events")
        with Publisher(server.uri) as pub:
            pub.proxy.subscribe(["doomed"], ember.Proxy(uri))
            assert str(uri) in pub.stats()["subscribers"]
            pub.publish("doomed", 1)
            assert wait_for(lambda: not pub.stats()["subscribers"])
            pub.publish("doomed", 2)  # nobody left: fine
    assert any("unsubscribed after 2 failed deliveries" in r.getMessage() and str(uri) in r.getMessage()
               for r in caplog.records)


# ---- replay and durability ---------------------------------------------------------------------------

def test_replay_since_delivers_each_missed_event_once(server, subscribers):
    first = subscribers()
    first.subscribe("r")
    with Publisher(server.uri) as pub:
        for i in range(5):
            pub.publish("r", i)
        assert wait_for(lambda: len(first.received) == 5)
        last = first.last_seq
        first.close()
        for i in range(5, 10):
            pub.publish("r", i)
            pub.publish("other", i)
        # a publisher keeps going while the subscriber comes back: no gap, no duplicate
        stop = threading.Event()

        def keep_publishing():
            with Publisher(server.uri) as p2:
                i = 10
                while not stop.is_set() and i < 400:
                    p2.publish("r", i)
                    i += 1

        t = threading.Thread(target=keep_publishing)
        t.start()
        time.sleep(0.05)
        again = subscribers()
        again.subscribe("r", since=last)
        time.sleep(0.2)
        stop.set()
        t.join(10)
        total = server.service.stats()["published"] - 5  # the "other" events
        assert wait_for(lambda: len(again.received) == total - 5, timeout=10)
    assert again.messages() == list(range(5, total))
    assert again.seqs() == sorted(set(again.seqs()))
    # asking again for what it already has changes nothing; a new subject replays from since
    again.subscribe("other", since=last)
    assert wait_for(lambda: len(again.received) == total)
    assert [e["message"] for e in again.received if e["subject"] == "other"] == list(range(5, 10))
    again.service.subscribe(["other"], again._receiver, since=last)  # again: the service skips what it sent
    with Publisher(server.uri) as pub:
        pub.publish("other", "marker")
    assert wait_for(lambda: again.received[-1]["message"] == "marker")
    assert [e["message"] for e in again.received if e["subject"] == "other"] == [*range(5, 10), "marker"]


def test_replay_is_not_cut_by_the_queue_bound(server, subscribers):
    with Publisher(server.uri) as pub:
        pub.publish_many([("many", i) for i in range(300)])
        with ember.config.override(EVENTS_QUEUE_SIZE=10, EVENTS_QUEUE_POLICY="drop-oldest"):
            sub = subscribers()
            sub.subscribe("many", since=0)
        pub.publish_many([("many", i) for i in range(300, 320)])
        assert wait_for(lambda: sub.received and sub.received[-1]["message"] == 319)
        stats = pub.stats()["subscribers"][str(sub.uri)]
    replayed = [e["message"] for e in sub.received if e["seq"] <= 300]
    assert replayed == list(range(300))  # every replayed event, though the queue holds 10
    assert len(sub.received) + stats["dropped"] == 320


def test_replay_keeps_the_last_n_per_subject(tmp_path):
    with ember.config.override(EVENTS_KEEP=3):
        for storage in (None, f"sqlite:{tmp_path / 'keep.db'}"):
            with EventServer("127.0.0.1", 0, ns=False, storage=storage).start() as srv:
                with Publisher(srv.uri) as pub:
                    pub.publish_many([("k", i) for i in range(30)])
                with Collector(srv.uri) as sub:
                    sub.subscribe("k", since=0)
                    assert wait_for(lambda sub=sub: len(sub.received) >= 3)
                    time.sleep(0.05)
                    assert sub.messages()[-3:] == [27, 28, 29] and len(sub.received) <= 3 + 13


def test_replay_forgets_events_older_than_keep_seconds(tmp_path):
    with ember.config.override(EVENTS_KEEP_SECONDS=0.3):
        for storage in (None, f"sqlite:{tmp_path / 'window.db'}"):
            with EventServer("127.0.0.1", 0, ns=False, storage=storage).start() as srv:
                with Publisher(srv.uri) as pub:
                    pub.publish_many([("w", i) for i in range(5)])
                    time.sleep(0.4)
                    pub.publish_many([("w", i) for i in range(5, 7)])
                with Collector(srv.uri) as sub:
                    sub.subscribe("w", since=0)
                    assert wait_for(lambda sub=sub: len(sub.received) == 2)
                    time.sleep(0.05)
                    assert sub.messages() == [5, 6]


def test_sqlite_storage_survives_sigkill(tmp_path, nameserver, request):
    db = tmp_path / "events.db"
    port = nameserver.daemon.port
    args = [sys.executable, "-m", "ember.cli", "events", "-n", "127.0.0.1", "-p", "0", "-s", f"sqlite:{db}",
            "--ns-host", "127.0.0.1", "--ns-port", str(port)]

    def start():
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            m = re.search(r"URI = (\S+)", line)
            if m:
                return proc, m.group(1)
            if not line:
                break
        proc.kill()
        raise AssertionError(f"ember events did not start: {proc.communicate()}")

    early = Collector(ns_host="127.0.0.1", ns_port=port).start()  # subscribed before the crash
    request.addfinalizer(early.close)
    proc, uri = start()
    try:
        assert str(nameserver.nameserver.lookup("Pyro.EventService")) == uri
        early.subscribe("durable.0")
        with Publisher(uri) as pub:
            for i in range(20):
                pub.publish(f"durable.{i % 3}", {"i": i})
            assert wait_for(lambda: len(early.received) == 7)
            for i in range(20, 40):
                pub.publish(f"durable.{i % 3}", {"i": i})
            pub.publish_many([("durable.x", i) for i in range(40, 50)])
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no clean shutdown
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    proc, uri2 = start()
    try:
        assert str(nameserver.nameserver.lookup("Pyro.EventService")) == uri2
        # the early subscriber may or may not have seen the events sent just before the crash;
        # after resubscribing it has every durable.0 event exactly once
        early.resubscribe()
        assert wait_for(lambda: len(early.received) == 14)
        assert [e["message"]["i"] for e in early.received] == list(range(0, 40, 3))
        early.close()
        with Collector(ns_host="127.0.0.1", ns_port=port) as sub, Publisher(ns_host="127.0.0.1", ns_port=port) as pub:
            sub.subscribe_match("durable", since=0)
            assert wait_for(lambda: len(sub.received) == 50)
            assert sub.seqs() == list(range(1, 51))
            assert [e["message"] for e in sub.received[:40]] == [{"i": i} for i in range(40)]
            pub.publish("durable.new", "after")  # numbering goes on where it stopped
            assert wait_for(lambda: len(sub.received) == 51)
            assert sub.received[-1]["seq"] == 51
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert "Event service stopped." in out
    assert "Pyro.EventService" not in nameserver.nameserver.list()


@pytest.mark.parametrize("kind", ["garbage", "another database"])
def test_bad_storage_file_stops_the_start_up(tmp_path, kind):
    bad = tmp_path / "bad.db"
    if kind == "garbage":
        bad.write_bytes(b"garbage" * 1000)
    else:
        with contextlib.closing(sqlite3.connect(bad)) as db:
            db.execute("CREATE TABLE names (name TEXT)")
            db.commit()
    r = subprocess.run([sys.executable, "-m", "ember.cli", "events", "-x", "-p", "0", "-s", f"sqlite:{bad}"],
                       capture_output=True, text=True, timeout=30, env=ENV)
    assert r.returncode == 1 and str(bad) in r.stderr and r.stderr.startswith("ember events: error:")
    assert "not an Ember event database" in r.stderr


def test_without_a_name_server_ember_events_says_so():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", 0))
        tcp.bind(("127.0.0.1", 0))  # ports nobody serves on
        env = dict(ENV, PYRO_NS_PORT=str(tcp.getsockname()[1]), PYRO_NS_BCPORT=str(udp.getsockname()[1]),
                   PYRO_NS_HOST="127.0.0.1")
        r = subprocess.run([sys.executable, "-m", "ember.cli", "events", "-p", "0"], capture_output=True, text=True,
                           timeout=30, env=env)
    assert r.returncode == 1 and r.stderr.startswith("ember events: error:") and "name server" in r.stderr.lower()


# ---- bad input -------------------------------------------------------------------------------------------

def test_bad_input_raises_clear_errors_and_changes_nothing(server, subscribers):
    sub = subscribers()
    with Publisher(server.uri) as pub:
        es = pub.proxy
        with pytest.raises(errors.PyroError, match=r"invalid pattern 'a\[': .*nothing was subscribed"):
            es.subscribe_match(["ok.*", "a["], sub._receiver)
        assert server.service.stats()["subscribers"] == {}
        for bad in ("PYRO:x@127.0.0.1:1", 42, None, {"a": 1}):
            with pytest.raises(errors.PyroError, match="invalid subscriber: expected a proxy"):
                es.subscribe(["s"], bad)
        for bad in ("", [], [1], None, 3):
            with pytest.raises(errors.PyroError, match="invalid subject"):
                es.publish(bad, "m")
        with pytest.raises(errors.PyroError, match="invalid since"):
            es.subscribe(["s"], sub._receiver, since=-1)
        assert server.service.stats()["subscribers"] == {} and server.service.stats()["published"] == 0

        class Opaque:
            pass

        for message in (object(), Opaque(), {"deep": [threading.Lock()]}):
            with pytest.raises(errors.SerializeError, match="cannot publish on 'bad': the message"):
                pub.publish("bad", message)
        with pytest.raises(errors.SerializeError, match="cannot publish"):
            pub.publish_many([("bad", 1), ("bad", Opaque())])
        pub.publish("fine", 1)
        assert server.service.stats()["published"] == 1


def test_service_config_is_checked():
    with ember.config.override(EVENTS_QUEUE_POLICY="sometimes"), pytest.raises(errors.PyroError, match="drop-oldest"):
        EventService()


# ---- ember genguid -----------------------------------------------------------------------------------------

def test_genguid():
    r = subprocess.run([sys.executable, "-m", "ember.cli", "genguid"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and uuid.UUID(r.stdout.strip())
    r = subprocess.run([sys.executable, "-m", "ember.cli", "genguid", "-n", "5"], capture_output=True, text=True,
                       timeout=30)
    ids = r.stdout.split()
    assert r.returncode == 0 and len(ids) == 5 == len(set(ids)) and all(uuid.UUID(i).version == 4 for i in ids)
