"""The ``redis`` back-end: one registry in Redis, shared by any number of name servers.

Specs: ``redis://[:PASSWORD@]HOST:PORT/DB`` and ``rediss://...`` (TLS), as redis-py reads
them, plus an optional ``?prefix=NAME`` (default ``ember:ns``) so several registries can
share one Redis database. Needs the optional extra ``ember-rpc[redis]`` (redis-py).

Layout under the prefix ``P``: a hash ``P:names`` maps each name to a JSON record
``{"m": [metadata...], "r": [[uri, lease], ...]}`` (lease ``""`` when none), and each lease
is a key ``P:lease:ID`` with a Redis TTL. Every operation is one Lua script, so it is atomic
on the server whatever the number of name servers: ``put_if_absent`` is how two of them
agree on who registered a name first. A member whose lease key has expired is dropped by
the next script that reads its name, so a dead daemon's names are never returned after
its lease time. Scripts name the lease keys themselves: one Redis server (or a
primary with replicas/Sentinel), not Redis Cluster.

Redis going away makes every call raise :class:`~ember.errors.NamingError` within the
socket timeout (2 s); calls work again as soon as Redis is back.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ...errors import NamingError
from ...uri import split_store_url
from . import Entry, Replicas, Storage

try:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(f"the redis name server storage needs redis-py: pip install 'ember-rpc[redis]' ({exc})") from None

__all__ = ["RedisStorage"]

T = TypeVar("T")
_TIMEOUT = 2.0  # seconds for connecting to and hearing from Redis: an unreachable Redis fails calls, never hangs them

# helpers every script starts with; KEYS[1] is the names hash, ARGV[1] the key prefix
_PRELUDE = """
local NAMES = KEYS[1]
local P = ARGV[1]
local function lease_alive(lease)
  return lease == '' or redis.call('EXISTS', P .. ':lease:' .. lease) == 1
end
-- the record of a name with only its live members (the stored record is rewritten or deleted
-- when members expired); nil when the name is unknown or every member expired
local function live(name, raw)
  if raw == nil then raw = redis.call('HGET', NAMES, name) end
  if not raw then return nil end
  local rec = cjson.decode(raw)
  local kept, changed = {}, false
  for _, m in ipairs(rec.r) do
    if lease_alive(m[2]) then table.insert(kept, m) else changed = true end
  end
  if #kept == 0 then
    redis.call('HDEL', NAMES, name)
    return nil
  end
  rec.r = kept
  if changed then redis.call('HSET', NAMES, name, cjson.encode(rec)) end
  return rec
end
"""

_GET = _PRELUDE + """
local rec = live(ARGV[2])
if rec then return cjson.encode(rec) end
return false
"""

_ITEMS = _PRELUDE + """
local all = redis.call('HGETALL', NAMES)
local out = {}
for i = 1, #all, 2 do
  local rec = live(all[i], all[i + 1])
  if rec then
    table.insert(out, all[i])
    table.insert(out, cjson.encode(rec))
  end
end
return out
"""

_COUNT = _PRELUDE + """
local all = redis.call('HGETALL', NAMES)
local n = 0
for i = 1, #all, 2 do
  if live(all[i], all[i + 1]) then n = n + 1 end
end
return n
"""

# ARGV: prefix, name, uri, metadata (JSON list), lease ('' = none), mode
_WRITE = _PRELUDE + """
local name, uri, lease, mode = ARGV[2], ARGV[3], ARGV[5], ARGV[6]
if lease ~= '' and not lease_alive(lease) then return -1 end
local rec = live(name)
if mode == 'absent' and rec then return 0 end
local members = {}
if mode == 'replica' and rec then
  for _, m in ipairs(rec.r) do
    if m[1] ~= uri then table.insert(members, m) end
  end
end
table.insert(members, {uri, lease})
redis.call('HSET', NAMES, name, cjson.encode({m = cjson.decode(ARGV[4]), r = members}))
return 1
"""

_SET_METADATA = _PRELUDE + """
local rec = live(ARGV[2])
if not rec then return 0 end
rec.m = cjson.decode(ARGV[3])
redis.call('HSET', NAMES, ARGV[2], cjson.encode(rec))
return 1
"""

_REMOVE = _PRELUDE + """
local n = 0
for i = 2, #ARGV do
  if live(ARGV[i]) then
    redis.call('HDEL', NAMES, ARGV[i])
    n = n + 1
  end
end
return n
"""

_REMOVE_URI = _PRELUDE + """
local rec = live(ARGV[2])
if not rec then return 0 end
local kept = {}
for _, m in ipairs(rec.r) do
  if m[1] ~= ARGV[3] then table.insert(kept, m) end
end
if #kept == #rec.r then return 0 end
if #kept == 0 then
  redis.call('HDEL', NAMES, ARGV[2])
else
  rec.r = kept
  redis.call('HSET', NAMES, ARGV[2], cjson.encode(rec))
end
return 1
"""

_RENEW = _PRELUDE + """
local key = P .. ':lease:' .. ARGV[2]
local ttl = redis.call('GET', key)
if not ttl then return 0 end
redis.call('PEXPIRE', key, tonumber(ttl))
return 1
"""

_REVOKE = _PRELUDE + """
local lease = ARGV[2]
if redis.call('DEL', P .. ':lease:' .. lease) == 0 then return 0 end
local all = redis.call('HGETALL', NAMES)
local n = 0
for i = 1, #all, 2 do
  local rec = cjson.decode(all[i + 1])
  local mine = 0
  for _, m in ipairs(rec.r) do
    if m[2] == lease then mine = mine + 1 end
  end
  if mine > 0 then
    n = n + mine
    live(all[i], all[i + 1])
  end
end
return n
"""


class RedisStorage(Storage):
    """Registrations in Redis, shared by every name server that uses the same URL.

    Has the :class:`~ember.naming.storage.Leases` capability (a lease is a Redis key with
    a TTL) and the :class:`~ember.naming.storage.Replicated` one.
    """

    shared = True

    @classmethod
    def from_spec(cls, spec: str) -> RedisStorage:
        """The back-end for ``redis://...`` and ``rediss://...`` (the ``ember.naming.storage`` entry points)."""
        return cls(spec)

    def __init__(self, url: str, *, prefix: str | None = None, timeout: float = _TIMEOUT) -> None:
        plain_url, url_prefix, self.description = split_store_url(url, "ember:ns")
        self.prefix = prefix or url_prefix
        self.url = url
        try:
            self._redis = redis.Redis.from_url(plain_url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                               retry=Retry(NoBackoff(), 1), health_check_interval=0)
        except (ValueError, TypeError, redis.RedisError) as exc:
            raise NamingError(f"invalid Redis URL {self.description!r} for the name server storage: {exc} "
                              "(use redis://[:PASSWORD@]HOST:PORT/DB or rediss://...)") from None
        try:
            self._redis.ping()
        except redis.RedisError as exc:
            self._redis.close()
            raise NamingError(f"cannot use the name server storage {self.description}: {exc}") from None
        self._names = f"{self.prefix}:names"
        self._scripts = {name: self._redis.register_script(text) for name, text in (
            ("get", _GET), ("items", _ITEMS), ("count", _COUNT), ("write", _WRITE), ("meta", _SET_METADATA),
            ("remove", _REMOVE), ("remove_uri", _REMOVE_URI), ("renew", _RENEW), ("revoke", _REVOKE))}

    def _run(self, script: str, *args: Any) -> Any:
        try:
            return self._scripts[script](keys=[self._names], args=[self.prefix, *args])
        except redis.RedisError as exc:
            raise NamingError(f"name server storage {self.description} failed: {exc}") from None

    def _do(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except redis.RedisError as exc:
            raise NamingError(f"name server storage {self.description} failed: {exc}") from None

    @staticmethod
    def _record(raw: bytes | str) -> tuple[list[str], frozenset[str]]:
        rec = json.loads(raw)
        return [member[0] for member in rec["r"]], frozenset(rec["m"] or ())

    @staticmethod
    def _meta(metadata: frozenset[str]) -> str:
        return json.dumps(sorted(metadata))

    # ---- Storage ----------------------------------------------------------------------------------

    def get(self, name: str) -> Entry | None:
        raw = self._run("get", name)
        if not raw:
            return None
        uris, meta = self._record(raw)
        return uris[0], meta

    def _write(self, name: str, uri: str, metadata: frozenset[str], lease: str | None, mode: str) -> bool:
        result = self._run("write", name, uri, self._meta(metadata), lease or "", mode)
        if result == -1:
            raise NamingError(f"unknown or expired lease {lease!r}: take a new lease and register again")
        return result == 1

    def put(self, name: str, uri: str, metadata: frozenset[str]) -> None:
        self._write(name, uri, metadata, None, "replace")

    def put_if_absent(self, name: str, uri: str, metadata: frozenset[str]) -> bool:
        return self._write(name, uri, metadata, None, "absent")

    def set_metadata(self, name: str, metadata: frozenset[str]) -> bool:
        return self._run("meta", name, self._meta(metadata)) == 1

    def remove(self, names: Iterable[str]) -> int:
        names = list(names)
        return int(self._run("remove", *names)) if names else 0

    def items(self) -> dict[str, Entry]:
        flat = self._run("items")
        found: dict[str, Entry] = {}
        for i in range(0, len(flat), 2):
            uris, meta = self._record(flat[i + 1])
            name = flat[i]
            found[name.decode() if isinstance(name, bytes) else name] = (uris[0], meta)
        return found

    def count(self) -> int:
        return int(self._run("count"))

    # ---- Leases and Replicated ----------------------------------------------------------------

    def grant_lease(self, ttl: float) -> str:
        lease = uuid.uuid4().hex
        ms = max(1, int(ttl * 1000))
        self._do(lambda: self._redis.set(f"{self.prefix}:lease:{lease}", ms, px=ms))
        return lease

    def put_leased(self, name: str, uri: str, metadata: frozenset[str], lease: str | None,
                   mode: str = "replace") -> bool:
        return self._write(name, uri, metadata, lease, mode)

    def renew_lease(self, lease: str) -> bool:
        return self._run("renew", lease) == 1

    def revoke_lease(self, lease: str) -> int:
        return int(self._run("revoke", lease))

    def replicas(self, name: str) -> Replicas | None:
        raw = self._run("get", name)
        if not raw:
            return None
        uris, meta = self._record(raw)
        return tuple(uris), meta

    def remove_uri(self, name: str, uri: str) -> bool:
        return self._run("remove_uri", name, uri) == 1

    def close(self) -> None:
        self._redis.close()
