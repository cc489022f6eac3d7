"""Idle release: proxies close unused connections (PROXY_IDLE_RELEASE), daemons close
silent ones (IDLE_TIMEOUT), and either way the next call reconnects transparently."""

import asyncio

import ember

from .services import Calc, wait_for


def test_idle_proxy_releases_its_connection_and_reconnects(make_daemon, servertype):
    daemon = make_daemon(servertype=servertype)
    uri = daemon.register(Calc, "calc")
    with ember.config.override(PROXY_IDLE_RELEASE=0.3):
        with ember.Proxy(uri) as p:
            assert p.add(1, 2) == 3
            assert p._sock is not None
            assert wait_for(lambda: p._sock is None, 5)  # released while unused
            assert wait_for(lambda: daemon.active_connections == 0, 5)  # and the daemon saw it go
            assert p.add(2, 2) == 4  # reconnects on use


def test_idle_async_proxy_releases_its_connection(make_daemon):
    daemon = make_daemon(servertype="asyncio")
    uri = daemon.register(Calc, "calc")

    async def main():
        async with ember.AsyncProxy(uri) as p:
            assert await p.add(1, 2) == 3
            for _ in range(100):
                if p._stream is None:
                    break
                await asyncio.sleep(0.05)
            assert p._stream is None
            assert await p.add(3, 3) == 6

    with ember.config.override(PROXY_IDLE_RELEASE=0.3):
        asyncio.run(main())


def test_daemon_closes_silent_connections_and_proxies_reconnect(make_daemon, servertype):
    with ember.config.override(IDLE_TIMEOUT=0.5, POLLTIMEOUT=0.1):
        daemon = make_daemon(servertype=servertype)
        uri = daemon.register(Calc, "calc")
        with ember.Proxy(uri) as p:
            assert p.add(1, 1) == 2
            assert wait_for(lambda: daemon.active_connections == 0, 5)  # closed by the daemon
            assert p.add(5, 5) == 10  # no error: the proxy notices and reconnects (MAX_RETRIES is 0)
            assert daemon.active_connections == 1
