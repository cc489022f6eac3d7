"""Issue 13 audit of TLS and mutual TLS, on every server type: bad client certificates, a
client that stops in the middle of its handshake, renegotiation, and which CAs a client
trusts. Each test attacks a real daemon over a socket and then checks a good client is
still served."""

import datetime
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading

import pytest
import trustme

import ember
from ember import errors

IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca, other_ca = trustme.CA(), trustme.CA()
    certs = {
        "server": ca.issue_cert("127.0.0.1", "localhost"),
        "client": ca.issue_cert("client.example", common_name="good client"),
        "expired_client": ca.issue_cert("client.example", common_name="expired client",
                                        not_before=datetime.datetime(2020, 1, 1),
                                        not_after=datetime.datetime(2020, 2, 1)),
        "stranger_client": other_ca.issue_cert("client.example", common_name="stranger"),
        "impostor_server": other_ca.issue_cert("127.0.0.1", "localhost"),
        "ip_only_server": ca.issue_cert("127.0.0.1"),
    }
    d = tmp_path_factory.mktemp("pki")
    files = {"ca": str(d / "ca.pem"), "other_ca": str(d / "other_ca.pem")}
    ca.cert_pem.write_to_path(files["ca"])
    other_ca.cert_pem.write_to_path(files["other_ca"])
    for name, cert in certs.items():
        files[name] = str(d / f"{name}.pem")
        cert.private_key_and_cert_chain_pem.write_to_path(files[name])
    return files


def _server_ctx(pki, mutual=False):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki["server"])
    if mutual:
        ctx.load_verify_locations(pki["ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def _client_ctx(pki, cert=None):
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if cert is not None:
        ctx.load_cert_chain(pki[cert])
    return ctx


@ember.expose
class Peer:
    def add(self, a, b):
        return a + b

    def subject(self):
        cert = ember.current_context.peer_certificate
        return None if cert is None else dict(x[0] for x in cert["subject"])


def _daemon(make_daemon, servertype, pki, mutual=False, **items):
    cfg = ember.config.copy()
    cfg.update(items)
    daemon = make_daemon(servertype=servertype, ssl_context=_server_ctx(pki, mutual), config=cfg)
    return daemon, daemon.register(Peer(), "peer")


# ---- mutual TLS: bad client certificates ---------------------------------------------------

@pytest.mark.parametrize("cert", [None, "stranger_client", "expired_client"])
def test_mutual_tls_refuses_bad_client_certificates(make_daemon, servertype, pki, cert, caplog):
    daemon, uri = _daemon(make_daemon, servertype, pki, mutual=True)
    with caplog.at_level(logging.DEBUG, "ember"):
        for _ in range(3):
            with pytest.raises(errors.CommunicationError):
                with ember.Proxy(uri, ssl_context=_client_ctx(pki, cert)) as p:
                    p.subject()
    with ember.Proxy(uri, ssl_context=_client_ctx(pki, "client")) as p:
        assert p.subject()["commonName"] == "good client"
        assert p.add(1, 2) == 3
    assert not any(r.levelno >= logging.ERROR for r in caplog.records), [r.getMessage() for r in caplog.records]


# ---- a client that stops in the middle of its TLS handshake ---------------------------------

CLIENT_HELLO_START = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"  # a record header and the hello's start


@pytest.mark.timeout(60)
def test_stalled_tls_handshakes_are_closed_and_others_served(make_daemon, servertype, pki):
    daemon, uri = _daemon(make_daemon, servertype, pki, HANDSHAKE_TIMEOUT=1.0)
    stalled = []
    for partial in (b"", CLIENT_HELLO_START, b"", CLIENT_HELLO_START):
        s = socket.create_connection((daemon.host, daemon.port), timeout=30)
        if partial:
            s.sendall(partial)
        stalled.append(s)
    gone = socket.create_connection((daemon.host, daemon.port))
    gone.sendall(CLIENT_HELLO_START)
    gone.close()  # leaves in the middle of its hello
    try:
        with ember.Proxy(uri, ssl_context=_client_ctx(pki)) as p:
            assert p.add(2, 3) == 5  # served while the others stall
        for s in stalled:  # the daemon closes each stalled connection (HANDSHAKE_TIMEOUT)
            assert s.recv(100) == b""
    finally:
        for s in stalled:
            s.close()
    with ember.Proxy(uri, ssl_context=_client_ctx(pki)) as p:
        assert p.add(3, 4) == 7


# ---- renegotiation --------------------------------------------------------------------------

def _openssl():
    path = shutil.which("openssl")
    if path is None:
        if IN_CI:
            pytest.fail("the openssl command line tool is needed for this test (apt-get install openssl)")
        pytest.skip("no openssl command line tool")
    return path


@pytest.mark.timeout(60)
def test_tls12_renegotiation_refused(make_daemon, servertype, pki):
    openssl = _openssl()
    daemon, uri = _daemon(make_daemon, servertype, pki)
    assert daemon.ssl_context.options & ssl.OP_NO_RENEGOTIATION  # set on the application's context too
    # s_client's "R" command asks for a renegotiation once its handshake is done
    proc = subprocess.Popen([openssl, "s_client", "-connect", f"127.0.0.1:{daemon.port}", "-tls1_2",
                             "-CAfile", pki["ca"]],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killer = threading.Timer(20, proc.kill)  # a renegotiation that succeeded would leave it waiting
    killer.start()
    try:
        proc.stdin.write(b"R\n")
        proc.stdin.flush()
        out = proc.stdout.read().decode(errors="replace")
    finally:
        killer.cancel()
        proc.stdin.close()
        proc.wait()
        proc.stdout.close()
    assert "RENEGOTIATING" in out, out
    assert "no renegotiation" in out, out  # the daemon's alert
    with ember.Proxy(uri, ssl_context=_client_ctx(pki)) as p:
        assert p.add(1, 1) == 2


def test_config_server_context_refuses_renegotiation(pki):
    cfg = ember.config.copy()
    cfg.update(dict(SSL=True, SSL_SERVERCERT=pki["server"]))
    with ember.Daemon(config=cfg) as daemon:
        assert daemon.ssl_context.options & ssl.OP_NO_RENEGOTIATION


# ---- which CAs a client trusts ---------------------------------------------------------------

def test_client_with_ssl_cacerts_trusts_only_that_ca(make_daemon, pki, monkeypatch):
    """A daemon with a certificate from a CA of the system store (played by other_ca, via
    SSL_CERT_FILE) must not be trusted by a client told SSL_CACERTS=ca."""
    monkeypatch.setenv("SSL_CERT_FILE", pki["other_ca"])
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(pki["impostor_server"])
    uri = make_daemon(ssl_context=sctx).register(Peer(), "peer")
    # positive control: a context that trusts the system store does trust the impostor
    with ember.Proxy(uri, ssl_context=ssl.create_default_context()) as p:
        assert p.add(1, 1) == 2
    with ember.config.override(SSL=True, SSL_CACERTS=pki["ca"]):
        with pytest.raises(errors.CommunicationError, match="not accepted|certificate verify failed"):
            ember.Proxy(uri)._bind()


def test_client_with_ssl_cacerts_still_verifies_host_names(make_daemon, pki):
    sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    sctx.load_cert_chain(pki["ip_only_server"])  # valid for 127.0.0.1, not for "localhost"
    daemon = make_daemon(ssl_context=sctx)
    uri = daemon.register(Peer(), "peer")
    with ember.config.override(SSL=True, SSL_CACERTS=pki["ca"]):
        with ember.Proxy(uri) as p:
            assert p.add(1, 2) == 3
        with pytest.raises(errors.CommunicationError, match="mismatch|doesn't match|not valid for"):
            ember.Proxy(f"PYRO:peer@localhost:{daemon.port}")._bind()
