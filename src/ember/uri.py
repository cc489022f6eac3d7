"""Pyro URIs: where an object lives, or how to find it.

Forms (protocol word case-insensitive, normalised to upper case)::

    PYRO:objectid@host:port          direct, TCP (IPv6 hosts in brackets: [::1]:9999)
    PYRO:objectid@./u:/path/socket   direct, unix domain socket
    PYRONAME:name[@nshost[:port]]    looked up in a name server
    PYROMETA:tag1,tag2[@nshost[:port]]  any object carrying all the tags
    PYROLOC:name@host:port           legacy: ask the daemon at host:port for a name
                                     (also the Pyro 3 spelling PYROLOC://host:port/name)
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .config import config
from .errors import InvalidURIError

__all__ = ["URI", "PROTOCOLS", "split_store_url"]

PROTOCOLS = ("PYRO", "PYRONAME", "PYROMETA", "PYROLOC")
_URI_RE = re.compile(r"(?P<protocol>[Pp][Yy][Rr][Oo][a-zA-Z]*):(?P<object>\S+?)(@(?P<location>.*))?$", re.S)
_PYRO3_LOC = re.compile(r"(?P<protocol>[Pp][Yy][Rr][Oo][Ll][Oo][Cc]):(//)(?P<location>[^/]+)/(?P<object>\S+)$")
_IPV6_HOST = re.compile(r"^[0-9a-fA-F:]+(%[0-9A-Za-z_.-]+)?$")


class URI:
    """A parsed Pyro URI. Compares and hashes by value; ``str(uri)`` round-trips.

    >>> u = URI("PYRO:calc@localhost:9999")
    >>> u.object, u.host, u.port
    ('calc', 'localhost', 9999)
    """

    __slots__ = ("protocol", "object", "sockname", "host", "port")

    protocol: str
    object: str
    sockname: str | None
    host: str | None
    port: int | None

    def __init__(self, uri: str | URI) -> None:
        if isinstance(uri, URI):
            for slot in self.__slots__:
                object.__setattr__(self, slot, getattr(uri, slot))
            return
        if not isinstance(uri, str):
            raise InvalidURIError(f"URI must be a string or URI, not {type(uri).__name__}")
        self._parse(uri)

    def _set(self, protocol: str, obj: str, sockname: str | None, host: str | None, port: int | None) -> None:
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "object", obj)
        object.__setattr__(self, "sockname", sockname)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("URI objects are immutable")

    def _parse(self, text: str) -> None:
        m3 = _PYRO3_LOC.match(text)
        if m3:
            host, port = _parse_hostport(m3.group("location"), text, required_port=True)
            self._set("PYROLOC", m3.group("object"), None, host, port)
            return
        scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", text)
        if scheme is None:
            raise InvalidURIError(f"invalid URI {text!r}: missing protocol (expected e.g. PYRO:obj@host:port)")
        if scheme.group(1).upper() not in PROTOCOLS:
            raise InvalidURIError(f"invalid URI {text!r}: unknown protocol {scheme.group(1)!r}; a Pyro URI starts "
                                  f"with one of {', '.join(PROTOCOLS)} (e.g. PYRO:obj@host:port, PYRONAME:name)")
        m = _URI_RE.match(text)
        if not m or m.group("object").startswith("@"):
            raise InvalidURIError(f"invalid URI {text!r}: the object part is empty or contains whitespace")
        protocol = m.group("protocol").upper()
        obj = m.group("object")
        location = m.group("location")
        if location is not None and "@" in location:
            raise InvalidURIError(f"invalid URI {text!r}: more than one '@'; object ids and names cannot contain "
                                  "'@' (it separates the object from the location)")
        if protocol == "PYRO" or protocol == "PYROLOC":
            if location is None:
                raise InvalidURIError(f"invalid URI {text!r}: {protocol} needs a location (@host:port)")
            if location.startswith("./u:"):
                sockname = location[4:]
                if not sockname:
                    raise InvalidURIError(f"invalid URI {text!r}: empty unix socket path after ./u:")
                if protocol == "PYROLOC":
                    raise InvalidURIError(f"invalid URI {text!r}: PYROLOC needs host:port")
                self._set(protocol, obj, sockname, None, None)
                return
            host, port = _parse_hostport(location, text, required_port=True)
            self._set(protocol, obj, None, host, port)
            return
        # PYRONAME / PYROMETA
        if protocol == "PYROMETA" and not all(obj.split(",")):
            raise InvalidURIError(f"invalid URI {text!r}: empty metadata tag in {obj!r}")
        if location is None:
            self._set(protocol, obj, None, None, None)
            return
        if location.startswith("./u:"):
            sockname = location[4:]
            if not sockname:
                raise InvalidURIError(f"invalid URI {text!r}: empty unix socket path after ./u:")
            self._set(protocol, obj, sockname, None, None)
            return
        host, port = _parse_hostport(location, text, required_port=False)
        if port is None:
            port = config.NS_PORT
        self._set(protocol, obj, None, host, port)

    @property
    def location(self) -> str | None:
        """``host:port`` (IPv6 bracketed), ``./u:path``, or None."""
        if self.sockname is not None:
            return "./u:" + self.sockname
        if self.host is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port is not None else host

    @property
    def metadata(self) -> frozenset[str]:
        """The tags of a ``PYROMETA:`` URI (empty for other protocols)."""
        if self.protocol != "PYROMETA":
            return frozenset()
        return frozenset(self.object.split(","))

    @property
    def is_magic(self) -> bool:
        """True for URIs that need a lookup before connecting (PYRONAME, PYROMETA, PYROLOC)."""
        return self.protocol != "PYRO"

    def state(self) -> tuple:
        """(protocol, object, sockname, host, port): the tuple Pyro5's URI dict carries."""
        return (self.protocol, self.object, self.sockname, self.host, self.port)

    @classmethod
    def from_state(cls, state: Any) -> URI:
        """Rebuild from the state tuple of the ``Pyro5.core.URI`` dict form."""
        try:
            protocol, obj, sockname, host, port = state
        except (TypeError, ValueError):
            raise InvalidURIError(f"invalid URI state {state!r}") from None
        protocol = str(protocol).upper()
        if protocol == "PYROMETA" and isinstance(obj, (set, frozenset, list, tuple)):
            obj = ",".join(sorted(str(tag) for tag in obj))  # Pyro5 carries a PYROMETA URI's tags as a set
        uri = cls.__new__(cls)
        uri._set(protocol, obj, sockname, host, port)
        return uri

    def wire_state(self) -> tuple:
        """:meth:`state` as Pyro5 puts it on the wire: a ``PYROMETA:`` URI's tags as a set."""
        if self.protocol == "PYROMETA":
            return (self.protocol, set(self.metadata), self.sockname, self.host, self.port)
        return self.state()

    def __str__(self) -> str:
        loc = self.location
        return f"{self.protocol}:{self.object}@{loc}" if loc else f"{self.protocol}:{self.object}"

    def __repr__(self) -> str:
        return f"<ember.URI {str(self)!r}>"

    def __eq__(self, other: Any) -> bool:
        if isinstance(other, URI):
            return self.state() == other.state()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.state())

    def __reduce__(self) -> tuple:
        return (URI, (str(self),))

    def __copy__(self) -> URI:
        return self

    def __deepcopy__(self, memo: dict) -> URI:
        return self


def _parse_hostport(location: str, text: str, required_port: bool) -> tuple[str, int | None]:
    if location.startswith("["):
        end = location.find("]")
        if end < 0:
            raise InvalidURIError(f"invalid URI {text!r}: unclosed '[' in IPv6 address")
        host = location[1:end]
        if not _IPV6_HOST.match(host):
            raise InvalidURIError(f"invalid URI {text!r}: {host!r} is not an IPv6 address")
        rest = location[end + 1 :]
        if rest and not rest.startswith(":"):
            raise InvalidURIError(f"invalid URI {text!r}: unexpected {rest!r} after the IPv6 address")
        portpart = rest[1:] if rest else None
    else:
        host, sep, portpart = location.rpartition(":")
        if not sep:
            host, portpart = location, None
        elif ":" in host:
            raise InvalidURIError(f"invalid URI {text!r}: IPv6 addresses must be written in brackets, e.g. [::1]:9999")
    if not host:
        raise InvalidURIError(f"invalid URI {text!r}: empty host")
    if any(c.isspace() for c in host):
        raise InvalidURIError(f"invalid URI {text!r}: whitespace in host {host!r}")
    if portpart is None or portpart == "":
        if required_port:
            raise InvalidURIError(f"invalid URI {text!r}: missing port (expected host:port)")
        return host, None
    if portpart.startswith("-") and portpart[1:].isdigit():
        raise InvalidURIError(f"invalid URI {text!r}: port {portpart} is negative; ports are 0-65535")
    if not portpart.isdigit():
        raise InvalidURIError(f"invalid URI {text!r}: port {portpart!r} is not a number")
    port = int(portpart)
    if port > 65535:
        raise InvalidURIError(f"invalid URI {text!r}: port {port} is out of range: ports are 0-65535")
    return host, port


def split_store_url(url: str, default_prefix: str) -> tuple[str, str, str]:
    """A store URL (``redis://[:PASSWORD@]HOST:PORT/DB?prefix=P``) as ``(plain URL, key prefix,
    URL fit to show)``: the plain URL without Ember's own ``prefix`` parameter, the prefix
    (``default_prefix`` when none is given), and the URL with its password masked, for
    messages and logs."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    given = [value for key, value in query if key == "prefix"]
    prefix = (given[-1] if given else "") or default_prefix
    plain = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "prefix"])))
    shown = url
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
        shown = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return plain, prefix, shown
