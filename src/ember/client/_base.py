"""``ProxyCore``: everything both proxies share that is not sending or receiving.

Options (timeout, serializer, oneway set, handshake data, retries, TLS context), the
remote object's metadata, the oneway rule, attribute rules, copying, the handshake
answer check, TLS client contexts, name resolution of magic URIs, the reconnect policy,
and the ``Pyro5.client.Proxy`` dict form that proxies travel in (a received proxy is
built in the flavour of whoever receives it: blocking for :class:`~ember.Proxy`,
asyncio for :class:`~ember.AsyncProxy`). :class:`~ember.Proxy` and
:class:`~ember.AsyncProxy` add only their I/O.
"""

from __future__ import annotations

import contextvars
from typing import Any

from .. import context
from ..config import config
from ..errors import DENY_SECURITY, ConnectionClosedError, ConnectionDeniedError, PyroError
from ..protocol.client import parse_metadata
from ..transport.errors import closed_hint
from ..transport.tls import client_context
from ..uri import URI
from . import hooks

__all__ = ["ProxyCore", "CONTROLS", "receiving_flavour", "proxy_to_dict", "dict_to_proxy"]

# the proxy class a proxy arriving in a result or argument becomes (set while an AsyncProxy,
# or an async method on an asyncio daemon, receives); None means the blocking Proxy
receiving_flavour: contextvars.ContextVar[type | None] = contextvars.ContextVar("ember_proxy_flavour", default=None)

_OPTIONS = ("_timeout", "_serializer", "_oneway", "_handshake", "_max_retries", "_ssl_context")

# the local controls a user sets on a proxy (both flavours); any other underscore name that the
# proxy does not already hold is a typo and is refused instead of being stored and ignored
CONTROLS = ("_timeout", "_serializer", "_oneway", "_handshake", "_max_retries")
# Pyro5's spellings, for a helpful message until a Pyro5 compatibility layer exists
_PYRO5_CONTROLS = {"_pyroTimeout": "_timeout", "_pyroSerializer": "_serializer", "_pyroOneway": "_oneway",
                   "_pyroHandshake": "_handshake", "_pyroMaxRetries": "_max_retries"}
# what a pickled proxy carries: the URI, these options and the metadata, never the connection
_PICKLED = ("_timeout", "_serializer", "_oneway", "_handshake", "_max_retries")


def _unpickle_proxy(cls: type, uri: str, options: dict, metadata: tuple | None) -> Any:
    proxy = cls(uri)
    for name, value in options.items():
        proxy.__dict__[name] = value
    if metadata is not None:
        proxy._adopt_metadata(*metadata)
    return proxy


class ProxyCore:
    """State and rules shared by both proxy classes."""

    _CONTROLS = CONTROLS  # the local controls a user may set (anything else with an underscore is refused)

    _pyroUri: URI
    _bound_uri: URI | None
    _timeout: float | None
    _serializer: str
    _oneway: set[str]
    _handshake: Any
    _handshake_response: Any
    _max_retries: int
    _methods: frozenset[str]
    _attrs: frozenset[str]
    _oneway_server: frozenset[str]
    _idempotent: frozenset[str]
    _metadata_known: bool
    _connected_socket: Any
    _ssl_context: Any
    _session: Any

    def _init_core(self, uri: str | URI, connected_socket: Any, ssl_context: Any) -> dict[str, Any]:
        """The initial state (returned so the blocking proxy can set it without ``__setattr__``)."""
        if connected_socket is not None and isinstance(uri, str) and ":" not in uri:
            uri = URI(f"PYRO:{uri}@./u:connected-socket")
        return {
            "_pyroUri": URI(uri),
            "_bound_uri": None,
            "_timeout": None,
            "_serializer": config.SERIALIZER,
            "_oneway": set(),
            "_handshake": "hello",
            "_handshake_response": None,
            "_max_retries": config.MAX_RETRIES,
            "_methods": frozenset(),
            "_attrs": frozenset(),
            "_oneway_server": frozenset(),
            "_idempotent": frozenset(),  # methods the server marked @idempotent (Ember peers say so)
            "_metadata_known": False,
            "_connected_socket": connected_socket,
            "_ssl_context": ssl_context,
            "_session": None,
            # ask for Ember's extended value types: None = config EXTENDED_TYPES
            "_extended_types": None,
        }

    # ---- options and metadata -------------------------------------------------------------

    def _wants_extended(self) -> bool:
        choice = self.__dict__.get("_extended_types")
        return bool(config.EXTENDED_TYPES if choice is None else choice)

    def _effective_timeout(self) -> float | None:
        t = self._timeout if self._timeout is not None else config.COMMTIMEOUT
        return t or None

    def _is_oneway(self, method: str) -> bool:
        return method in self._oneway_server or method in self._oneway

    def _set_metadata(self, meta: Any) -> None:
        self._methods, self._attrs, self._oneway_server = parse_metadata(meta, self._pyroUri)
        self._metadata_known = True
        idempotent = meta.get("idempotent") if isinstance(meta, dict) else None
        self.__dict__["_idempotent"] = frozenset(str(m) for m in idempotent) \
            if isinstance(idempotent, (list, tuple, set, frozenset)) else frozenset()
        docs = meta.get("docs") if isinstance(meta, dict) else None
        self.__dict__["_docs"] = {str(k): str(v) for k, v in docs.items()} if isinstance(docs, dict) else {}
        # help(proxy) and proxy.__doc__ show the remote object's docstrings (an instance
        # attribute: the class keeps its own docstring)
        self.__dict__["__doc__"] = self._remote_doc()

    def _exposed_dunder(self, name: str) -> bool:
        """``p.__name__()`` reaches the remote object when it exposes that dunder. Only once
        the metadata is known: probing for a dunder (``copy``, ``pickle``, ``numpy`` do) must
        never open a connection."""
        state = self.__dict__
        return (len(name) > 4 and name[:2] == "__" and name[-2:] == "__" and state.get("_metadata_known", False)
                and name in state.get("_methods", ()))

    def _remote_doc(self) -> str:
        """What ``help(proxy)`` shows: the remote class's docstring and its exposed members'."""
        docs = self.__dict__.get("_docs") or {}
        lines = [f"Proxy to {self._pyroUri}", "", docs.get("", "")]
        for name in sorted(self._methods | self._attrs):
            kind = "attribute" if name in self._attrs else "oneway method" if name in self._oneway_server else "method"
            lines += ["", f"{name} ({kind})"] + [f"    {line}" for line in docs.get(name, "").splitlines()]
        return "\n".join(lines).strip() + "\n"

    def _adopt_metadata(self, methods: Any, attrs: Any, oneway: Any) -> None:
        """Metadata known without asking (a proxy received over the wire carries it)."""
        if methods or attrs:
            self._methods = frozenset(methods or ())
            self._attrs = frozenset(attrs or ())
            self._oneway_server = frozenset(oneway or ())
            self._metadata_known = True

    def _validate_handshake_response(self, data: Any) -> None:
        """Hook: inspect the daemon's handshake answer; raise to refuse the connection."""

    def _tls(self) -> Any:
        """The TLS client context to connect with: the proxy's own, or from config ``SSL``."""
        if self._ssl_context is None and config.SSL:
            return client_context(config)
        return self._ssl_context

    def _object_id(self) -> str:
        return (self._bound_uri or self._pyroUri).object

    @staticmethod
    def _handshake_broke(exc: BaseException, alert: str, location: object, tls: bool = False) -> PyroError:
        """The error for a connection that broke during the handshake (TLS diagnosis included).

        With TLS the daemon's alert says when it wanted a client certificate; asyncio may lose
        that alert (a write fails first), and then the message says what to check.
        """
        if "CERTIFICATE_REQUIRED" in alert or "CERTIFICATE_REQUIRED" in str(exc):
            return ConnectionDeniedError(f"connection to {location} rejected: the daemon requires a TLS "
                                         "client certificate (set SSL_CLIENTCERT and SSL_CLIENTKEY)", DENY_SECURITY)
        hint = closed_hint(True) if tls else ""
        return ConnectionClosedError(f"connection to {location} lost during the handshake: {alert or exc}{hint}")

    # ---- hooks ----------------------------------------------------------------------------------

    def _hook_info(self, object_id: str, method: str, flags: int, oneway_flag: int) -> hooks.ClientCallInfo:
        ctx = context.peek()
        info = hooks.ClientCallInfo(self, self._bound_uri or self._pyroUri, object_id, method,
                                    bool(flags & oneway_flag), ctx.correlation_id if ctx is not None else None)
        hooks.before(info)
        return info

    # ---- copying and equality ---------------------------------------------------------------

    def _copy_options_to(self, new: ProxyCore) -> ProxyCore:
        for name in _OPTIONS:
            value = getattr(self, name)
            new.__dict__[name] = set(value) if name == "_oneway" else value
        return new

    def __copy__(self) -> Any:
        """A new proxy to the same object with the same options and a connection of its own."""
        cls: Any = type(self)
        return self._copy_options_to(cls(self._pyroUri))

    def _as(self, cls: type) -> Any:
        """This proxy as another flavour (``Proxy`` ↔ ``AsyncProxy``): same URI, options and metadata."""
        new = self._copy_options_to(cls(self._pyroUri))
        if self._metadata_known:
            new._adopt_metadata(self._methods, self._attrs, self._oneway_server)
        return new

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ProxyCore) and other._pyroUri == self._pyroUri

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self._pyroUri)

    def __str__(self) -> str:
        return repr(self)

    def __reduce__(self) -> tuple:
        """Pickle support: the URI, the options and the metadata travel; the connection does not
        (the unpickled proxy connects on first use). A TLS context is not pickled."""
        if self._connected_socket is not None:
            raise TypeError("a proxy on a connected socket cannot be pickled: the socket belongs to this process")
        options = {name: (set(getattr(self, name)) if name == "_oneway" else getattr(self, name))
                   for name in _PICKLED}
        metadata = (self._methods, self._attrs, self._oneway_server) if self._metadata_known else None
        return (_unpickle_proxy, (type(self), str(self._pyroUri), options, metadata))

    # ---- local attributes ----------------------------------------------------------------------

    def _check_local(self, name: str) -> None:
        """Refuse setting an underscore name the proxy does not know (a typo would be ignored)."""
        if name in self.__dict__:
            return
        cls = type(self)
        if hasattr(cls, name) or any(name in getattr(k, "__annotations__", {}) for k in cls.__mro__):
            return  # an internal attribute, or one a subclass declares
        controls = ", ".join(self._CONTROLS)
        if name in _PYRO5_CONTROLS:
            raise AttributeError(f"{name!r} is a Pyro5 proxy control; Ember's Pyro5 compatibility layer is not "
                                 f"there yet: use {_PYRO5_CONTROLS[name]!r} (proxy controls: {controls})")
        if name.startswith("_pyro"):
            raise AttributeError(f"{name!r} looks like a Pyro5 proxy attribute; Ember's Pyro5 compatibility layer "
                                 f"is not there yet (proxy controls: {controls})")
        raise AttributeError(f"{cls.__name__} has no control {name!r}; the proxy controls are {controls} "
                             "(remote attributes have no leading underscore)")


def proxy_to_dict(proxy: ProxyCore) -> dict:
    """A proxy's wire form (Pyro5's ``Pyro5.client.Proxy`` dict), for either flavour."""
    return {
        "__class__": "Pyro5.client.Proxy",
        "state": (str(proxy._pyroUri), tuple(proxy._oneway_server | proxy._oneway), tuple(proxy._methods),
                  tuple(proxy._attrs), proxy._handshake, None),
    }


def dict_to_proxy(default: type, d: dict) -> Any:
    """Build a received proxy, in the flavour of the receiver (see :data:`receiving_flavour`)."""
    try:
        uri, oneway, methods, attrs, handshake, serializer = d["state"]
    except (KeyError, TypeError, ValueError):
        raise PyroError("invalid serialized proxy") from None
    cls = receiving_flavour.get() or default
    proxy = cls(uri)
    proxy._adopt_metadata(methods, attrs, oneway)
    proxy._handshake = handshake
    if serializer:
        proxy._serializer = serializer
    return proxy
