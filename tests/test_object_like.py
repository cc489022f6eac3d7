"""Proxies behave like the object: call, len, iter, in, [] and docstrings (help, dir),
on Proxy and AsyncProxy, with every server type."""

import asyncio
import pydoc

import ember


@ember.expose
class Shelf:
    """A shelf of numbered items."""

    def __init__(self):
        self.items = [10, 20, 30]

    def __call__(self, n):
        """Multiply by the number of items."""
        return n * len(self.items)

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def __contains__(self, item):
        return item in self.items

    def __getitem__(self, index):
        return self.items[index]

    def count(self):
        """How many items the shelf holds."""
        return len(self.items)


class Plain:
    pass


def test_blocking_proxy_behaves_like_the_object(make_daemon, servertype):
    uri = make_daemon(servertype=servertype).register(Shelf, "shelf")
    with ember.Proxy(uri) as p:
        assert p(2) == 6
        assert len(p) == 3
        assert list(p) == [10, 20, 30]
        assert 20 in p and 25 not in p
        assert p[1] == 20
        assert {"count", "__call__", "__len__"} <= set(dir(p))
        assert p.count.__doc__ == "How many items the shelf holds."
        text = pydoc.render_doc(p)
        assert "A shelf of numbered items." in text and "How many items the shelf holds." in text
        assert "Multiply by the number of items." in p.__doc__
    assert ember.Proxy.__doc__.startswith("A connection to a remote object")  # the class keeps its own


def test_async_proxy_behaves_like_the_object(make_daemon, servertype):
    uri = make_daemon(servertype=servertype).register(Shelf, "shelf")

    async def main():
        async with ember.AsyncProxy(uri) as p:
            assert await p(2) == 6
            assert await p._len() == 3
            assert [item async for item in p] == [10, 20, 30]
            assert await p._contains(20) and not await p._contains(25)
            assert await p[2] == 30
            assert "count" in dir(p)
            assert "A shelf of numbered items." in p.__doc__

    asyncio.run(main())


def test_a_pyro5_client_sees_only_pyro5s_metadata_keys(make_daemon):
    import Pyro5.api

    uri = make_daemon().register(Shelf, "shelf")
    with Pyro5.api.Proxy(str(uri)) as p:
        p._pyroBind()  # the handshake answer without Ember's extras
        assert "count" in p._pyroMethods and p.count() == 3
    with ember.Proxy(f"PYRO:Pyro.Daemon@{uri.location}") as daemon_object:
        assert set(daemon_object.get_metadata("shelf")) == {"methods", "oneway", "attrs"}


@ember.expose
class Dunders:
    def __dunder__(self):
        return "dunder called"

    def plain(self):
        return "plain"


def test_an_exposed_dunder_is_called_by_name_once_the_metadata_is_known(make_daemon):
    uri = make_daemon().register(Dunders, "dunders")
    with ember.Proxy(uri) as p:
        assert not hasattr(p, "__dunder__")  # not bound yet: a probe never connects
        assert p._sock is None
        p._bind()
        assert p.__dunder__() == "dunder called"
        assert not hasattr(p, "__nothing__")

    async def main():
        async with ember.AsyncProxy(uri) as p:
            await p._bind()
            return await p.__dunder__()

    assert asyncio.run(main()) == "dunder called"
