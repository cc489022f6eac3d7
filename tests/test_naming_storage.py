"""Name server storage: back-ends chosen by URL scheme, third-party back-ends through entry
points, the Storage ABC and its optional capabilities."""

import importlib.metadata
import re
from pathlib import Path

import pytest

import ember
from ember import errors, naming
from ember.naming import storage as storage_pkg
from ember.naming.storage import ENTRY_POINT_GROUP, Leases, Storage, Watch, open_storage
from ember.naming.storage.memory import MemoryStorage
from ember.naming.storage.sqlite import SqlStorage


class FakeStorage(MemoryStorage):
    """A third-party back-end as a plugin would ship it: one class, one entry point."""

    opened: list[str] = []

    def __init__(self, spec):
        super().__init__()
        self.description = spec

    @classmethod
    def from_spec(cls, spec):
        cls.opened.append(spec)
        return cls(spec)


def not_a_storage(spec):
    return {"spec": spec}


@pytest.fixture
def fake_entry_points(monkeypatch):
    """Installed metadata declaring the given ``scheme -> value`` entry points (nothing else)."""

    def install(**declared):
        eps = [importlib.metadata.EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in declared.items()]

        def entry_points(**selection):
            assert selection == {"group": ENTRY_POINT_GROUP}
            return eps

        monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)

    FakeStorage.opened = []
    return install


def test_builtin_schemes(tmp_path):
    for spec in (None, "memory", "memory:"):
        assert type(open_storage(spec)) is MemoryStorage
    db = tmp_path / "names.db"
    # today's spelling (sql:PATH), the URL scheme, a bare path (str or PathLike)
    for spec in (f"sql:{db}", f"sqlite:{db}", str(db), db):
        storage = open_storage(spec)
        try:
            assert type(storage) is SqlStorage and storage.path == str(db)
        finally:
            storage.close()
    mine = MemoryStorage()
    assert open_storage(mine) is mine


def test_builtins_need_no_installed_metadata(fake_entry_points, tmp_path):
    fake_entry_points()  # a source tree on PYTHONPATH: no entry points at all
    assert type(open_storage("memory")) is MemoryStorage
    storage = open_storage(f"sqlite:{tmp_path / 'x.db'}")
    storage.close()
    with pytest.raises(errors.NamingError, match=r"known: memory, redis, rediss, sql, sqlite;"):
        open_storage("etcd://127.0.0.1:2379/ns")


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(errors.NamingError) as info:
        open_storage("dbm:x")
    text = str(info.value)
    assert text.startswith("unknown name server storage 'dbm:x'")
    assert "'dbm'" in text and "memory, redis, rediss, sql, sqlite" in text and ENTRY_POINT_GROUP in text
    for bad in ("", 42, "sqlite:"):
        with pytest.raises(errors.NamingError):
            open_storage(bad)


def test_third_party_backend_through_an_entry_point(fake_entry_points):
    fake_entry_points(etcd=f"{__name__}:FakeStorage.from_spec")
    storage = open_storage("etcd://127.0.0.1:2379/ns")
    assert type(storage) is FakeStorage and storage.description == "etcd://127.0.0.1:2379/ns"
    assert open_storage("ETCD://h/1").description == "ETCD://h/1"  # schemes are case-insensitive
    with pytest.raises(errors.NamingError, match=re.escape("known: etcd, memory, redis, rediss, sql, sqlite")):
        open_storage("consul://h:8500")
    # the name server uses it unchanged
    with naming.start_ns("127.0.0.1", 0, storage="etcd://fake/0", enable_broadcast=False) as svc:
        assert isinstance(svc.nameserver.storage, FakeStorage)
        with ember.Proxy(svc.uri) as ns:
            ns.register("shop.cart", "PYRO:cart@127.0.0.1:1")
            assert str(ns.lookup("shop.cart")) == "PYRO:cart@127.0.0.1:1"
        assert svc.nameserver.storage.get("shop.cart") == ("PYRO:cart@127.0.0.1:1", frozenset())
    assert FakeStorage.opened == ["etcd://127.0.0.1:2379/ns", "ETCD://h/1", "etcd://fake/0"]


def test_broken_or_hostile_entry_points(fake_entry_points):
    fake_entry_points(memory=f"{__name__}:FakeStorage.from_spec",  # cannot replace a built-in
                      missing="ember_no_such_module:Storage",
                      odd=f"{__name__}:not_a_storage")
    assert type(open_storage("memory")) is MemoryStorage and FakeStorage.opened == []
    with pytest.raises(errors.NamingError, match=r"back-end 'missing' \(ember_no_such_module:Storage\) cannot be loaded"):
        open_storage("missing://x")
    with pytest.raises(errors.NamingError, match="returned .* not an ember.naming.storage.Storage"):
        open_storage("odd:x")


def test_pyproject_declares_the_builtins():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["entry-points"][ENTRY_POINT_GROUP]
    assert declared == storage_pkg._BUILTIN
    for value in declared.values():
        assert callable(importlib.metadata.EntryPoint("x", value, ENTRY_POINT_GROUP).load())


def test_storage_is_an_abc_and_the_capabilities_are_protocols():
    class Incomplete(Storage):
        def get(self, name):
            return None

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()

    class Watching(MemoryStorage):
        def watch(self, callback, prefix=""):
            return lambda: None

    # the built-in back-ends have leases and replicated names; none has Watch yet
    assert isinstance(MemoryStorage(), Leases) and isinstance(MemoryStorage(), storage_pkg.Replicated)
    assert isinstance(Watching(), Watch) and not isinstance(MemoryStorage(), Watch)

    class Plain(Storage):  # a minimal third-party back-end: the seven methods, no capability
        get = put = put_if_absent = set_metadata = remove = items = count = lambda self, *a: None

    assert not isinstance(Plain(), Leases) and not isinstance(Plain(), storage_pkg.Replicated)
    change = naming.storage.Change("put", "a", ("PYRO:a@h:1", frozenset()))
    assert change.kind == "put" and change.entry[0] == "PYRO:a@h:1"


def test_old_import_paths_keep_working():
    from ember.naming.storage import MemoryStorage as M
    from ember.naming.storage import SqlStorage as S

    assert M is naming.MemoryStorage is MemoryStorage and S is naming.SqlStorage is SqlStorage
    assert naming.Storage is Storage and naming.open_storage is open_storage
    with pytest.raises(AttributeError):
        storage_pkg.NoSuchThing  # noqa: B018
