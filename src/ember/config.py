"""Ember's configuration: named items with defaults, overridable by ``PYRO_*`` variables.

Item names are Pyro5's (``COMMTIMEOUT``, ``SERIALIZER``, ...) so that a deployment's
environment works for both libraries; a few items are Ember's own. At import time every
environment variable ``PYRO_<ITEM>`` is converted to the item's type and applied.

>>> from ember import config
>>> config.COMMTIMEOUT = 5.0
>>> with config.override(SERIALIZER="json"):
...     pass
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import ConfigError

__all__ = ["Config", "config", "ConfigError", "ITEMS", "validate"]

log = logging.getLogger("ember.config")

# name: (default, description). The default's type decides how an environment string is
# converted; None defaults are strings when set.
ITEMS: dict[str, tuple[Any, str]] = {
    "HOST": ("127.0.0.1", "address daemons bind to (loopback unless told otherwise)"),
    "NS_HOST": ("localhost", "name server host used by clients to locate it"),
    "NS_PORT": (9090, "name server TCP port"),
    "NS_BCPORT": (9091, "name server UDP broadcast responder port"),
    "NS_BCHOST": (None, "broadcast responder bind address (None = all interfaces)"),
    "NS_AUTOCLEAN": (0.0, "seconds between name server liveness sweeps; 0 = off, else >= 3"),
    "NS_LOOKUP_DELAY": (0.0, "max seconds a client keeps retrying a name lookup"),
    "NS_URI_FILE": (None, "file holding the name server URI; locate_ns reads it as a last resort"),
    # issue 19: scale-out (leases, replicated names, client lookup cache, several name servers)
    "NS_LEASE_TIME": (10.0, "seconds a daemon's published names outlive it: its publisher renews this lease "
                            "(every third of it); 0 = no lease, names stay until removed"),
    "NS_LOOKUP_CACHE": (2.0, "seconds a client reuses a PYRONAME lookup (the entry is dropped on a connection "
                             "failure); 0 = ask the name server on every connect"),
    "NS_HOSTS": ([], "name servers sharing one registry, as 'host:port' items: locating the name server tries "
                     "them in random order (spreading the load) before NS_HOST"),
    "NATHOST": (None, "external host published in URIs"),
    "NATPORT": (0, "external port published in URIs; 0 = the internal port"),
    "COMPRESSION": (False, "zlib-compress outgoing payloads over 100 bytes when it helps"),
    "SERVERTYPE": ("thread", "daemon server type: thread, multiplex or asyncio"),
    "COMMTIMEOUT": (0.0, "socket timeout in seconds for both sides; 0 = none"),
    "POLLTIMEOUT": (2.0, "server loop poll interval; bounds housekeeping and shutdown"),
    "MAX_RETRIES": (0, "times a proxy retries a call after a closed connection or timeout"),
    "SOCK_REUSE": (True, "set SO_REUSEADDR on listening sockets"),
    "SOCK_NODELAY": (True, "set TCP_NODELAY (Ember default on: one sendall per message)"),
    "DETAILED_TRACEBACK": (False, "remote tracebacks include local variables"),
    "THREADPOOL_SIZE": (80, "max worker threads = max connections of a thread-pool daemon"),
    "THREADPOOL_SIZE_MIN": (4, "idle worker threads kept by a thread-pool daemon"),
    # 1 GiB, as Pyro5: ported programs that move big messages keep working. A declared size
    # costs nothing by itself: memory for a large body is committed only as its bytes arrive
    # (anonymous mmap), and MAX_BYTES_IN_FLIGHT caps what one server receives at once.
    "MAX_MESSAGE_SIZE": (1073741824, "largest message accepted or sent, in bytes (1 GiB)"),
    "MAX_ANNOTATIONS_SIZE": (1048576, "largest annotation block accepted, in bytes"),
    "BROADCAST_ADDRS": (["<broadcast>", "0.0.0.0"], "where locate_ns sends GET_NSURI"),
    "PREFER_IP_VERSION": (0, "4, 6 or 0 (let the OS decide)"),
    "SERIALIZER": ("msgpack", "client serializer: msgpack, serpent, json or marshal"),
    "SERPENT_BYTES_REPR": (False, "serpent writes bytes as b'..' literals, not base64 dicts"),
    "ITER_STREAMING": (True, "daemon streams iterators/generators item by item"),
    "ITER_STREAM_LIFETIME": (0.0, "max age of a stream in seconds; 0 = unlimited"),
    "ITER_STREAM_LINGER": (30.0, "seconds a stream outlives its connection"),
    "ONEWAY_THREADED": (True, "run oneway calls in their own thread"),
    "PROXY_IDLE_RELEASE": (0.0, "seconds after which an unused proxy closes its connection (reopened on use); 0 = never"),
    "IDLE_TIMEOUT": (0.0, "seconds after which a daemon closes a connection that sent nothing; 0 = never"),
    "EXTENDED_TYPES": (True, "Ember peers exchange UUID, Decimal, datetime, time, timedelta, paths as themselves; "
                       "False: exactly what Pyro5 peers get"),
    "STATISTICS": (False, "daemons count calls, errors, latencies and bytes (daemon.statistics())"),
    "LOGFILE": ("ember.log", "log file used when PYRO_LOGLEVEL is set"),
    "LOGLEVEL": (None, "log level; logging is set up only when this is set"),
    "LOGWIRE": (False, "log every wire message on logger ember.wire (headers at INFO, payloads at DEBUG)"),
    "MOBILE_CODE": (False, "daemons accept shipped module source (needs a validator); never on by default"),
    "EVENTS_QUEUE_SIZE": (1000, "events queued per subscriber of the event service"),
    "EVENTS_QUEUE_POLICY": ("drop-oldest", "when a subscriber's queue is full: drop-oldest (count the drops) or block"),
    "EVENTS_MAX_FAILURES": (3, "failed deliveries in a row after which a subscriber is unsubscribed"),
    "EVENTS_TIMEOUT": (10.0, "seconds one delivery call to a subscriber may take"),
    "EVENTS_BATCH_SIZE": (200, "most events per events() call to a subscriber that takes batches"),
    "EVENTS_LINGER": (0.001, "seconds a sender waits for more events to send in one events() call; 0 = at once"),
    "EVENTS_KEEP": (1000, "events kept per subject for replay (subscribe(..., since=seq))"),
    "EVENTS_KEEP_SECONDS": (0.0, "also forget events older than this many seconds; 0 = no time limit"),
    # ---- hardening (issue 13): what one client may cost a server ----
    "MAX_BYTES_IN_FLIGHT": (2147483648, "bytes of large messages (256 KiB and over) one daemon receives at the same time; "
                            "a message that would exceed it is refused with a reply naming this item (2 GiB)"),
    "HANDSHAKE_TIMEOUT": (10.0, "seconds a new connection has to complete its TLS handshake and CONNECT, whatever "
                          "COMMTIMEOUT is"),
    "STALL_TIMEOUT": (30.0, "seconds a connection may stay silent in the middle of a message before the daemon "
                      "closes it (COMMTIMEOUT, when lower, wins); 0 = never"),
    "MAX_PENDING_CALLS": (256, "calls one connection may have accepted but not finished (oneway calls, and pipelined "
                          "calls on the asyncio server); at the limit the daemon stops reading from it until one ends"),
    "ITER_STREAM_MAX": (1000, "item streams (remote iterators) one connection may have open at once; 0 = no limit"),
    "SERIALIZERS_ACCEPTED": (["msgpack", "serpent", "json", "marshal"],
                             "serializers a daemon accepts from clients; others are refused before anything is "
                             "decoded with them"),
    "THREADPOOL_EVICT_IDLE": (1.0, "when every worker of a thread-pool daemon is taken, a new connection takes the "
                              "worker of the connection idle longest, if idle this many seconds; 0 = never (refuse)"),
    # issue 18: HTTP gateway and web console (ember gateway, ember.web)
    "GATEWAY_TIMEOUT": (10.0, "seconds the HTTP gateway waits for a daemon before answering 504"),
    "GATEWAY_MAX_BODY": (10485760, "largest HTTP request body the gateway accepts, in bytes (10 MiB); larger: 413"),
    "GATEWAY_POOL_SIZE": (16, "most connections the HTTP gateway keeps open to one daemon"),
    # ---- issue 13 (server hardening, srvhard): what a daemon tells a client beyond the answer ----
    "SEND_TRACEBACK": (True, "error replies carry the server's traceback (Pyro5's behaviour); False: only the "
                       "exception type and message (recommended for untrusted clients)"),
    "DAEMON_LIST_OBJECTS": (False, "the daemon object (Pyro.Daemon) answers registered() with every object id; "
                            "False: registered() raises SecurityError"),
    "SSL": (False, "use TLS"),
    "SSL_SERVERCERT": ("", "daemon certificate file"),
    "SSL_SERVERKEY": ("", "daemon private key file"),
    "SSL_SERVERKEYPASSWD": ("", "daemon private key password"),
    "SSL_REQUIRECLIENTCERT": (False, "daemon requires client certificates (mutual TLS)"),
    "SSL_CLIENTCERT": ("", "client certificate file"),
    "SSL_CLIENTKEY": ("", "client private key file"),
    "SSL_CLIENTKEYPASSWD": ("", "client private key password"),
    "SSL_CACERTS": ("", "CA file or directory used by both sides"),
    # issue 13 (items 4, 8, 9): name server hardening
    "NS_KEY": (None, "name server write key: a name server given one refuses register/remove/set_metadata "
               "from connections that do not present it; locate_ns(), ember nsc and publishing daemons present it"),
    "NS_REGEX_TIMEOUT": (1.0, "seconds a list/remove regex may take over all names (matched in a helper process)"),
    "NS_MAX_NAMES": (100000, "most names a name server holds, its own included; 0 = no limit"),
    "NS_MAX_NAME_LENGTH": (1024, "longest name accepted by a name server, in characters; 0 = no limit"),
    "NS_MAX_URI_LENGTH": (4096, "longest URI a name server accepts for a name, in characters; 0 = no limit"),
    "NS_MAX_METADATA": (64, "most metadata tags on one name; 0 = no limit"),
    "NS_MAX_TAG_LENGTH": (256, "longest metadata tag, in characters; 0 = no limit"),
    # issue 16, same-host shared memory (ember.transport.shm)
    "SHM_THRESHOLD": (1048576, "payloads of this many bytes or more travel through shared memory between Ember "
                      "peers on one machine (unix socket or loopback TCP, Linux); 0 = never"),
    # issue 16 (bulk data): buffers and numpy arrays out of band between Ember peers
    "OUT_OF_BAND": (True, "Ember peers (with EXTENDED_TYPES) send large bytes, buffers and numpy arrays "
                    "after the msgpack structure, uncopied; False: inline, as Pyro5 peers get them"),
    "OUT_OF_BAND_THRESHOLD": (65536, "bytes, bytearray and memoryview values from this size on travel out of band "
                              "(numpy arrays and array.array always do)"),
}

# items whose value ``ember config`` does not print (issue 13)
_SECRET_ITEMS = frozenset({"NS_KEY", "SSL_SERVERKEYPASSWD", "SSL_CLIENTKEYPASSWD"})

_LOGLEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "a TCP port from 0 to 65535"


def _not_negative(value: float) -> str | None:
    return None if value >= 0 else "a number >= 0"


def _positive(value: float) -> str | None:
    return None if value > 0 else "a number > 0"


def _loglevel(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and (value.strip().upper() in _LOGLEVELS or value.strip().isdigit())):
        return None
    return f"one of {', '.join(_LOGLEVELS)} (any case) or a number"


# constraints beyond the type of the default: each returns None when the value is fine,
# else a description of what is allowed
_CHECKS: dict[str, Any] = {
    "NS_PORT": _port, "NS_BCPORT": _port, "NATPORT": _port,
    "NS_AUTOCLEAN": lambda v: None if v == 0 or v >= 3 else "0 (off) or a number of seconds >= 3",
    "NS_LOOKUP_DELAY": _not_negative, "COMMTIMEOUT": _not_negative, "POLLTIMEOUT": _positive,
    # issue 19: scale-out
    "NS_LEASE_TIME": lambda v: None if v == 0 or 0.1 <= v <= 86400 else "0 (no lease) or 0.1 to 86400 seconds",
    "NS_LOOKUP_CACHE": _not_negative,
    "PROXY_IDLE_RELEASE": _not_negative, "IDLE_TIMEOUT": _not_negative,
    "MAX_RETRIES": _not_negative, "THREADPOOL_SIZE": _positive, "THREADPOOL_SIZE_MIN": _not_negative,
    "MAX_MESSAGE_SIZE": _positive, "MAX_ANNOTATIONS_SIZE": _positive,
    "PREFER_IP_VERSION": lambda v: None if v in (0, 4, 6) else "4, 6 or 0 (let the OS decide)",
    "ITER_STREAM_LIFETIME": _not_negative, "ITER_STREAM_LINGER": _not_negative,
    "LOGLEVEL": _loglevel,
    "MAX_BYTES_IN_FLIGHT": _positive, "HANDSHAKE_TIMEOUT": _positive, "STALL_TIMEOUT": _not_negative,
    "MAX_PENDING_CALLS": _positive, "THREADPOOL_EVICT_IDLE": _not_negative, "ITER_STREAM_MAX": _not_negative,
    "SERIALIZERS_ACCEPTED": lambda v: None if v and set(v) <= {"msgpack", "serpent", "json", "marshal"}
    else "a non-empty list drawn from msgpack, serpent, json, marshal",
    # issue 13 (items 4, 8, 9): name server hardening
    "NS_KEY": lambda v: None if v is None or v.strip() else "a non-empty string, or None (no key)",
    "NS_REGEX_TIMEOUT": _positive, "NS_MAX_NAMES": _not_negative, "NS_MAX_NAME_LENGTH": _not_negative,
    "NS_MAX_URI_LENGTH": _not_negative, "NS_MAX_METADATA": _not_negative, "NS_MAX_TAG_LENGTH": _not_negative,
    "GATEWAY_TIMEOUT": _positive, "GATEWAY_MAX_BODY": _positive, "GATEWAY_POOL_SIZE": _positive,  # issue 18
    "SHM_THRESHOLD": _not_negative,  # issue 16
    "OUT_OF_BAND_THRESHOLD": _not_negative,
    # the serializers Ember has (ember.serializers.names()); there is no way to add one
    "SERIALIZER": lambda v: None if v in ("msgpack", "serpent", "json", "marshal")
    else "one of msgpack, serpent, json, marshal",
}

_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", list: "a list of strings",
               str: "a string"}


def validate(name: str, value: Any, source: str = "") -> Any:
    """Check ``value`` for item ``name`` (type of the default, plus the item's own limits);
    return it (an int for a float item becomes a float) or raise :class:`ConfigError` naming
    the item, the value and what is allowed."""
    default = ITEMS[name][0]
    where = f" (from {source})" if source else ""
    kind = type(default)
    if default is None:
        ok = value is None or isinstance(value, str)
        allowed = "a string or None"
    elif kind is bool:
        ok = isinstance(value, bool)
        allowed = _TYPE_NAMES[bool]
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        allowed = _TYPE_NAMES[int]
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
        allowed = _TYPE_NAMES[float]
    elif kind is list:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        if ok:
            value = list(value)
        allowed = _TYPE_NAMES[list]
    else:
        ok = isinstance(value, str)
        allowed = _TYPE_NAMES[str]
    if ok:
        check = _CHECKS.get(name)
        problem = check(value) if check is not None else None
        if problem is None:
            return value
        allowed = problem
    raise ConfigError(f"invalid value {value!r} for config item {name}{where}: expected {allowed}")


_TRUE = {"1", "yes", "on", "true"}
_FALSE = {"0", "no", "off", "false"}


def _convert(name: str, default: Any, text: str) -> Any:
    """Turn an environment string into the type of the item's default."""
    try:
        if isinstance(default, bool):
            low = text.strip().lower()
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ValueError("expected one of 1/0, yes/no, on/off, true/false")
        if isinstance(default, int):
            try:
                return int(text)
            except ValueError:
                raise ValueError("expected an integer") from None
        if isinstance(default, float):
            try:
                return float(text)
            except ValueError:
                raise ValueError("expected a number") from None
        if isinstance(default, list):
            return [part.strip() for part in text.split(",") if part.strip()]
        return text
    except ValueError as exc:
        raise ConfigError(f"invalid value {text!r} for config item {name} (from environment variable "
                          f"PYRO_{name}): {exc}") from None


class Config:
    """The set of config items; ``config`` is the process-wide instance.

    Items are plain instance attributes (fast to read on the call path); setting an
    unknown name raises :class:`ConfigError` so a typo does not pass silently.
    """

    def __init__(self, use_environment: bool = True) -> None:
        object.__setattr__(self, "_sources", {})
        object.__setattr__(self, "_unknown_env", [])
        self.reset(use_environment)

    def reset(self, use_environment: bool = True) -> None:
        """Restore the defaults, then (unless told not to) apply ``PYRO_*`` variables."""
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, (default, _) in ITEMS.items():
            values[name] = list(default) if isinstance(default, list) else default
            sources[name] = "default"
        unknown: list[str] = []
        if use_environment:
            for var, text in os.environ.items():
                if not var.startswith("PYRO_"):
                    continue
                name = var[5:]
                if name not in ITEMS:
                    # Pyro5 refuses to import here; Ember only records it (ember config shows it)
                    unknown.append(var)
                    continue
                values[name] = validate(name, _convert(name, ITEMS[name][0], text), f"environment variable {var}")
                sources[name] = f"environment ({var})"
        self.__dict__.update(values)
        self._sources.clear()
        self._sources.update(sources)
        self._unknown_env[:] = unknown

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"no config item {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in ITEMS:
            raise ConfigError(f"no config item {name!r}; see 'ember config' for the list")
        self.__dict__[name] = validate(name, value)
        self._sources[name] = "set in code"

    def source(self, name: str) -> str:
        """Where the current value of ``name`` came from: default, environment, set in code."""
        return self._sources[name]

    def as_dict(self) -> dict[str, Any]:
        """A copy of every item and its value."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self.__dict__.items() if k in ITEMS}

    def copy(self) -> Config:
        """An independent copy (for a daemon or proxy that wants its own settings)."""
        new = Config(use_environment=False)
        new.__dict__.update(self.as_dict())
        new._sources.update(self._sources)
        return new

    def update(self, items: Mapping[str, Any]) -> None:
        """Set several items at once."""
        for name, value in items.items():
            setattr(self, name, value)

    @contextlib.contextmanager
    def override(self, **items: Any) -> Iterator[Config]:
        """Temporarily set items (restored on exit): handy in tests."""
        saved = {name: (self.__dict__[name], self._sources[name]) for name in items if name in ITEMS}
        self.update(items)
        try:
            yield self
        finally:
            for name, (value, src) in saved.items():
                self.__dict__[name] = value
                self._sources[name] = src

    def unknown_environment(self) -> list[str]:
        """``PYRO_*`` variables that name no Ember item (ignored)."""
        return list(self._unknown_env)

    def dump(self) -> str:
        """A readable listing of every item, its value and its source."""
        width = max(len(n) for n in ITEMS)
        lines = []
        for name in sorted(ITEMS):
            value = self.__dict__[name]
            shown = "'(hidden)'" if name in _SECRET_ITEMS and value else repr(value)
            lines.append(f"{name:<{width}} = {shown}  [{self._sources[name]}]")
        for var in self._unknown_env:
            lines.append(f"(ignored: environment variable {var} names no Ember config item)")
        return "\n".join(lines)


config = Config()


def setup_logging() -> None:
    """Configure the ``ember`` logger from ``PYRO_LOGLEVEL``/``PYRO_LOGFILE`` if set.

    Nothing happens when ``PYRO_LOGLEVEL`` is not set: a library must not configure
    logging behind the application's back.
    """
    level = os.environ.get("PYRO_LOGLEVEL")
    if not level:
        return
    logfile = os.environ.get("PYRO_LOGFILE") or config.LOGFILE
    logger = logging.getLogger("ember")
    if logfile == "{stderr}":
        handler: logging.Handler = logging.StreamHandler()
    else:
        handler = logging.FileHandler(logfile)
    fmt = "[%(asctime)s.%(msecs)03d %(levelname)s %(name)s] %(message)s"
    handler.setFormatter(logging.Formatter(fmt, "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    level = level.strip()
    logger.setLevel(int(level) if level.isdigit() else level.upper())


setup_logging()
