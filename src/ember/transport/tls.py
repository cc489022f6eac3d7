"""TLS: building ``ssl.SSLContext`` objects from config items, and TLS handshakes.

The daemon side needs a certificate and key (``SSL_SERVERCERT``/``SSL_SERVERKEY``); with
``SSL_REQUIRECLIENTCERT`` it also demands a client certificate signed by a CA in
``SSL_CACERTS`` (mutual TLS). The client side verifies the daemon's certificate against
``SSL_CACERTS`` (or the system's CAs when that is empty), including the host name, and
presents ``SSL_CLIENTCERT``/``SSL_CLIENTKEY`` when set. Any ``Daemon``/``Proxy`` also takes
a ready ``ssl_context`` instead.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
from typing import Any

from ..errors import ConnectionClosedError, SecurityError
from .errors import describe_tls_failure, tls_error

__all__ = ["server_context", "client_context", "describe_failure", "wrap_client", "peer_alert", "requires_client_cert",
           "server_handshake", "refuse_renegotiation"]

_cache: dict[tuple, ssl.SSLContext] = {}
_cache_lock = threading.Lock()


def _load_chain(ctx: ssl.SSLContext, certfile: str, keyfile: str, password: str, who: str) -> None:
    try:
        ctx.load_cert_chain(certfile, keyfile or None, password or None)
    except (OSError, ssl.SSLError) as exc:
        raise SecurityError(f"cannot load the {who} certificate {certfile!r} / key {keyfile or certfile!r}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None


def _load_cas(ctx: ssl.SSLContext, cacerts: str) -> None:
    try:
        if os.path.isdir(cacerts):
            ctx.load_verify_locations(capath=cacerts)
        else:
            ctx.load_verify_locations(cafile=cacerts)
    except (OSError, ssl.SSLError) as exc:
        raise SecurityError(f"cannot load CA certificates from {cacerts!r}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None


def server_context(cfg: Any, certfile: str | None = None, keyfile: str | None = None, password: str | None = None,
                   cacerts: str | None = None, require_client_cert: bool | None = None) -> ssl.SSLContext:
    """A daemon-side context from arguments or, where not given, the config's ``SSL_*`` items."""
    certfile = certfile or cfg.SSL_SERVERCERT
    if not certfile:
        raise SecurityError("TLS is on (SSL) but the daemon has no certificate: set SSL_SERVERCERT and "
                            "SSL_SERVERKEY, or pass ssl_context=")
    # Purpose.CLIENT_AUTH loads no system CAs: client certificates are checked against
    # SSL_CACERTS alone
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    refuse_renegotiation(ctx)
    _load_chain(ctx, certfile, keyfile or cfg.SSL_SERVERKEY, password or cfg.SSL_SERVERKEYPASSWD, "server")
    require = cfg.SSL_REQUIRECLIENTCERT if require_client_cert is None else require_client_cert
    cacerts = cacerts or cfg.SSL_CACERTS
    if require:
        if not cacerts:
            raise SecurityError("SSL_REQUIRECLIENTCERT needs SSL_CACERTS: the CA that signs client certificates")
        _load_cas(ctx, cacerts)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(cfg: Any, certfile: str | None = None, keyfile: str | None = None, password: str | None = None,
                   cacerts: str | None = None) -> ssl.SSLContext:
    """A client-side context from arguments or the config's ``SSL_*`` items (cached per settings)."""
    key = (certfile or cfg.SSL_CLIENTCERT, keyfile or cfg.SSL_CLIENTKEY, password or cfg.SSL_CLIENTKEYPASSWD,
           cacerts or cfg.SSL_CACERTS)
    with _cache_lock:
        ctx = _cache.get(key)
        if ctx is not None:
            return ctx
    cert, keyf, pw, cas = key
    if cas:
        # SSL_CACERTS given: trust that CA alone (as Pyro5 does), not also every CA of the
        # system store, any of which could issue a certificate for the daemon's host name
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        _load_cas(ctx, cas)
    else:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        _load_chain(ctx, cert, keyf, pw, "client")
    with _cache_lock:
        _cache[key] = ctx
    return ctx


def refuse_renegotiation(ctx: ssl.SSLContext) -> None:
    """Refuse TLS 1.2 renegotiation on a daemon's context: a client could otherwise make the
    daemon repeat the costly handshake at will (OpenSSL 3 already refuses client-initiated
    renegotiation; OpenSSL 1.1.1 allows it). TLS 1.3 has no renegotiation."""
    ctx.options |= ssl.OP_NO_RENEGOTIATION


describe_failure = describe_tls_failure


def wrap_client(ctx: ssl.SSLContext, sock: Any, host: str | None, location: object) -> ssl.SSLSocket:
    """Do the client side of the TLS handshake on a connected socket (closing it on failure)."""
    try:
        return ctx.wrap_socket(sock, server_hostname=host if ctx.check_hostname else None)
    except OSError as exc:
        with contextlib.suppress(OSError):
            sock.close()
        raise tls_error(exc, location) from None


def peer_alert(sock: Any) -> str:
    """After a TLS connection broke during the handshake: the peer's alert, if one arrived."""
    try:
        sock.settimeout(0.5)
        sock.recv(1)
    except OSError as exc:
        return str(exc)
    return ""


def requires_client_cert(*texts: object) -> bool:
    """Whether a broken handshake says the daemon wanted a client certificate."""
    return any("CERTIFICATE_REQUIRED" in str(t) for t in texts)


def server_handshake(sock: Any, peer: object, timeout: float | None, restore: float | None) -> bool:
    """Advance the server side of a TLS handshake; True when done.

    A blocking socket finishes it (or raises) within ``timeout`` and gets ``restore`` as its
    timeout again; a non-blocking one returns False while it waits for the peer. Raises
    :class:`~ember.errors.ConnectionClosedError` when the peer left before saying anything
    (a port probe) and :class:`~ember.errors.CommunicationError` saying why otherwise.
    """
    blocking = sock.gettimeout() != 0.0
    if blocking:
        sock.settimeout(timeout)
    try:
        sock.do_handshake()
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return False
    except ssl.SSLEOFError:
        raise ConnectionClosedError(f"connection from {peer} closed before the TLS handshake") from None
    except OSError as exc:
        error = tls_error(exc, peer)
        _discard_input(sock)
        raise error from None
    finally:
        if blocking:
            with contextlib.suppress(OSError):  # closed meanwhile (daemon shutdown): the error above says why
                sock.settimeout(restore)
    return True


def _discard_input(sock: Any) -> None:
    """Drop what the client already sent after its part of a failed handshake (TLS 1.3
    clients send their first message at once): closing with unread input would reset the
    connection and could destroy the alert telling the client why, before it reads it."""
    with contextlib.suppress(OSError):
        sock.settimeout(0.05)
        while socket.socket.recv(sock, 65536):
            pass
