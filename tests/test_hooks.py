"""Server call hooks and server drivers registered by name, on every server type."""

import threading

import pytest

import ember
from ember import errors
from ember.server.drivers import MultiplexServer, driver_names, register_driver

from .services import Calc, wait_for


class Recorder:
    def __init__(self):
        self.events = []
        self.lock = threading.Lock()

    def _add(self, *event):
        with self.lock:
            self.events.append(event)

    def connection_opened(self, conn):
        self._add("opened", conn.addr is not None)

    def connection_closed(self, conn):
        self._add("closed", conn.addr is not None)

    def call_started(self, call):
        call.state["seen"] = True
        self._add("started", call.object_id, call.method, call.oneway, call.batch)

    def call_finished(self, call, result):
        self._add("finished", call.method, result, call.state.get("seen"))

    def call_failed(self, call, exc):
        self._add("failed", call.method, type(exc).__name__)


def test_hooks_see_every_call_outcome(make_daemon, servertype):
    daemon = make_daemon(servertype=servertype)
    hook = Recorder()
    daemon.add_hook(hook)
    calc = Calc()
    uri = daemon.register(calc, "calc")
    with ember.Proxy(uri) as p:
        assert p.add(1, 2) == 3
        with pytest.raises(ValueError):
            p.fail()
        p._oneway = {"record"}
        p.record(5)
        assert calc.oneway_done.wait(5)
        batch = ember.BatchProxy(p)
        batch.add(1, 1)
        batch.add(2, 2)
        assert list(batch()) == [2, 4]
    assert wait_for(lambda: ("closed", True) in hook.events)
    events = hook.events
    assert ("opened", True) in events
    assert ("started", "calc", "add", False, False) in events
    assert ("finished", "add", 3, True) in events
    assert ("started", "calc", "fail", False, False) in events
    assert ("failed", "fail", "ValueError") in events
    assert ("started", "calc", "record", True, False) in events
    assert wait_for(lambda: ("finished", "record", None, True) in hook.events)
    assert ("started", "calc", "<batch>", False, True) in events
    assert ("finished", "<batch>", [2, 4], True) in events


def test_a_hook_refuses_a_call_and_the_daemon_keeps_serving(make_daemon, servertype):
    class Deny:
        def call_started(self, call):
            if call.method == "add" and call.conn.storage.get("role") != "admin":
                raise errors.SecurityError("add is for admins")

    daemon = make_daemon(servertype=servertype)
    daemon.add_hook(Deny())
    uri = daemon.register(Calc, "calc")
    with ember.Proxy(uri) as p:
        with pytest.raises(errors.SecurityError, match="add is for admins"):
            p.add(1, 2)
        assert p.context_info()["seq"] > 0  # other methods still work on the same connection


def test_removed_hooks_stop_firing_and_bad_hooks_are_refused(make_daemon):
    daemon = make_daemon()
    hook = Recorder()
    daemon.add_hook(hook)
    daemon.remove_hook(hook)
    uri = daemon.register(Calc, "calc")
    with ember.Proxy(uri) as p:
        assert p.add(1, 1) == 2
    assert not [e for e in hook.events if e[0] == "started"]
    with pytest.raises(TypeError, match="none of the hook methods"):
        daemon.add_hook(object())


def test_a_failing_hook_is_logged_not_sent(make_daemon, servertype, caplog):
    class Broken:
        def call_finished(self, call, result):
            raise RuntimeError("hook bug")

    daemon = make_daemon(servertype=servertype)
    daemon.add_hook(Broken())
    uri = daemon.register(Calc, "calc")
    with ember.Proxy(uri) as p:
        assert p.add(2, 3) == 5
    assert any("hook" in r.getMessage() for r in caplog.records)


def test_a_driver_registered_by_name():
    class LoggingMultiplex(MultiplexServer):
        def answer(self, conn, msg):
            self.answered = getattr(self, "answered", 0) + 1
            super().answer(conn, msg)

    register_driver("counted", LoggingMultiplex)
    assert "counted" in driver_names()
    with ember.Daemon(servertype="counted") as daemon:
        daemon.start()
        uri = daemon.register(Calc, "calc")
        with ember.Proxy(uri) as p:
            assert p.add(20, 22) == 42
        assert daemon.server.answered >= 2  # the handshake and the call
        assert type(daemon.server) is LoggingMultiplex
    with pytest.raises(ValueError, match="unknown servertype 'nope'"):
        ember.Daemon(servertype="nope")


def test_client_disconnect_runs_before_the_socket_and_resources_close(make_daemon, servertype):
    seen = []

    class Resource:
        closed = False

        def close(self):
            self.closed = True

    resource = Resource()

    class Watching(ember.Daemon):
        def client_disconnect(self, conn):
            seen.append((conn.closed, resource.closed))

    @ember.expose
    class Tracker:
        def track(self):
            ember.current_context.track_resource(resource)

    daemon = Watching(servertype=servertype)
    daemon.start()
    try:
        with ember.Proxy(daemon.register(Tracker, "tracker")) as p:
            p.track()
        assert wait_for(lambda: seen)
        assert seen == [(False, False)]  # still open when the hook runs (Pyro5's order)
        assert wait_for(lambda: resource.closed)
    finally:
        daemon.shutdown()
