"""``ember ns``, ``ember nsc``, ``ember echo -n/-N`` and ``ember demo``, run as subprocesses."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

import ember
from ember import naming

from .services import Calc

ENV = dict(os.environ, PYRO_BROADCAST_ADDRS="127.255.255.255")


def run(*args, stdin=None, env=ENV):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60, input=stdin, env=env)


def start(*args, env=ENV):
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)


def read_until(proc, pattern, timeout=20):
    """Lines of the process's stdout until one matches; returns the match."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            return m
    proc.kill()
    raise AssertionError(f"no line matching {pattern!r} in output: {seen!r}; stderr: {proc.stderr.read()!r}")


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return proc.returncode, out, err


@pytest.fixture
def nameserver():
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as service:
        yield service


def nsc(service, *args, stdin=None):
    return run("-m", "ember.nsc", "-n", "127.0.0.1", "-p", str(service.daemon.port), *args, stdin=stdin)


# ---- nsc ------------------------------------------------------------------------------------

def test_nsc_commands(nameserver):
    ns = nameserver.nameserver
    r = nsc(nameserver, "ping")
    assert r.returncode == 0 and "ping ok" in r.stdout
    r = nsc(nameserver, "register", "shop.cart", "PYRO:cart@127.0.0.1:5001")
    assert r.returncode == 0, r.stderr
    assert str(ns.lookup("shop.cart")) == "PYRO:cart@127.0.0.1:5001"
    r = nsc(nameserver, "register", "shop.cart", "PYRO:other@127.0.0.1:5001")
    assert r.returncode == 1 and "name already registered: shop.cart" in r.stderr
    r = nsc(nameserver, "setmeta", "shop.cart", "red", "big")
    assert r.returncode == 0 and "red" in r.stdout
    assert ns.lookup("shop.cart", True)[1] == {"red", "big"}
    ns.register("shop.till", "PYRO:till@127.0.0.1:5002", metadata=["red"])
    ns.register("office.desk", "PYRO:desk@127.0.0.1:5003")
    r = nsc(nameserver, "list")
    assert r.returncode == 0
    assert "shop.cart --> PYRO:cart@127.0.0.1:5001" in r.stdout and "metadata: big, red" in r.stdout
    assert "Pyro.NameServer" in r.stdout and "4 name(s)" in r.stdout
    r = nsc(nameserver, "list", "shop.")
    assert "2 name(s)" in r.stdout and "office" not in r.stdout
    r = nsc(nameserver, "listmatching", r".*\.t")
    assert "shop.till" in r.stdout and "shop.cart" not in r.stdout
    r = nsc(nameserver, "lookup", "shop.till")
    assert r.returncode == 0 and "shop.till --> PYRO:till@127.0.0.1:5002" in r.stdout and "metadata: red" in r.stdout
    r = nsc(nameserver, "yplookup_all", "red", "big")
    assert "shop.cart" in r.stdout and "shop.till" not in r.stdout
    r = nsc(nameserver, "yplookup_any", "red", "big")
    assert "shop.cart" in r.stdout and "shop.till" in r.stdout
    r = nsc(nameserver, "setmeta", "shop.cart")
    assert r.returncode == 0 and "cleared" in r.stdout
    r = nsc(nameserver, "remove", "office.desk")
    assert r.returncode == 0 and "Removed office.desk" in r.stdout
    r = nsc(nameserver, "remove", "office.desk")
    assert r.returncode == 1 and "nothing removed" in r.stderr
    r = nsc(nameserver, "removematching", "shop", stdin="n\n")
    assert r.returncode == 0 and "Nothing removed" in r.stdout and ns.count() == 3
    r = nsc(nameserver, "removematching", "shop", stdin="y\n")
    assert r.returncode == 0 and "Removed 2 name(s)" in r.stdout and ns.count() == 1


def test_nsc_errors_exit_nonzero(nameserver):
    for args, message in [
        (("lookup", "nobody"), "unknown name: nobody"),
        (("listmatching", "["), "invalid regex"),
        (("register", "Pyro.NameServer", "PYRO:x@127.0.0.1:1"), "cannot be replaced"),
        (("register", "good", "not-a-uri"), "invalid uri"),
        (("lookup",), "usage: lookup name"),
    ]:
        r = nsc(nameserver, *args)
        assert r.returncode == 1, (args, r.stdout)
        assert message in r.stderr, (args, r.stderr)
    r = run("-m", "ember.nsc", "-n", "127.0.0.1", "-p", str(_free_port()), "ping")
    assert r.returncode == 1 and "cannot locate the name server" in r.stderr
    r = run("-m", "ember.nsc", "-n", "127.0.0.1", "bogus")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_nsc_finds_the_name_server_by_broadcast_and_unix_socket(tmp_path):
    sock = str(tmp_path / "ns.sock")
    with naming.start_ns(unixsocket=sock) as service:
        r = run("-m", "ember.cli", "nsc", "-u", sock, "-v", "ping")
        assert r.returncode == 0 and "ping ok" in r.stdout and sock in r.stdout
        assert service.nameserver.count() == 1
    with naming.start_ns("127.0.0.1", 0, bcport=0) as service:
        env = dict(ENV, PYRO_NS_HOST="127.0.0.1", PYRO_NS_PORT=str(_free_port()))
        r = run("-m", "ember.nsc", "-p", str(service.broadcast.port), "-v", "list", env=env)
        assert r.returncode == 0, r.stderr
        assert str(service.uri) in r.stdout


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- ns ---------------------------------------------------------------------------------------

def test_ember_ns_runs_until_sigterm_and_writes_its_uri_file(tmp_path):
    uri_file = tmp_path / "ns.uri"
    proc = start("-m", "ember.cli", "ns", "-n", "127.0.0.1", "-p", "0", "--bcport", "0", "--uri-file", str(uri_file))
    uri = read_until(proc, r"URI = (\S+)").group(1)
    try:
        assert uri_file.read_text().strip() == uri
        with ember.Proxy(uri) as ns:
            ns.register("from.test", "PYRO:x@127.0.0.1:1")
            assert ns.count() == 2
        with ember.locate_ns(broadcast=False, uri_file=uri_file) as ns:
            assert "from.test" in ns.list()
    finally:
        code, out, err = stop(proc)
    assert code == 0, err
    assert "Name server stopped." in out
    assert not uri_file.exists()


def test_sqlite_storage_survives_kill_9(tmp_path):
    db = tmp_path / "ns.sqlite"
    args = ("-m", "ember.naming", "-n", "127.0.0.1", "-p", "0", "-x", "-s", f"sql:{db}")
    proc = start(*args)
    try:
        uri = read_until(proc, r"URI = (\S+)").group(1)
        with ember.Proxy(uri) as ns:
            for i in range(20):
                ns.register(f"kept.{i}", f"PYRO:o{i}@127.0.0.1:{1000 + i}", metadata=[f"n{i}"])
    finally:
        proc.kill()  # SIGKILL: no clean shutdown
        proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    proc = start(*args)
    try:
        uri = read_until(proc, r"URI = (\S+)").group(1)
        with ember.Proxy(uri) as ns:
            names = ns.list(prefix="kept.", return_metadata=True)
            assert len(names) == 20
            assert names["kept.7"][0] == "PYRO:o7@127.0.0.1:1007" and set(names["kept.7"][1]) == {"n7"}
    finally:
        stop(proc)


def test_ember_ns_startup_errors(tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 1000)
    r = run("-m", "ember.cli", "ns", "-n", "127.0.0.1", "-p", "0", "-x", "-s", f"sql:{bad}")
    assert r.returncode == 1 and "not a usable SQLite database" in r.stderr and str(bad) in r.stderr
    with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as service:
        r = run("-m", "ember.naming", "-n", "127.0.0.1", "-p", str(service.daemon.port), "-x")
        assert r.returncode == 1 and "address already in use" in r.stderr


# ---- echo -n / -N and the demo -----------------------------------------------------------------

def test_echo_server_with_its_own_name_server():
    env = dict(ENV, PYRO_NS_PORT="0", PYRO_NS_BCPORT="0")
    proc = start("-m", "ember.cli", "echo", "-N", env=env)
    try:
        ns_uri = read_until(proc, r"URI = (\S+)").group(1)
        read_until(proc, r"registered in the name server")
        nsloc = ember.URI(ns_uri).location
        with ember.Proxy(f"PYRONAME:test.echoserver@{nsloc}") as echo:
            assert echo.echo("hi there") == "hi there"
    finally:
        code, out, err = stop(proc)
    assert code == 0, err


def test_echo_server_registers_in_a_running_name_server(nameserver):
    env = dict(ENV, PYRO_NS_HOST="127.0.0.1", PYRO_NS_PORT=str(nameserver.daemon.port))
    proc = start("-m", "ember.cli", "echo", "-n", env=env)
    try:
        read_until(proc, r"uri = ")
        assert "test.echoserver" in nameserver.nameserver.list()
    finally:
        code, _out, err = stop(proc)
    assert code == 0, err
    assert "test.echoserver" not in nameserver.nameserver.list()


def test_python_m_ember_is_the_ember_command():
    # issue 14.12: "python -m ember" said "'ember' is a package and cannot be directly executed"
    version = run("-m", "ember", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"ember {ember.__version__}"
    helped = run("-m", "ember", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: python -m ember")
    for command in ("ns", "nsc", "echo", "config", "bench", "demo"):
        assert command in helped.stdout
    bare = run("-m", "ember")
    assert bare.returncode == 2 and "usage: python -m ember" in bare.stdout
    config = run("-m", "ember", "config")
    assert config.returncode == 0 and "SERIALIZER" in config.stdout


def test_ember_demo_runs_and_exits_zero():
    r = run("-m", "ember.cli", "demo")
    assert r.returncode == 0, r.stderr
    for text in ("Started a name server", "by UDP broadcast", "sensor.read(3) = 21.5", "caught ValueError",
                 "oneway", "results: [20.5, 21.0, 21.5]", "samples(4) -> [20.0, 20.25, 20.5, 20.75]",
                 "PYROMETA", "Demo finished."):
        assert text in r.stdout
    assert r.stderr == ""


def test_calc_registered_through_cli_is_callable_by_name(nameserver, make_daemon):
    daemon = make_daemon()
    uri = daemon.register(Calc, "calc")
    r = nsc(nameserver, "register", "calc.cli", str(uri))
    assert r.returncode == 0
    with ember.Proxy(f"PYRONAME:calc.cli@{nameserver.daemon.location}") as p:
        assert p.add(20, 22) == 42


# ---- a real broadcast on a private network (two network namespaces joined by a veth pair) ------

def _netns_available():
    import shutil

    if os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"ember-probe-{os.getpid()}"
    ok = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return ok


@pytest.fixture
def two_namespaces():
    """Namespaces A (10.213.0.1/24) and B (10.213.0.2/24) on one veth link; removed afterwards."""
    if not _netns_available():
        pytest.skip("needs root and 'ip netns' (network namespaces) to broadcast on a private network")
    tag = os.getpid() % 100000
    a, b = f"ember-a-{tag}", f"ember-b-{tag}"
    va, vb = f"emba{tag}", f"embb{tag}"
    commands = [
        ["ip", "netns", "add", a], ["ip", "netns", "add", b],
        ["ip", "link", "add", va, "type", "veth", "peer", "name", vb],
        ["ip", "link", "set", va, "netns", a], ["ip", "link", "set", vb, "netns", b],
        ["ip", "-n", a, "addr", "add", "10.213.0.1/24", "brd", "+", "dev", va],
        ["ip", "-n", b, "addr", "add", "10.213.0.2/24", "brd", "+", "dev", vb],
        ["ip", "-n", a, "link", "set", va, "up"], ["ip", "-n", b, "link", "set", vb, "up"],
        ["ip", "-n", a, "link", "set", "lo", "up"], ["ip", "-n", b, "link", "set", "lo", "up"],
    ]
    try:
        for cmd in commands:
            subprocess.run(cmd, check=True, capture_output=True)
        yield a, b
    finally:
        subprocess.run(["ip", "netns", "del", a], capture_output=True)
        subprocess.run(["ip", "netns", "del", b], capture_output=True)


LOCATE_BY_BROADCAST = """
import ember
with ember.locate_ns() as ns:
    print("found", ns._pyroUri, ns.count())
"""


def test_broadcast_reaches_a_wildcard_bound_name_server_in_another_namespace(two_namespaces):
    a, b = two_namespaces
    proc = subprocess.Popen(["ip", "netns", "exec", a, sys.executable, "-m", "ember.naming", "-n", "0.0.0.0",
                             "-p", "9090", "--bcport", "9091"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=ENV)
    try:
        read_until(proc, r"broadcast responder on udp 0\.0\.0\.0:9091")
        env = dict(ENV, PYRO_BROADCAST_ADDRS="10.213.0.255")
        r = subprocess.run(["ip", "netns", "exec", b, sys.executable, "-c", LOCATE_BY_BROADCAST],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stderr
        # the answer names the address of A's interface that B can reach, not 0.0.0.0
        assert r.stdout.strip() == "found PYRO:Pyro.NameServer@10.213.0.1:9090 1"
    finally:
        code, _out, err = stop(proc)
    assert code == 0, err
