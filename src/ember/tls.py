"""TLS: building ``ssl.SSLContext`` objects from config items, and TLS handshakes.

The daemon side needs a certificate and key (``SSL_SERVERCERT``/``SSL_SERVERKEY``); with
``SSL_REQUIRECLIENTCERT`` it also demands a client certificate signed by a CA in
``SSL_CACERTS`` (mutual TLS). The client side verifies the daemon's certificate against
``SSL_CACERTS`` (or the system's CAs when that is empty), including the host name, and
presents ``SSL_CLIENTCERT``/``SSL_CLIENTKEY`` when set. Any ``Daemon``/``Proxy`` also takes
a ready ``ssl_context`` instead.
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

from .errors import SecurityError

__all__ = ["server_context", "client_context", "describe_failure"]

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
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
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
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cas:
        _load_cas(ctx, cas)
    if cert:
        _load_chain(ctx, cert, keyf, pw, "client")
    with _cache_lock:
        _cache[key] = ctx
    return ctx


def describe_failure(exc: BaseException) -> str:
    """A short, actionable text for a failed TLS handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the peer's certificate was not accepted ({exc.verify_message}); check SSL_CACERTS and the host name"
    text = getattr(exc, "reason", None) or str(exc)
    if text in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNEXPECTED_MESSAGE") or "wrong version" in str(exc):
        return f"the peer does not speak TLS ({text}); is TLS (SSL) on at both ends?"
    return str(exc)
