"""Pytest fixtures for testing programs that use Ember (registered as a ``pytest11`` plugin).

Installed with Ember, so in any project's tests::

    def test_greeter(ember_serve, ember_proxy):
        uri = ember_serve(Greeter(), "greeter")           # a daemon on 127.0.0.1, a free port
        assert ember_proxy(uri).greet("x") == "hello, x"  # released when the test ends

    def test_by_name(ember_nameserver, ember_daemon):
        daemon = ember_daemon(ns=True)                    # publishes in the test's name server
        daemon.register(Greeter, "example.greeter")
        assert ember.Proxy("PYRONAME:example.greeter").greet("y") == "hello, y"

Fixtures:

- ``ember_daemon(**options)``: a started :class:`~ember.Daemon` (loopback, port 0 unless
  given), shut down after the test. ``servertype`` defaults to ``ember_servertype``.
- ``ember_serve(obj, name=None, **options)``: registers ``obj`` in a new daemon, returns its URI.
- ``ember_servertype``: config ``SERVERTYPE`` (``"thread"``); override the fixture, or use
  ``ember_servertypes`` (``["thread", "multiplex", "asyncio"]``) to run a test on each.
- ``ember_nameserver``: an in-process name server on 127.0.0.1 with a free port; for the
  test's duration ``locate_ns()``, ``PYRONAME:`` and ``Daemon(ns=True)`` find it
  (``NS_HOST``/``NS_PORT`` point at it, broadcast goes to 127.255.255.255 only).
- ``ember_proxy(uri, **options)`` / ``ember_async_proxy(uri, **options)``: proxies
  released at the end of the test.

Everything is torn down in reverse order, even when the test fails.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .client import AsyncProxy, Proxy
from .config import config
from .naming import NameServerService, start_ns
from .server import Daemon
from .uri import URI

__all__ = ["SERVERTYPES"]

SERVERTYPES = ["thread", "multiplex", "asyncio"]
_LOOPBACK_BROADCAST = "127.255.255.255"


@pytest.fixture
def ember_servertype() -> str:
    """The server type ``ember_daemon`` uses unless told otherwise (config ``SERVERTYPE``,
    ``"thread"`` by default); override this fixture to change it for a module."""
    return str(config.SERVERTYPE)


@pytest.fixture(params=SERVERTYPES)
def ember_servertypes(request: pytest.FixtureRequest) -> str:
    """Each of Ember's server types in turn (the test runs once per type)."""
    return request.param


@pytest.fixture
def ember_daemon(ember_servertype: str) -> Iterator[Callable[..., Daemon]]:
    """A factory of started daemons on loopback, each shut down after the test."""
    daemons: list[Daemon] = []

    def make(**options: Any) -> Daemon:
        options.setdefault("servertype", ember_servertype)
        daemon = Daemon(**options)
        daemons.append(daemon)
        daemon.start()
        return daemon

    yield make
    for daemon in reversed(daemons):
        daemon.shutdown()


@pytest.fixture
def ember_serve(ember_daemon: Callable[..., Daemon]) -> Callable[..., URI]:
    """Serve one object (or class) in a new daemon and return its URI."""

    def serve(obj: Any, name: str | None = None, **options: Any) -> URI:
        return ember_daemon(**options).register(obj, name)

    return serve


@pytest.fixture
def ember_nameserver() -> Iterator[NameServerService]:
    """A name server for this test only, found by ``locate_ns()`` and ``PYRONAME:`` URIs."""
    ns = start_ns("127.0.0.1", 0, enable_broadcast=False)
    try:
        with config.override(NS_HOST="127.0.0.1", NS_PORT=ns.daemon.port, BROADCAST_ADDRS=[_LOOPBACK_BROADCAST]):
            yield ns
    finally:
        ns.shutdown()


@pytest.fixture
def ember_proxy() -> Iterator[Callable[..., Proxy[Any]]]:
    """A factory of blocking proxies, released after the test."""
    proxies: list[Proxy[Any]] = []

    def make(uri: str | URI, **options: Any) -> Proxy[Any]:
        proxy: Proxy[Any] = Proxy(uri, **options)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy._release()


@pytest.fixture
def ember_async_proxy() -> Iterator[Callable[..., AsyncProxy]]:
    """A factory of :class:`~ember.AsyncProxy` objects, released after the test (on the loop
    they were used on, or closed if that loop is gone)."""
    proxies: list[AsyncProxy] = []

    def make(uri: str | URI, **options: Any) -> AsyncProxy:
        proxy = AsyncProxy(uri, **options)
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        stream = proxy._stream
        if stream is None:
            continue
        loop = stream.loop
        if not loop.is_closed() and not loop.is_running():
            loop.run_until_complete(proxy._release())
        else:
            stream.close()
