"""``Pyro5.client``: :class:`Proxy` with Pyro5's ``_pyro*`` controls, ``BatchProxy``, ``SerializedBlob``.

The compat :class:`Proxy` is an :class:`ember.Proxy`; its Pyro5 spellings map onto the
native ones (``_pyroRelease()`` is ``_release()``, ``_pyroTimeout`` is ``_timeout``...).
Proxies that arrive in its results are compat proxies too.
"""

from __future__ import annotations

from typing import Any

from ...client import BatchProxy
from ...client import Proxy as _EmberProxy
from ...client._base import receiving_flavour
from ...client.proxy import RemoteIterator as _StreamResultIterator
from ...context import current_context
from ...serializers import SerializedBlob
from ._unsupported import module_getattr, unsupported
from .config import config

__all__ = ["BatchProxy", "Proxy", "SerializedBlob", "_StreamResultIterator", "config", "current_context"]

_PROXY_UNSUPPORTED = {
    "_pyroRawWireResponse": "raw wire messages are not exposed; use ember.protocol to decode bytes yourself",
    "_pyroSeq": "sequence numbers are the protocol session's business (proxy._session.seq is internal)",
    "_pyroHmacKey": "HMAC was Pyro4's; use TLS (ssl_context=)",
}


class Proxy(_EmberProxy):
    """Pyro5's ``Proxy(uri, connected_socket=None)`` on an :class:`ember.Proxy`.

    Pyro5 controls and their native spellings: ``_pyroBind()`` → ``_bind()``,
    ``_pyroRelease()`` → ``_release()``, ``_pyroReconnect(tries)`` → ``_reconnect(tries)``,
    ``_pyroTimeout`` → ``_timeout`` (None = no timeout), ``_pyroMaxRetries`` →
    ``_max_retries``, ``_pyroOneway`` → ``_oneway``, ``_pyroHandshake`` → ``_handshake``,
    ``_pyroSerializer`` → ``_serializer``, ``_pyroValidateHandshake(response)`` (override)
    → ``_validate_handshake_response``. ``_pyroClaimOwnership()`` does nothing: an Ember
    proxy may be used from any thread (calls are serialized by a lock).
    """

    def __init__(self, uri: Any, connected_socket: Any = None) -> None:
        if not isinstance(uri, str) and not hasattr(uri, "protocol"):
            raise TypeError("expected Pyro URI")
        super().__init__(uri, connected_socket)
        # values arrive exactly as Pyro5 gives them: no Ember-to-Ember extended types
        self.__dict__.update(_serializer=config.SERIALIZER, _compat_serializer=None, _extended_types=False,
                             _compat_timeout=config.COMMTIMEOUT)

    # received proxies take this class
    def _invoke(self, method: str, args: Any, kwargs: dict | None, flags: int = 0) -> Any:
        token = receiving_flavour.set(type(self))
        try:
            return super()._invoke(method, args, kwargs, flags)
        finally:
            receiving_flavour.reset(token)

    _call_remote = _invoke

    def __getattr__(self, name: str) -> Any:
        hint = _PROXY_UNSUPPORTED.get(name)
        if hint is not None:
            raise unsupported("Pyro5.client.Proxy", name, hint)
        return super().__getattr__(name)

    def __copy__(self) -> Proxy:
        new = super().__copy__()
        new.__dict__.update(_compat_serializer=self._compat_serializer, _compat_timeout=self._compat_timeout)
        return new

    def _set_metadata(self, meta: Any) -> None:
        super()._set_metadata(meta)
        self._oneway |= self._oneway_server  # Pyro5's _pyroOneway lists the server's oneway methods too

    def _validate_handshake_response(self, data: Any) -> None:
        self._pyroValidateHandshake(data)

    # ---- Pyro5's controls ------------------------------------------------------------------

    def _pyroValidateHandshake(self, response: Any) -> None:
        """Override to check the daemon's handshake answer; raise to refuse the connection."""

    def _pyroBind(self) -> bool:
        """Connect now; True when a new connection was made."""
        if self._sock is not None:
            return False
        self._bind()
        return True

    def _pyroRelease(self) -> None:
        self._release()

    def _pyroReconnect(self, tries: int = 100_000_000) -> None:
        self._reconnect(tries)

    def _pyroClaimOwnership(self) -> None:
        """No-op: Ember proxies have no owner thread (documented difference)."""

    def _pyroGetMetadata(self, objectId: Any = None, known_metadata: Any = None) -> None:  # noqa: N803
        """Take ``known_metadata`` (a dict with methods/attrs/oneway), or fetch the remote
        object's metadata (connecting if needed)."""
        if known_metadata is not None:
            self._set_metadata(known_metadata)
            return
        if self._sock is None:
            self._bind()
        else:
            with self._lock:
                meta = self._invoke_locked("Pyro.Daemon", "get_metadata", [objectId or self._pyroUri.object], {}, 0)
            self._set_metadata(meta)

    @property
    def _pyroTimeout(self) -> float | None:
        return self._compat_timeout

    @_pyroTimeout.setter
    def _pyroTimeout(self, value: float | None) -> None:
        self.__dict__["_compat_timeout"] = value
        self._timeout = 0.0 if value is None else value  # 0 = no timeout in Ember

    @property
    def _pyroMaxRetries(self) -> int:
        return self._max_retries

    @_pyroMaxRetries.setter
    def _pyroMaxRetries(self, value: int) -> None:
        self._max_retries = value

    @property
    def _pyroOneway(self) -> set[str]:
        return self._oneway

    @_pyroOneway.setter
    def _pyroOneway(self, value: Any) -> None:
        self._oneway = set(value)

    @property
    def _pyroHandshake(self) -> Any:
        return self._handshake

    @_pyroHandshake.setter
    def _pyroHandshake(self, value: Any) -> None:
        self._handshake = value

    @property
    def _pyroSerializer(self) -> str | None:
        return self._compat_serializer

    @_pyroSerializer.setter
    def _pyroSerializer(self, value: str | None) -> None:
        self.__dict__["_compat_serializer"] = value
        self._serializer = value or config.SERIALIZER

    @property
    def _pyroMethods(self) -> set[str]:
        return set(self._methods)

    @_pyroMethods.setter
    def _pyroMethods(self, value: Any) -> None:
        self._methods = frozenset(value or ())  # replaced by the daemon's at the next connect

    @property
    def _pyroAttrs(self) -> set[str]:
        return set(self._attrs)

    @_pyroAttrs.setter
    def _pyroAttrs(self, value: Any) -> None:
        self._attrs = frozenset(value or ())

    @property
    def _pyroConnection(self) -> Any:
        """The connected socket, or None when not connected."""
        return self._sock

    @property
    def _pyroLocalSocket(self) -> Any:
        sock = self._sock
        return sock.getsockname() if sock is not None else None


__getattr__ = module_getattr(__name__, {
    "_RemoteMethod": "internal to Pyro5; remote methods are ember.client.proxy._RemoteMethod",
    "_BatchedRemoteMethod": "internal to Pyro5; see ember.BatchProxy",
})
