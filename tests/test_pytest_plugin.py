"""The pytest plugin users get with Ember (entry point ``pytest11``): its fixtures, and a
fresh pytest run that finds them without any conftest."""

import ember

from .services import Calc

pytest_plugins = ["pytester"]


def test_serve_and_proxy_fixtures(ember_serve, ember_proxy, ember_servertypes):
    uri = ember_serve(Calc, "calc", servertype=ember_servertypes)
    p = ember_proxy(uri)
    assert p.add(2, 3) == 5
    assert p._sock is not None  # connected now; the fixture releases it at the end


def test_nameserver_fixture_is_found_by_name(ember_nameserver, ember_daemon):
    daemon = ember_daemon(ns=True)
    daemon.register(Calc, "example.calc")
    with ember.Proxy("PYRONAME:example.calc") as p:
        assert p.add(1, 1) == 2
    assert ember.locate_ns().lookup("example.calc").port == daemon.port
    assert ember_nameserver.daemon.port != 9090


def test_async_proxy_fixture(ember_serve, ember_async_proxy):
    import asyncio

    uri = ember_serve(Calc, "calc", servertype="asyncio")
    loop = asyncio.new_event_loop()
    try:
        p = ember_async_proxy(uri)
        assert loop.run_until_complete(p.add(4, 4)) == 8
    finally:
        loop.run_until_complete(p._release())
        loop.close()


def test_a_fresh_pytest_run_gets_the_fixtures(pytester):
    pytester.makepyfile(test_user="""
        import ember

        @ember.expose
        class Greeter:
            def greet(self, name):
                return "hello, " + name

        def test_greet(ember_serve, ember_proxy):
            assert ember_proxy(ember_serve(Greeter(), "greeter")).greet("x") == "hello, x"
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")  # the fixtures come from the entry point
    result.assert_outcomes(passed=1)
