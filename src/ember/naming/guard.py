"""What protects a name server from its clients: the write key and the size limits.

* **Write key** (``NS_KEY``, ``ember ns --key``): when a name server has one, the calls that
  change the registry (``register``, ``remove``, ``set_metadata``) need a connection whose
  handshake data carries the key, ``{"ns_key": KEY}``; reading (``lookup``, ``list``,
  ``yplookup``, ``count``, ``ping``) stays open, so ``PYRONAME:`` resolution and Pyro5
  clients keep working. The key travels in the connection handshake (once per connection):
  Ember's proxies present it with ``locate_ns(key=...)``; a Pyro5 proxy with
  ``ns._pyroHandshake = {"ns_key": KEY}``. Only calls that came through a connection are
  checked; code in the name server's process can change the registry through its storage.
* **Limits** (``NS_MAX_NAMES``, ``NS_MAX_NAME_LENGTH``, ``NS_MAX_URI_LENGTH``,
  ``NS_MAX_METADATA``, ``NS_MAX_TAG_LENGTH``): each refusal is a
  :class:`~ember.errors.NamingError` naming the limit and its config item.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from ..config import Config
from ..config import config as global_config
from ..context import peek as peek_context
from ..errors import NamingError
from ..server.publish import NS_KEY_FIELD

__all__ = ["Limits", "WriteKey", "NS_KEY_FIELD"]


@dataclass(frozen=True)
class Limits:
    """The size limits of one name server (0 = no limit), read from config when it starts."""

    max_names: int = 100000
    max_name_length: int = 1024
    max_uri_length: int = 4096
    max_metadata: int = 64
    max_tag_length: int = 256

    @classmethod
    def from_config(cls, cfg: Config | None = None) -> Limits:
        cfg = cfg or global_config
        return cls(cfg.NS_MAX_NAMES, cfg.NS_MAX_NAME_LENGTH, cfg.NS_MAX_URI_LENGTH, cfg.NS_MAX_METADATA,
                   cfg.NS_MAX_TAG_LENGTH)

    def check_name(self, name: str) -> None:
        if self.max_name_length and len(name) > self.max_name_length:
            raise NamingError(f"name too long: {len(name)} characters, this name server accepts at most "
                              f"{self.max_name_length} (config item NS_MAX_NAME_LENGTH)")

    def check_uri(self, uri: str) -> None:
        if self.max_uri_length and len(uri) > self.max_uri_length:
            raise NamingError(f"uri too long: {len(uri)} characters, this name server accepts at most "
                              f"{self.max_uri_length} (config item NS_MAX_URI_LENGTH)")

    def check_tags(self, tags: frozenset[str]) -> None:
        if self.max_metadata and len(tags) > self.max_metadata:
            raise NamingError(f"too many metadata tags: {len(tags)}, this name server accepts at most "
                              f"{self.max_metadata} per name (config item NS_MAX_METADATA)")
        if self.max_tag_length:
            for tag in tags:
                if len(tag) > self.max_tag_length:
                    raise NamingError(f"metadata tag too long: {len(tag)} characters ({tag[:40]!r}...), this name "
                                      f"server accepts at most {self.max_tag_length} (config item NS_MAX_TAG_LENGTH)")

    def check_regex(self, regex: str) -> None:
        # a pattern is compiled before anything else; its length bounds that work
        longest = 4 * self.max_name_length
        if self.max_name_length and len(regex) > longest:
            raise NamingError(f"regex too long: {len(regex)} characters, this name server accepts at most "
                              f"{longest} (4 x config item NS_MAX_NAME_LENGTH)")

    def check_room(self, count: int) -> None:
        """Refuse a new name when the registry already holds ``count`` >= the limit."""
        if self.max_names and count >= self.max_names:
            raise NamingError(f"name server full: it holds {count} names, the most it accepts "
                              f"(config item NS_MAX_NAMES); remove names or raise the limit")


class WriteKey:
    """The key mutating calls must present (``key`` None: no key, everything open)."""

    def __init__(self, key: str | None) -> None:
        if key is not None and (not isinstance(key, str) or not key.strip()):
            raise ValueError("a name server key must be a non-empty string")
        self._key = key.encode("utf-8") if key is not None else None

    @property
    def required(self) -> bool:
        return self._key is not None

    def check(self, what: str) -> None:
        """Raise :class:`NamingError` unless the connection making this call presented the key."""
        if self._key is None:
            return
        ctx = peek_context()
        conn = ctx.client if ctx is not None else None
        if conn is None:
            return  # not a remote call: this process's own code
        handshake = getattr(conn, "handshake", None)
        presented = handshake.get(NS_KEY_FIELD) if isinstance(handshake, dict) else None
        if presented is None:
            raise NamingError(
                f"{what} needs the name server's write key (this name server was started with NS_KEY / --key): "
                f"present it with ember.locate_ns(key=...), 'ember nsc --key', config item NS_KEY, or on a "
                f"Pyro5 proxy ns._pyroHandshake = {{'{NS_KEY_FIELD}': KEY}}")
        if not isinstance(presented, str) or not hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), self._key):
            raise NamingError(f"{what} refused: the name server write key presented on this connection is wrong")

