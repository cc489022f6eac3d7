"""Issue 13 items 4, 8 and 9: a name server no single client can stall, overwrite or fill.

Every test attacks a real name server over a socket: pathological regexes, writes without
(or with a wrong) key, and registrations past each size limit.
"""

import asyncio
import logging
import os
import re
import subprocess
import sys
import threading
import time

import Pyro5.api
import Pyro5.errors
import pytest

import ember
from ember import errors, naming
from ember.compat.Pyro5 import api as compat
from ember.config import Config
from ember.naming.matching import RegexMatcher, estimated_work
from ember.naming.nameserver import NAMESERVER_NAME

from .services import Calc, wait_for

KEY = "s3cret-key"
URI = "PYRO:obj@127.0.0.1:5001"
EVIL = "(a+)+$"  # backtracks 2**n steps on "a" * n + "!"
ENV = dict(os.environ, PYRO_BROADCAST_ADDRS="127.255.255.255")


def start(servertype="thread", **items):
    """A name server on loopback (port 0) whose protection settings come from ``items``."""
    with ember.config.override(**items):
        return naming.start_ns("127.0.0.1", 0, enable_broadcast=False, servertype=servertype)


@pytest.fixture
def ns_plain():
    service = start()
    yield service
    service.shutdown()


@pytest.fixture
def ns_keyed():
    service = start(NS_KEY=KEY)
    yield service
    service.shutdown()


def proxy(service, key=None):
    return ember.locate_ns("127.0.0.1", service.daemon.port, key=key)


# ---- item 4: pathological regexes --------------------------------------------------------------

def start_process(tmp_path, *options, **env):
    """``ember ns`` in a process of its own (so a stall there cannot stall the test) and its URI."""
    uri_file = tmp_path / "ns.uri"
    proc = subprocess.Popen([sys.executable, "-m", "ember.naming", "-n", "127.0.0.1", "-p", "0", "-x",
                             "--uri-file", str(uri_file), *options],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(ENV, **env))
    lines = []
    while not lines or not (lines[-1].startswith("Press") or lines[-1] == ""):
        lines.append(proc.stdout.readline())
    if proc.poll() is not None or not uri_file.exists():
        proc.kill()
        pytest.fail(f"ember ns did not start: {lines} {proc.stderr.read()}")
    return proc, uri_file.read_text().strip(), lines


def stop_process(proc):
    proc.terminate()
    try:
        out, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"ember ns did not stop on SIGTERM; stderr: {err}")
    return out, err


def children(pid):
    """The ids of a process's child processes (Linux /proc; elsewhere: after a second, assume one)."""
    tasks = f"/proc/{pid}/task"
    if not os.path.isdir(tasks):
        time.sleep(1)
        return [0]
    found = []
    for tid in os.listdir(tasks):
        try:
            with open(f"{tasks}/{tid}/children") as f:
                found += f.read().split()
        except OSError:
            pass
    return found


@pytest.mark.timeout(90)
@pytest.mark.parametrize("servertype", ["thread", "asyncio"])
def test_pathological_regex_does_not_stall_other_clients(servertype, tmp_path):
    # a budget far above a loopback ping, so "ping answered while the list is outstanding" is no race
    proc, uri, _lines = start_process(tmp_path, PYRO_NS_REGEX_TIMEOUT="4", PYRO_SERVERTYPE=servertype)
    try:
        with ember.Proxy(uri) as ns:
            ns.register("a" * 34 + "!", URI)  # 2**34 steps for (a+)+$: minutes for re, far past the budget
            ns.register("shop.cart", URI)
        sent, finished = threading.Event(), threading.Event()
        outcome = {}

        def attacker():
            with ember.Proxy(uri) as bad:
                bad._timeout = 30
                bad._bind()
                sent.set()
                try:
                    outcome["result"] = bad.list(regex=EVIL)
                except errors.PyroError as exc:
                    outcome["error"] = exc
                finally:
                    finished.set()

        thread = threading.Thread(target=attacker)
        thread.start()
        try:
            assert sent.wait(10)
            # the attack is under way once the name server started its regex helper process
            assert wait_for(lambda: children(proc.pid), timeout=20), "no regex helper process was started"
            with ember.Proxy(uri) as good:
                good._timeout = 20  # a stalled name server fails the test here instead of hanging it
                for _ in range(5):
                    assert good.ping() is None
                    assert str(good.lookup("shop.cart")) == URI
                answered_while_outstanding = not finished.is_set()
        finally:
            thread.join(40)
        assert answered_while_outstanding, "the pings waited for the pathological list() to end"
        assert "result" not in outcome
        error = outcome["error"]
        assert isinstance(error, errors.NamingError), error
        assert "took longer than 4 s" in str(error) and "NS_REGEX_TIMEOUT" in str(error)
        # the name server still answers regex listings afterwards, from a fresh helper too
        with ember.Proxy(uri) as ns:
            assert ns.list(regex=r"shop\..*") == {"shop.cart": URI}
            assert ns.list(regex=r"(ab|ba)+x") == {}
            assert "a" * 34 + "!" in ns.list(regex=r"(a+)+!")
    finally:
        stop_process(proc)


def test_regex_matching_is_re_match_in_both_places(ns_plain):
    names = ["shop.cart", "shop.till", "office.printer", "ab" * 20 + "x", "abab", "Shop.Up", "x\ny"]
    with proxy(ns_plain) as ns:
        for name in names:
            ns.register(name, URI)
        everything = names + [NAMESERVER_NAME]
        for pattern in [r"shop\..*", r"(ab|ba)+x", r"(ab)*$", r"(?i)shop", r"x.y", r"(?s)x.y", r".*(cart|till)$",
                        r"(?:o|s)(?:f|h)+"]:
            expected = {n for n in everything if re.match(pattern, n)}
            assert set(ns.list(regex=pattern)) == expected, pattern
        assert ns.remove(regex=r"(ab|ba)+x") == 1 and ns.lookup("abab")
    # the first patterns are cheap enough to match in place, the nested ones went to a helper
    assert estimated_work(re.compile(r"shop\..*"), everything) < estimated_work(re.compile(r"(ab|ba)+x"), everything)
    workers = list(ns_plain.nameserver.matcher._all)
    assert workers, "no pattern was matched in a helper process"
    ns_plain.shutdown()
    assert all(w.proc.poll() is not None for w in workers), "a regex helper process outlived the name server"


def test_regex_errors_are_naming_errors(ns_plain):
    with proxy(ns_plain) as ns:
        with pytest.raises(errors.NamingError, match="invalid regex"):
            ns.list(regex="(")
        with pytest.raises(errors.NamingError, match=r"regex too long: 4097 characters.*NS_MAX_NAME_LENGTH"):
            ns.list(regex="a" * 4097)
        with pytest.raises(errors.NamingError, match="nested too deeply"):
            ns.list(regex="(" * 1000 + "a" + ")" * 1000)
        assert ns.ping() is None


@pytest.mark.timeout(60)
def test_busy_helpers_give_a_clear_error_and_recover():
    matcher = RegexMatcher(timeout=1.0, workers=1)
    try:
        names = ["a" * 34 + "!"]
        results = []

        def hog():
            try:
                matcher.select(re.compile(EVIL), names)
            except errors.NamingError as exc:
                results.append(str(exc))

        threads = [threading.Thread(target=hog) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(results) == 3 and all("NS_REGEX_TIMEOUT" in r for r in results)
        assert matcher.select(re.compile(r"(a|b)+!"), names + ["b!", "c!"]) == names + ["b!"]
    finally:
        matcher.close()
    assert all(w.proc.poll() is not None for w in matcher._all) and not matcher._all


# ---- item 8: the write key ---------------------------------------------------------------------

def test_a_keyed_name_server_stays_open_for_reading(ns_keyed):
    ns_keyed.storage.put("shop.cart", URI, frozenset({"v2"}))  # the name server's own process needs no key
    with proxy(ns_keyed) as ns:
        assert ns.ping() is None
        assert ns.count() == 2
        assert str(ns.lookup("shop.cart")) == URI
        assert ns.list(prefix="shop.") == {"shop.cart": URI}
        assert ns.yplookup(meta_all=["v2"], return_metadata=False) == {"shop.cart": URI}
    assert str(ember.resolve(f"PYRONAME:shop.cart@127.0.0.1:{ns_keyed.daemon.port}")) == URI


def test_a_keyed_name_server_refuses_writes_without_the_key(ns_keyed):
    ns_keyed.storage.put("shop.cart", URI, frozenset())
    with proxy(ns_keyed) as ns:
        for call in (lambda: ns.register("evil", URI), lambda: ns.remove("shop.cart"),
                     lambda: ns.remove(prefix="shop"), lambda: ns.set_metadata("shop.cart", ["x"]),
                     lambda: ns.register("evil", URI, replicated=True), lambda: ns.grant_lease(10),
                     lambda: ns.renew_lease("x"), lambda: ns.revoke_lease("x")):
            with pytest.raises(errors.NamingError, match=r"needs the name server's write key.*NS_KEY"):
                call()
    with proxy(ns_keyed, key="wrong") as ns:
        with pytest.raises(errors.NamingError, match="register refused: the name server write key .* is wrong"):
            ns.register("evil", URI)
    with ember.Proxy(ns_keyed.uri) as ns:
        ns._handshake = {"ns_key": 12345}
        with pytest.raises(errors.NamingError, match="is wrong"):
            ns.remove("shop.cart")
    assert ns_keyed.nameserver.list() == {NAMESERVER_NAME: str(ns_keyed.uri), "shop.cart": URI}


def test_the_key_opens_writes_and_survives_reconnects(ns_keyed):
    with proxy(ns_keyed, key=KEY) as ns:
        ns.register("shop.cart", URI, metadata=["v1"])
        ns.set_metadata("shop.cart", ["v2"])
        ns._release()  # the next call connects again, presenting the key again
        ns.register("shop.till", URI)
        assert ns.remove(prefix="shop.") == 2
    with ember.config.override(NS_KEY=KEY), proxy(ns_keyed) as ns:  # the config item as the default key
        ns.register("shop.cart", URI)


def test_pyro5_clients_read_freely_and_write_with_the_key_in_the_handshake(ns_keyed):
    with Pyro5.api.locate_ns("127.0.0.1", ns_keyed.daemon.port) as ns:
        assert ns.count() == 1
        with pytest.raises(Pyro5.errors.NamingError, match="write key"):
            ns.register("evil", URI)
    with Pyro5.api.Proxy(str(ns_keyed.uri)) as ns:
        ns._pyroHandshake = {"ns_key": KEY}
        ns.register("pyro5.thing", URI)
        assert ns.remove("pyro5.thing") == 1


def test_alocate_ns_presents_the_key(ns_keyed):
    async def main():
        ns = await naming.alocate_ns("127.0.0.1", ns_keyed.daemon.port, key=KEY)
        try:
            await ns.register("async.thing", URI)
            return await ns.remove("async.thing")
        finally:
            await ns._release()

    assert asyncio.run(asyncio.wait_for(main(), 20)) == 1


def test_daemons_publish_with_the_configured_key(ns_keyed, make_daemon):
    with ember.config.override(NS_KEY=KEY):
        daemon = make_daemon(ns=ns_keyed.uri)
    uri = daemon.register(Calc, "calc", ns_name="calc.keyed", metadata={"math"})
    assert str(ns_keyed.nameserver.lookup("calc.keyed")) == str(uri)
    daemon.unregister("calc")
    assert "calc.keyed" not in ns_keyed.nameserver.list()
    keyless = make_daemon(ns=ns_keyed.uri)
    with pytest.raises(errors.NamingError, match="write key"):
        keyless.register(Calc, "calc2", ns_name="calc.unkeyed")


def nsc(service, *args, env=ENV):
    return subprocess.run([sys.executable, "-m", "ember.nsc", "-n", "127.0.0.1", "-p", str(service.daemon.port),
                           *args], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.timeout(60)
def test_nsc_key_options(ns_keyed, tmp_path):
    r = nsc(ns_keyed, "register", "shop.cart", URI)
    assert r.returncode == 1 and "write key" in r.stderr
    r = nsc(ns_keyed, "--key", KEY, "register", "shop.cart", URI)
    assert r.returncode == 0, r.stderr
    key_file = tmp_path / "ns.key"
    key_file.write_text(KEY + "\n")
    r = nsc(ns_keyed, "--key-file", str(key_file), "setmeta", "shop.cart", "v2")
    assert r.returncode == 0, r.stderr
    r = nsc(ns_keyed, "remove", "shop.cart", env=dict(ENV, PYRO_NS_KEY=KEY))
    assert r.returncode == 0, r.stderr
    r = nsc(ns_keyed, "list")
    assert r.returncode == 0 and "1 name(s)" in r.stdout
    r = nsc(ns_keyed, "--key", KEY, "--key-file", str(key_file), "list")
    assert r.returncode == 1 and "not both" in r.stderr


@pytest.mark.timeout(60)
def test_ember_ns_key_file_and_config_hides_the_key(tmp_path):
    key_file = tmp_path / "ns.key"
    key_file.write_text(KEY + "\n")
    proc, uri, lines = start_process(tmp_path, "--key-file", str(key_file))
    try:
        assert any("write key required" in line for line in lines), lines
        with ember.Proxy(uri) as ns:
            with pytest.raises(errors.NamingError, match="write key"):
                ns.register("x", URI)
        with ember.Proxy(uri) as ns:
            ns._handshake = {"ns_key": KEY}  # before the first call: the handshake is sent when connecting
            ns.register("x", URI)
            assert ns.count() == 2
    finally:
        stop_process(proc)
    out = subprocess.run([sys.executable, "-m", "ember.cli", "config"], capture_output=True, text=True,
                         env=dict(ENV, PYRO_NS_KEY=KEY), check=True).stdout
    assert KEY not in out and re.search(r"NS_KEY\s+= '\(hidden\)'", out)


def test_key_config_validation():
    with pytest.raises(errors.ConfigError, match="NS_KEY"):
        Config(use_environment=False).NS_KEY = "  "
    with pytest.raises(ValueError, match="non-empty"):
        naming.NameServer(key="")


# ---- item 9: limits ---------------------------------------------------------------------------

@pytest.fixture
def ns_small():
    service = start(NS_MAX_NAMES=4, NS_MAX_NAME_LENGTH=20, NS_MAX_URI_LENGTH=40, NS_MAX_METADATA=3,
                    NS_MAX_TAG_LENGTH=8)
    yield service
    service.shutdown()


def test_names_limit(ns_small):
    with proxy(ns_small) as ns:
        for i in range(3):  # with the name server's own entry: 4
            ns.register(f"n{i}", URI)
        with pytest.raises(errors.NamingError, match=r"name server full: it holds 4 names.*NS_MAX_NAMES"):
            ns.register("n3", URI)
        with pytest.raises(errors.NamingError, match="NS_MAX_NAMES"):
            ns.register("n3", URI, safe=True)
        ns.register("n0", "PYRO:other@127.0.0.1:1")  # replacing a name adds none
        assert ns.remove("n1") == 1
        ns.register("n3", URI)
        assert ns.count() == 4


def test_length_and_metadata_limits(ns_small):
    with proxy(ns_small) as ns:
        with pytest.raises(errors.NamingError, match=r"name too long: 21 characters.*at most 20.*NS_MAX_NAME_LENGTH"):
            ns.register("x" * 21, URI)
        ns.register("x" * 20, URI)
        with pytest.raises(errors.NamingError, match=r"uri too long: 41 characters.*NS_MAX_URI_LENGTH"):
            ns.register("y", "PYRO:" + "o" * 21 + "@127.0.0.1:5001")
        with pytest.raises(errors.NamingError, match=r"too many metadata tags: 4.*at most 3 per name.*NS_MAX_METADATA"):
            ns.register("y", URI, metadata=["a", "b", "c", "d"])
        with pytest.raises(errors.NamingError, match=r"metadata tag too long: 9 characters.*NS_MAX_TAG_LENGTH"):
            ns.register("y", URI, metadata=["123456789"])
        ns.register("y", URI, metadata=["a", "b", "12345678"])
        with pytest.raises(errors.NamingError, match="NS_MAX_METADATA"):
            ns.set_metadata("y", ["a", "b", "c", "d"])
        with pytest.raises(errors.NamingError, match="NS_MAX_TAG_LENGTH"):
            ns.set_metadata("y", ["123456789"])
        assert set(ns.lookup("y", return_metadata=True)[1]) == {"a", "b", "12345678"}
        assert ns.count() == 3


def test_zero_means_no_limit():
    service = start(NS_MAX_NAMES=0, NS_MAX_NAME_LENGTH=0, NS_MAX_METADATA=0, NS_MAX_TAG_LENGTH=0)
    try:
        with proxy(service) as ns:
            ns.register("n" * 5000, URI, metadata=[str(i) for i in range(500)] + ["t" * 1000])
            assert len(ns.lookup("n" * 5000, return_metadata=True)[1]) == 501
    finally:
        service.shutdown()


def test_default_limits_are_the_documented_ones():
    cfg = Config(use_environment=False)
    assert (cfg.NS_MAX_NAMES, cfg.NS_MAX_NAME_LENGTH, cfg.NS_MAX_URI_LENGTH, cfg.NS_MAX_METADATA,
            cfg.NS_MAX_TAG_LENGTH, cfg.NS_REGEX_TIMEOUT, cfg.NS_KEY) == (100000, 1024, 4096, 64, 256, 1.0, None)


def test_ported_pyro5_programs_present_the_configured_key(ns_keyed):
    with compat.locate_ns("127.0.0.1", ns_keyed.daemon.port) as ns:
        with pytest.raises(errors.NamingError, match="write key"):
            ns.register("ported", URI)
    with ember.config.override(NS_KEY=KEY), compat.locate_ns("127.0.0.1", ns_keyed.daemon.port) as ns:
        ns.register("ported", URI)
        assert ns.remove("ported") == 1


def test_key_and_limits_on_every_server_type(servertype):
    service = start(servertype, NS_KEY=KEY, NS_MAX_NAME_LENGTH=10)
    try:
        with proxy(service) as reader, proxy(service, key=KEY) as writer:
            with pytest.raises(errors.NamingError, match="write key"):
                reader.register("x", URI)
            writer.register("x", URI)
            with pytest.raises(errors.NamingError, match="NS_MAX_NAME_LENGTH"):
                writer.register("y" * 11, URI)
            assert str(reader.lookup("x")) == URI
            assert reader.list(regex=r"(x|xy)+$") == {"x": URI}  # through a helper process
            with pytest.raises(errors.NamingError, match="write key"):
                reader.remove(regex="x")
            assert writer.remove(regex="x") == 1
    finally:
        service.shutdown()


def test_oneway_and_batched_writes_need_the_key_too(servertype, caplog):
    caplog.set_level(logging.WARNING)
    service = start(servertype, NS_KEY=KEY)
    try:
        with ember.Proxy(service.uri) as ns:
            ns._oneway.update({"register", "remove"})
            ns.register("oneway.evil", URI)  # the server reports the refusal in its log; nothing is registered
            service.storage.put("victim", URI, frozenset())
            ns.remove("victim")
        with ember.Proxy(service.uri) as ns:
            batch = ember.BatchProxy(ns)
            batch.lookup("victim")
            batch.register("batch.evil", URI)
            results = batch()
            assert str(next(results)) == URI
            with pytest.raises(errors.NamingError, match="write key"):
                next(results)
            batch = ember.BatchProxy(ns)
            batch.register("batch.evil", URI)
            batch(oneway=True)
            assert ns.ping() is None  # after the oneway batch and the oneway calls were handled
        with proxy(service, key=KEY) as writer:  # a keyed oneway call does register
            writer._oneway.add("register")
            writer.register("oneway.good", URI)
            assert writer.ping() is None
        # the three refused oneway calls (register, remove, the batch) were handled: their refusals are logged
        assert wait_for(lambda: sum("needs the name server's write key" in r.getMessage()
                                    for r in caplog.records) >= 3, 10), [r.getMessage() for r in caplog.records]
        assert wait_for(lambda: "oneway.good" in service.nameserver.list(), 10)
        names = set(service.nameserver.list())
        assert "victim" in names and not names & {"oneway.evil", "batch.evil"}
    finally:
        service.shutdown()


