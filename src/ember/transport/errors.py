"""The one boundary where ``OSError`` and ``ssl`` errors become :mod:`ember.errors`.

Both transports (blocking sockets and asyncio streams) and the TLS helpers map failures
through these functions, so a timeout, a reset or a refused certificate reads the same
whichever I/O flavour met it.
"""

from __future__ import annotations

import builtins
import ssl

from ..errors import CommunicationError, ConnectionClosedError, TimeoutError

__all__ = ["describe_tls_failure", "connect_error", "io_error", "tls_error", "closed_hint"]


def describe_tls_failure(exc: BaseException) -> str:
    """A short, actionable text for a failed TLS handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"the peer's certificate was not accepted ({exc.verify_message}); check SSL_CACERTS and the host name"
    text = getattr(exc, "reason", None) or str(exc)
    if text in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNEXPECTED_MESSAGE") or "wrong version" in str(exc):
        return f"the peer does not speak TLS ({text}); is TLS (SSL) on at both ends?"
    return str(exc)


def _is_timeout(exc: BaseException) -> bool:
    # socket.timeout is builtins.TimeoutError; asyncio.TimeoutError is too from Python 3.11 on
    return isinstance(exc, builtins.TimeoutError) or type(exc).__name__ == "TimeoutError"


def connect_error(exc: BaseException, location: object) -> CommunicationError:
    """Opening a connection to ``location`` failed."""
    if _is_timeout(exc):
        return TimeoutError(f"connecting to {location} timed out")
    if isinstance(exc, ssl.SSLError):
        return tls_error(exc, location)
    return CommunicationError(f"cannot connect to {location}: {getattr(exc, 'strerror', None) or exc}")


def io_error(exc: BaseException, sending: bool = False, what: str = "connection") -> CommunicationError:
    """Sending or receiving on an open connection failed."""
    if _is_timeout(exc):
        return TimeoutError("sending timed out" if sending else "receiving timed out")
    while_ = " while sending" if sending else ""
    return ConnectionClosedError(f"{what} lost{while_}: {getattr(exc, 'strerror', None) or exc}")


def tls_error(exc: BaseException, peer: object) -> CommunicationError:
    """A TLS handshake with ``peer`` failed (either side)."""
    if isinstance(exc, ssl.SSLError):
        return CommunicationError(f"TLS handshake with {peer} failed: {describe_tls_failure(exc)}")
    if _is_timeout(exc):
        return TimeoutError(f"TLS handshake with {peer} timed out")
    return CommunicationError(f"TLS handshake with {peer} failed: {getattr(exc, 'strerror', None) or exc}")


def closed_hint(tls: bool) -> str:
    """Why a daemon may have closed the connection during the handshake."""
    if not tls:
        return " (does the daemon require TLS?)"
    return " (does the daemon require a TLS client certificate? set SSL_CLIENTCERT and SSL_CLIENTKEY)"
