"""The HTTP gateway (issue 18): a real uvicorn server on loopback, an httpx client, Ember and
Pyro5 daemons behind it, the name server and the event service on real sockets."""

import asyncio
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid

import httpx
import Pyro5.api
import Pyro5.errors
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

import ember
import ember.web
from ember.events import EventServer, Publisher

from .services import pyro5_daemon, wait_for


@ember.expose
class Calc:
    def __init__(self):
        self.seen = []

    def add(self, a, b):
        return a + b

    def concat(self, a, b):
        return a + b

    def echo(self, *args, **kwargs):
        return {"args": list(args), "kwargs": kwargs}

    def fail(self, text="bad value"):
        raise ValueError(text)

    def count(self, n):
        for i in range(n):
            yield {"i": i}

    def broken_stream(self):
        yield 1
        raise KeyError("half way")

    def sleepy(self, seconds):
        time.sleep(seconds)
        return "awake"

    @ember.oneway
    def note(self, value):
        self.seen.append(value)

    def record(self, value):
        self.seen.append(value)

    def correlation(self):
        corr = ember.current_context.correlation_id
        return str(corr) if corr else None

    @property
    def answer(self):
        return 42


@ember.expose
class AsyncCalc(Calc):
    async def nap(self, seconds):
        await asyncio.sleep(seconds)
        return "rested"


@Pyro5.api.expose
class PyroCalc:
    def add(self, a, b):
        return a + b

    def fail(self):
        raise ValueError("pyro says no")

    def numbers(self):
        yield from (1, 2, 3)

    @property
    def version(self):
        return "pyro5"


@pytest.fixture
def backend(ember_nameserver, ember_daemon):
    """Names in the test's name server: an Ember thread daemon, an Ember asyncio daemon, one hidden name."""
    ns = ember.locate_ns()
    calc = Calc()
    daemon = ember_daemon()
    ns.register("http.calc", daemon.register(calc, "calc"), metadata={"kind:calc", "<b>tag</b>"})
    aio = ember_daemon(servertype="asyncio")
    ns.register("http.aio.calc", aio.register(AsyncCalc(), "aiocalc"))
    ns.register("private.calc", daemon.register(Calc(), "private"))
    yield ns, calc, daemon
    ns._release()


@pytest.fixture
def pyro5_backend(backend):
    ns = backend[0]
    with pyro5_daemon() as daemon:
        uri = daemon.register(PyroCalc(), "pyrocalc")
        ns.register("http.pyro5", str(uri))
        yield str(uri)


@pytest.fixture
def gateway(ember_nameserver):
    """Factory: a gateway app served by uvicorn on 127.0.0.1 (any port); returns an httpx client."""
    servers, clients = [], []

    def start(**options):
        options.setdefault("ns_host", "127.0.0.1")
        options.setdefault("ns_port", ember_nameserver.daemon.port)
        server = ember.web.start(ember.web.create_app(**options))
        servers.append(server)
        client = httpx.Client(base_url=server.url, timeout=20)
        client.app_state = server.app.state.gateway
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.close()
    for server in servers:
        server.stop()


# ---- Pyro5 gateway compatibility -------------------------------------------------------------

def test_query_arguments_are_strings_as_in_pyro5(backend, gateway):
    http = gateway()
    r = http.get("/pyro/http.calc/concat", params={"a": "1", "b": "2"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == "12"
    r = http.post("/pyro/http.calc/concat?a=x&b=y")
    assert r.status_code == 200 and r.json() == "xy"
    r = http.get("/pyro/http.calc/echo?tag=a&tag=b")  # a repeated name becomes a list
    assert r.json() == {"args": [], "kwargs": {"tag": ["a", "b"]}}


def test_meta_lists_methods_and_attributes(backend, gateway):
    meta = gateway().get("/pyro/http.calc/$meta").json()
    assert {"add", "fail", "count", "note"} <= set(meta["methods"])
    assert meta["attributes"] == ["answer"]
    assert meta["oneway"] == ["note"]


def test_attribute_read(backend, gateway):
    assert gateway().get("/pyro/http.calc/answer").json() == 42


def test_remote_exception_is_500_with_class_message_and_traceback(backend, gateway):
    r = gateway().get("/pyro/http.calc/fail", params={"text": "no <good>"})
    assert r.status_code == 500
    body = r.json()
    assert body["__class__"] == "builtins.ValueError"
    assert body["__exception__"] is True
    assert body["args"] == ["no <good>"]
    assert "ValueError: no <good>" in "".join(body["attributes"]["_pyroTraceback"])


def test_correlation_id_in_and_out(backend, gateway):
    http = gateway()
    corr = str(uuid.uuid4())
    r = http.get("/pyro/http.calc/correlation", headers={"X-Pyro-Correlation-Id": corr})
    assert r.json() == corr  # reached the daemon
    assert r.headers["X-Pyro-Correlation-Id"] == corr
    r = http.get("/pyro/http.calc/correlation")
    assert uuid.UUID(r.headers["X-Pyro-Correlation-Id"]) and r.json() == r.headers["X-Pyro-Correlation-Id"]
    r = http.get("/pyro/http.calc/correlation", headers={"X-Pyro-Correlation-Id": "nope"})
    assert r.status_code == 400 and "UUID" in r.json()["error"]


def test_oneway_option(backend, gateway):
    _ns, calc, _daemon = backend
    r = gateway().post("/pyro/http.calc/record", json={"args": ["one"]}, headers={"X-Pyro-Options": "oneway"})
    assert r.status_code == 200 and r.content == b""
    assert wait_for(lambda: calc.seen == ["one"])
    r = gateway().post("/pyro/http.calc/note", json={"args": ["two"]})  # a method the daemon declares oneway
    assert r.status_code == 200 and r.content == b""
    assert wait_for(lambda: calc.seen == ["one", "two"])


def test_unknown_name_and_method_are_404(backend, gateway):
    http = gateway()
    r = http.get("/pyro/http.nothing/add")
    assert r.status_code == 404 and "http.nothing" in r.json()["error"]
    r = http.get("/pyro/http.calc/nothing")
    assert r.status_code == 404 and "nothing" in r.json()["error"]
    assert http.get("/pyro/http.calc").status_code == 404  # no method


def test_not_exposed_is_403_and_pyro_internals_need_the_pattern_to_name_them(backend, gateway):
    http = gateway()
    assert http.get("/pyro/private.calc/add?a=1&b=2").status_code == 403
    assert http.get("/pyro/Pyro.NameServer/ping").status_code == 403
    everything = gateway(expose=".*")
    assert everything.get("/pyro/private.calc/concat?a=1&b=2").json() == "12"
    assert everything.get("/pyro/Pyro.NameServer/count").status_code == 403
    named = gateway(expose=r"http\.|Pyro\.NameServer$")
    r = named.get("/pyro/Pyro.NameServer/lookup", params={"name": "http.calc"})
    assert r.status_code == 200 and r.json()["__class__"] == "Pyro5.core.URI"  # as Pyro5's gateway sends a URI
    assert r.json()["state"][:2] == ["PYRO", "calc"]


def test_gateway_key(backend, gateway):
    http = gateway(gateway_key="s3cret")
    r = http.get("/pyro/http.calc/answer")
    assert r.status_code == 403 and "gateway key" in r.json()["error"]
    assert http.get("/pyro/http.calc/answer", headers={"X-Pyro-Gateway-Key": "wrong"}).status_code == 403
    assert http.get("/pyro/http.calc/answer", headers={"X-Pyro-Gateway-Key": "s3cret"}).json() == 42
    r = http.get("/pyro/http.calc/concat", params={"$key": "s3cret", "a": "p", "b": "q"})
    assert r.json() == "pq"  # $key is not passed on as an argument
    assert http.get("/pyro/http.calc/$meta").status_code == 403


def test_cors_preflight_and_headers(backend, gateway):
    http = gateway(cors="https://app.example")
    r = http.options("/pyro/http.calc/add", headers={"Origin": "https://app.example",
                                                     "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "X-Pyro-Gateway-Key" in r.headers["Access-Control-Allow-Headers"]
    r = http.get("/pyro/http.calc/answer")
    assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "access-control-allow-origin" not in gateway().get("/pyro/http.calc/answer").headers


# ---- beyond Pyro5's gateway ----------------------------------------------------------------

def test_json_body_with_typed_arguments(backend, gateway):
    http = gateway()
    assert http.post("/pyro/http.calc/add", json={"args": [1, 2.5]}).json() == 3.5
    assert http.post("/pyro/http.calc/add", json={"kwargs": {"a": [1], "b": [2, 3]}}).json() == [1, 2, 3]
    r = http.post("/pyro/http.calc/echo?q=s", json={"args": [{"x": None}, True], "kwargs": {"n": 7}})
    assert r.json() == {"args": [{"x": None}, True], "kwargs": {"q": "s", "n": 7}}


@pytest.mark.parametrize("body, fragment", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be an object"),
    (b'{"params": []}', "must be an object"),
    (b'{"args": {"a": 1}}', '"args" must be a JSON array'),
    (b'{"kwargs": [1]}', '"kwargs" must be a JSON object'),
])
def test_bad_json_body_is_400_saying_what_to_send(backend, gateway, body, fragment):
    r = gateway().post("/pyro/http.calc/add", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and fragment in r.json()["error"]


def test_same_argument_in_query_and_body_is_400(backend, gateway):
    r = gateway().post("/pyro/http.calc/add?a=1", json={"kwargs": {"a": 2, "b": 3}})
    assert r.status_code == 400 and "both in the query and in the body" in r.json()["error"]


def test_generator_streams_ndjson(backend, gateway):
    http = gateway()
    with http.stream("POST", "/pyro/http.calc/count", json={"args": [4]}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines == [{"i": 0}, {"i": 1}, {"i": 2}, {"i": 3}]
    lines = [json.loads(line) for line in http.get("/pyro/http.calc/broken_stream").text.splitlines()]
    assert lines[0] == 1
    assert lines[1]["__class__"] == "builtins.KeyError" and lines[1]["args"] == ["half way"]


def test_body_over_the_limit_is_413(backend, gateway):
    http = gateway(max_body=1000)
    r = http.post("/pyro/http.calc/echo", json={"args": ["x" * 2000]})
    assert r.status_code == 413 and "1000" in r.json()["error"]
    assert http.post("/pyro/http.calc/echo", json={"args": ["x" * 100]}).status_code == 200


def test_default_body_limit_is_ten_mib():
    assert ember.config.GATEWAY_MAX_BODY == 10 * 1024 * 1024


def test_connections_are_reused(backend, gateway):
    http = gateway()
    for i in range(20):
        assert http.post("/pyro/http.calc/add", json={"args": [i, 1]}).json() == i + 1
        assert http.post("/pyro/http.aio.calc/add", json={"args": [i, 2]}).json() == i + 2
    stats = http.app_state.pool.statistics()
    assert stats["connects"] == 2  # one per daemon, not one per request
    assert stats["shared"] == 1  # the asyncio daemon multiplexes: one connection serves all requests


def test_concurrent_requests_to_a_daemon_that_answers_in_order(backend, gateway):
    http = gateway(pool_size=4)
    results = []

    def call(i):
        results.append(http.post("/pyro/http.calc/sleepy", json={"args": [0.2]}).json())

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == ["awake"] * 6
    assert http.app_state.pool.statistics()["connects"] <= 4  # the bound holds


def test_slow_daemon_is_504_and_others_are_still_served(backend, gateway):
    http = gateway(timeout=1.5)
    slow = {}

    def call_slow():
        slow["r"] = http.post("/pyro/http.calc/sleepy", json={"args": [4]})

    t = threading.Thread(target=call_slow)
    t.start()
    fast = http.post("/pyro/http.aio.calc/add", json={"args": [1, 2]})
    t.join(20)
    assert fast.status_code == 200 and fast.json() == 3
    assert slow["r"].status_code == 504 and "1.5 s" in slow["r"].json()["error"]
    # the connection that waited was closed; a new one is served (by another thread of the daemon)
    assert http.post("/pyro/http.calc/add", json={"args": [2, 2]}).json() == 4


def test_timeout_on_a_multiplexing_daemon_keeps_the_shared_connection(backend, gateway):
    http = gateway(timeout=1.5)
    assert http.post("/pyro/http.aio.calc/add", json={"args": [1, 1]}).json() == 2
    slow = {}
    t = threading.Thread(target=lambda: slow.update(r=http.post("/pyro/http.aio.calc/nap", json={"args": [4]})))
    t.start()
    fast = http.post("/pyro/http.aio.calc/add", json={"args": [1, 2]})
    t.join(20)
    assert fast.status_code == 200 and fast.json() == 3
    assert slow["r"].status_code == 504
    assert http.post("/pyro/http.aio.calc/add", json={"args": [2, 2]}).json() == 4
    assert http.app_state.pool.statistics()["connects"] == 1  # the one shared connection served them all


def test_dead_daemon_is_504(backend, gateway):
    ns = backend[0]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ns.register("http.dead", f"PYRO:obj@127.0.0.1:{port}")
    r = gateway(timeout=2).get("/pyro/http.dead/anything")
    assert r.status_code == 504 and "unreachable" in r.json()["error"]


def test_hung_daemon_is_504_within_the_timeout(backend, gateway):
    ns = backend[0]
    with socket.socket() as listener:  # accepts connections (the kernel does) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        ns.register("http.hung", f"PYRO:obj@127.0.0.1:{listener.getsockname()[1]}")
        http = gateway(timeout=1.5)
        r = http.get("/pyro/http.hung/anything")
        assert r.status_code == 504 and "1.5 s" in r.json()["error"]
        assert http.get("/pyro/http.calc/answer").json() == 42


def test_pyro5_daemon_behind_the_gateway(pyro5_backend, gateway):
    http = gateway()
    assert http.post("/pyro/http.pyro5/add", json={"args": [20, 22]}).json() == 42
    assert http.get("/pyro/http.pyro5/add?a=x&b=y").json() == "xy"
    meta = http.get("/pyro/http.pyro5/$meta").json()
    assert set(meta["methods"]) == {"add", "fail", "numbers"} and meta["attributes"] == ["version"]
    assert http.get("/pyro/http.pyro5/version").json() == "pyro5"
    r = http.get("/pyro/http.pyro5/fail")
    assert r.status_code == 500 and r.json()["__class__"] == "builtins.ValueError"
    assert r.json()["args"] == ["pyro says no"]
    lines = http.get("/pyro/http.pyro5/numbers").text.splitlines()
    assert [json.loads(x) for x in lines] == [1, 2, 3]


def test_openapi_describes_exposed_names(backend, pyro5_backend, gateway):
    doc = gateway(gateway_key="k").get("/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    assert "post" in doc["paths"]["/pyro/http.calc/add"]
    assert "get" in doc["paths"]["/pyro/http.calc/answer"]
    assert "post" in doc["paths"]["/pyro/http.pyro5/numbers"]
    assert "/pyro/http.aio.calc/$meta" in doc["paths"]
    assert not any(p.startswith("/pyro/private.") for p in doc["paths"])
    assert doc["components"]["securitySchemes"]["gatewayKey"]["name"] == "X-Pyro-Gateway-Key"
    operation_ids = [op["operationId"] for path in doc["paths"].values() for op in path.values()]
    assert len(operation_ids) == len(set(operation_ids))


# ---- events ------------------------------------------------------------------------------

def _read_events(http, path, count, ready, key=None):
    """Read ``count`` SSE data messages from ``path``; ``ready`` is set once subscribed."""
    events = []
    params = {"$key": key} if key else None
    with http.stream("GET", path, params=params) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith(": listening"):
                ready.set()
            elif line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if len(events) == count:
                    break
    return events


def test_events_as_server_sent_events(ember_nameserver, gateway):
    with EventServer("127.0.0.1", 0, ns_host="127.0.0.1", ns_port=ember_nameserver.daemon.port).start():
        http = gateway()
        ready = threading.Event()
        got = {}
        reader = threading.Thread(target=lambda: got.update(events=_read_events(http, "/events/weather\\.", 2, ready)))
        reader.start()
        assert ready.wait(10)
        with Publisher(ns_host="127.0.0.1", ns_port=ember_nameserver.daemon.port) as pub:
            pub.publish("news.today", "not this one")
            pub.publish("weather.rotterdam", {"temp": 11.5})
            pub.publish("weather.oslo", {"temp": -3})
        reader.join(20)
        assert [e["subject"] for e in got["events"]] == ["weather.rotterdam", "weather.oslo"]
        assert got["events"][0]["message"] == {"temp": 11.5}


def test_events_without_an_event_service_is_503(ember_nameserver, gateway):
    r = gateway(timeout=3).get("/events/anything")
    assert r.status_code == 503 and "event service" in r.json()["error"]


def test_events_need_the_gateway_key(ember_nameserver, gateway):
    r = gateway(gateway_key="k").get("/events/anything")
    assert r.status_code == 403 and "gateway key" in r.json()["error"]


def test_pyro_root_redirects_to_the_console_and_other_verbs_are_405(backend, gateway):
    http = gateway()
    r = http.get("/pyro/", follow_redirects=False)
    assert r.status_code == 302 and r.headers["location"] == "/"
    assert http.put("/pyro/http.calc/add").status_code == 405


def test_events_bad_pattern_is_400(ember_nameserver, gateway):
    r = gateway().get("/events/(unclosed")
    assert r.status_code == 400 and "invalid subject pattern" in r.json()["error"]


# ---- console data -----------------------------------------------------------------------

def test_console_lists_exposed_names_escaped(backend, gateway):
    ns = backend[0]
    ns.register("http.<script>alert(1)</script>", "PYRO:x@127.0.0.1:1")
    html = gateway().get("/").text
    assert "http.calc" in html and "PYRO:calc@" in html and "kind:calc" in html
    assert "&lt;b&gt;tag&lt;/b&gt;" in html and "<b>tag</b>" not in html
    assert "<script>alert(1)</script>" not in html
    assert "http.&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "private.calc" not in html
    assert "name server answered in" in html


def test_console_object_page(backend, gateway):
    http = gateway()
    html = http.get("/object/http.calc").text
    assert 'id=object-name data-name="http.calc"' in html
    assert '<option value="add">add</option>' in html and 'data-attr="answer"' in html
    r = http.get("/object/private.calc")
    assert r.status_code == 403 and "not exposed" in r.text
    assert http.get("/object/http.none").status_code == 404


def test_console_remove_needs_the_key(backend, gateway):
    ns = backend[0]
    ns.register("http.victim", "PYRO:x@127.0.0.1:1")
    off = gateway()
    r = off.post("/console/remove", json={"name": "http.victim"})
    assert r.status_code == 403 and "removal is off" in r.json()["error"]
    http = gateway(gateway_key="k")
    assert http.post("/console/remove", json={"name": "http.victim"}).status_code == 403
    assert http.post("/console/remove", json={"name": "private.calc"},
                     headers={"X-Pyro-Gateway-Key": "k"}).status_code == 403
    r = http.post("/console/remove", json={"name": "http.victim"}, headers={"X-Pyro-Gateway-Key": "k"})
    assert r.status_code == 200 and r.json()["removed"] == 1
    assert "http.victim" not in ns.list()


def test_console_ping_and_static_files(backend, gateway):
    http = gateway()
    assert http.get("/console/ping").json()["ms"] >= 0
    js = http.get("/static/console.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "textContent" in js.text
    assert http.get("/static/console.css").headers["content-type"].startswith("text/css")
    assert http.get("/static/nothing.js").status_code == 404


def test_no_name_server_is_reported(gateway):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = gateway(ns_host="127.0.0.1", ns_port=port, timeout=2)
    r = http.get("/")
    assert r.status_code == 503 and "not reachable" in r.text
    r = http.get("/pyro/http.calc/add")
    assert r.status_code == 503 and "no name server" in r.json()["error"]


def test_mounted_under_a_prefix(backend, ember_nameserver):
    gateway_app = ember.web.create_app(ns_host="127.0.0.1", ns_port=ember_nameserver.daemon.port)
    site = Starlette(routes=[Mount("/rpc", app=gateway_app)])
    with ember.web.start(site) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/rpc/pyro/http.calc/answer").json() == 42
        html = http.get("/rpc/").text
        assert 'href="/rpc/object/http.calc"' in html and 'href="/rpc/static/console.css"' in html
        assert 'data-root="/rpc"' in html
        assert http.get("/rpc/static/console.js").status_code == 200
        assert 'href="/rpc/events"' in http.get("/rpc/object/http.calc").text


# ---- serving: HTTPS and the command line ---------------------------------------------------

def test_https(backend, ember_nameserver, tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    ca.cert_pem.write_to_path(str(cafile))
    app = ember.web.create_app(ns_host="127.0.0.1", ns_port=ember_nameserver.daemon.port)
    with ember.web.start(app, certfile=str(certfile), keyfile=str(keyfile)) as server:
        assert server.url.startswith("https://")
        with httpx.Client(base_url=server.url, verify=ssl.create_default_context(cafile=str(cafile))) as http:
            assert http.get("/pyro/http.calc/answer").json() == 42


def test_https_needs_both_files():
    with pytest.raises(ember.errors.CommunicationError, match="both a certificate file and a key file"):
        ember.web.start(ember.web.create_app(), certfile="cert.pem")


def test_bad_expose_pattern_is_a_config_error():
    with pytest.raises(ember.errors.ConfigError, match="invalid expose pattern"):
        ember.web.create_app(expose="(")


@pytest.mark.timeout(60)
def test_ember_gateway_command(backend, ember_nameserver):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-m", "ember", "gateway", "-p", "0", "-n", "127.0.0.1",
                             "--ns-port", str(ember_nameserver.daemon.port), "-g", "k", "-e", r"http\.calc"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        url = None
        lines = []
        deadline = time.monotonic() + 30
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"running on (http://127\.0\.0\.1:\d+)", line)
            if m:
                url = m.group(1)
        assert url, "".join(lines)
        assert "gateway key required" in "".join(lines)
        with httpx.Client(base_url=url) as http:
            assert http.get("/pyro/http.calc/answer").status_code == 403
            assert http.get("/pyro/http.calc/answer", headers={"X-Pyro-Gateway-Key": "k"}).json() == 42
            assert http.get("/pyro/http.aio.calc/answer", headers={"X-Pyro-Gateway-Key": "k"}).status_code == 403
            assert http.get("/pyro/http.calc/answer").headers["Access-Control-Allow-Origin"] == "*"
    finally:
        proc.terminate()
        proc.wait(15)
        proc.stdout.close()
    assert proc.returncode == 0
