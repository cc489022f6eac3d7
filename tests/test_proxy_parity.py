"""One behavioural suite for both proxy flavours: what ``Proxy`` does, ``AsyncProxy`` does too.

Each test runs once with the blocking proxy and once with the asyncio proxy (through a
small adapter that awaits on a private event loop), against real daemons on loopback.
"""

import asyncio
import copy
import socket
import ssl

import pytest
import trustme

import ember
from ember import errors
from ember.client.hooks import add_client_hook, remove_client_hook

from .services import Calc, CallbackTarget, Other


class SyncFlavour:
    name = "sync"
    proxy_class = ember.Proxy

    def proxy(self, uri, **kwargs):
        return ember.Proxy(uri, **kwargs)

    def call(self, proxy, method, *args, **kwargs):
        return getattr(proxy, method)(*args, **kwargs)

    def get(self, proxy, attr):
        return getattr(proxy, attr)

    def set(self, proxy, attr, value):
        setattr(proxy, attr, value)

    def bind(self, proxy):
        proxy._bind()

    def release(self, proxy):
        proxy._release()

    def reconnect(self, proxy, tries, wait):
        proxy._reconnect(tries, wait)

    def close(self):
        pass


class AsyncFlavour:
    name = "async"
    proxy_class = ember.AsyncProxy

    def __init__(self):
        self.loop = asyncio.new_event_loop()

    def run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, 20))

    def proxy(self, uri, **kwargs):
        return ember.AsyncProxy(uri, **kwargs)

    def call(self, proxy, method, *args, **kwargs):
        return self.run(getattr(proxy, method)(*args, **kwargs))

    def get(self, proxy, attr):
        async def read():
            return await getattr(proxy, attr)  # attribute syntax: await proxy.name

        return self.run(read())

    def set(self, proxy, attr, value):
        self.run(proxy._set(attr, value))

    def bind(self, proxy):
        self.run(proxy._bind())

    def release(self, proxy):
        self.run(proxy._release())

    def reconnect(self, proxy, tries, wait):
        self.run(proxy._reconnect(tries, wait))

    def close(self):
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()


@pytest.fixture(params=["sync", "async"])
def flavour(request):
    f = SyncFlavour() if request.param == "sync" else AsyncFlavour()
    yield f
    f.close()


@pytest.fixture
def calc_uri(make_daemon, servertype):
    daemon = make_daemon(servertype=servertype)
    calc = Calc()
    calc.other = Other()
    daemon.register(calc.other)
    return daemon, daemon.register(calc, "calc")


def test_calls_attributes_and_errors(flavour, calc_uri):
    _daemon, uri = calc_uri
    p = flavour.proxy(uri)
    try:
        assert flavour.call(p, "add", 1, 2) == 3
        flavour.set(p, "value", 42)
        assert flavour.get(p, "value") == 42
        with pytest.raises(ValueError, match="bad value"):
            flavour.call(p, "fail")
        with pytest.raises(AttributeError):
            flavour.call(p, "nope")
    finally:
        flavour.release(p)


def test_retries_after_the_server_closed_the_connection(flavour, calc_uri):
    daemon, uri = calc_uri
    p = flavour.proxy(uri)
    try:
        assert flavour.call(p, "add", 1, 1) == 2
        for conn in list(getattr(daemon.server, "connections", ())) or list(daemon.server.pool.busy):
            conn.close()
        p._max_retries = 1
        assert flavour.call(p, "add", 2, 2) == 4
    finally:
        flavour.release(p)


def test_reconnect_to_a_restarted_daemon(flavour, make_daemon):
    first = make_daemon()
    port = first.port
    uri = first.register(Calc, "calc")
    p = flavour.proxy(uri)
    try:
        assert flavour.call(p, "add", 1, 2) == 3
        first.shutdown()
        second = make_daemon(port=port)
        second.register(Calc, "calc")
        flavour.reconnect(p, 50, 0.1)
        assert flavour.call(p, "add", 3, 4) == 7
    finally:
        flavour.release(p)


def test_connected_socket(flavour):
    server_sock, client_sock = socket.socketpair()
    daemon = ember.Daemon(connected_socket=server_sock)
    daemon.register(Calc, "calc")
    daemon.start()
    p = flavour.proxy("calc", connected_socket=client_sock)
    try:
        assert flavour.call(p, "add", 20, 22) == 42
        flavour.set(p, "value", 5)
        assert flavour.get(p, "value") == 5
    finally:
        flavour.release(p)
        daemon.shutdown()
        server_sock.close()
        client_sock.close()


def test_copy_keeps_options_and_gets_its_own_connection(flavour, calc_uri):
    _daemon, uri = calc_uri
    p = flavour.proxy(uri)
    p._timeout = 7
    p._serializer = "json"
    p._oneway = {"record"}
    p._max_retries = 3
    q = copy.copy(p)
    try:
        assert type(q) is type(p) and q == p
        assert (q._timeout, q._serializer, q._oneway, q._max_retries) == (7, "json", {"record"}, 3)
        assert q._oneway is not p._oneway
        assert flavour.call(p, "add", 1, 1) == 2 and flavour.call(q, "add", 2, 2) == 4
        assert (q._session is not p._session) and q._session is not None
    finally:
        flavour.release(p)
        flavour.release(q)


def test_proxies_as_arguments(flavour, make_daemon, servertype, calc_uri):
    _daemon, uri = calc_uri
    callback_daemon = make_daemon(servertype=servertype)
    target = CallbackTarget()
    callback_uri = callback_daemon.register(target)
    callback = flavour.proxy(callback_uri)
    p = flavour.proxy(uri)
    try:
        flavour.bind(callback)
        assert flavour.call(p, "call_back", callback, 21) == 42  # a proxy of this flavour travels as an argument
        assert target.values == [21]
    finally:
        flavour.release(p)
        flavour.release(callback)


def test_proxies_as_results_arrive_in_the_receivers_flavour(flavour, calc_uri):
    _daemon, uri = calc_uri
    p = flavour.proxy(uri)
    try:
        other = flavour.call(p, "get_other")
        assert type(other) is flavour.proxy_class
        assert flavour.call(other, "hello") == "hello from other"
        flavour.release(other)
    finally:
        flavour.release(p)


def test_client_hooks_add_annotations_and_see_outcomes(flavour, calc_uri):
    _daemon, uri = calc_uri
    seen = []

    class Tracer:
        def before_call(self, call):
            call.annotations["TRCE"] = b"span-1"

        def after_call(self, call, result, exc):
            seen.append((call.method, result, type(exc).__name__ if exc else None))

    hook = Tracer()
    add_client_hook(hook)
    p = flavour.proxy(uri)
    try:
        info = flavour.call(p, "context_info")
        assert info["annotations"]["TRCE"] == b"span-1"
        with pytest.raises(ValueError):
            flavour.call(p, "fail")
    finally:
        remove_client_hook(hook)
        flavour.release(p)
    assert ("fail", None, "ValueError") in seen
    assert any(method == "context_info" and exc is None for method, _r, exc in seen)


# ---- TLS: the same diagnosis from both flavours ---------------------------------------------------

@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def test_tls_client_certificate_required_is_diagnosed(flavour, make_daemon, ca):
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    daemon = make_daemon(servertype="thread", ssl_context=server_ctx)
    uri = daemon.register(Calc, "calc")
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    p = flavour.proxy(uri, ssl_context=client_ctx)
    with pytest.raises(errors.CommunicationError, match="require.* a TLS client certificate") as info:
        flavour.bind(p)
    if flavour.name == "sync":
        # asyncio's TLS layer may lose the daemon's alert (a write fails first); then the
        # message still says what to check, but it cannot be a definite denial
        assert isinstance(info.value, errors.ConnectionDeniedError)
        assert info.value.code == errors.DENY_SECURITY
    client_cert = ca.issue_cert("client.example")
    good_ctx = ssl.create_default_context()
    ca.configure_trust(good_ctx)
    client_cert.configure_cert(good_ctx)
    q = flavour.proxy(uri, ssl_context=good_ctx)
    try:
        assert flavour.call(q, "add", 1, 2) == 3
    finally:
        flavour.release(q)
