"""Shared fixtures: daemons on loopback, port 0, cleaned up after each test."""

import os
import threading

import pytest

import ember
from ember.client.resolve import clear_cache

from .redis_fixture import own_redis, redis_server, redis_url  # noqa: F401  (fixtures for every test module)

SERVERTYPES = ["thread", "multiplex", "asyncio"]


@pytest.fixture(params=SERVERTYPES)
def servertype(request):
    return request.param


@pytest.fixture
def make_daemon(ember_daemon):
    """Ember's own pytest plugin (ember.pytest_plugin) makes and tears down the daemons."""
    return ember_daemon


# Broadcasts from tests go to the loopback network only, never to the LAN; subprocesses
# started by tests inherit this through the environment.
LOOPBACK_BROADCAST = "127.255.255.255"
os.environ["PYRO_BROADCAST_ADDRS"] = LOOPBACK_BROADCAST


@pytest.fixture(autouse=True)
def loopback_broadcast_only():
    with ember.config.override(BROADCAST_ADDRS=[LOOPBACK_BROADCAST]):
        yield


@pytest.fixture(autouse=True)
def no_thread_leaks():
    before = set(threading.enumerate())
    yield
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()
                 and not t.name.startswith("ember-oneway")]
        if not extra:
            return
        time.sleep(0.05)
    pytest.fail(f"threads left running: {extra}")


@pytest.fixture(autouse=True)
def no_lookup_cache_between_tests():
    """Each test starts with an empty PYRONAME lookup cache (NS_LOOKUP_CACHE): names and
    daemons of an earlier test never leak into the next one."""
    clear_cache()
    yield
    clear_cache()
