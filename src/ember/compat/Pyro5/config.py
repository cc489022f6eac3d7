"""``Pyro5.config``: Pyro5's config item names, with Pyro5's defaults where Ember's differ.

The object :data:`config` reads and writes Ember's process-wide config (``ember.config``)
for every item, except four whose Pyro5 default differs from Ember's; those are kept here
and used by the compat classes: ``SERIALIZER`` (``"serpent"``; a compat proxy's
serializer), ``HOST`` (``"localhost"``; where a compat daemon binds), ``SOCK_NODELAY``
(False) and ``LOGFILE`` (``"pyro5.log"``). ``PYRO_*`` environment variables set them as
in Pyro5. The module itself also behaves as the object, so both ``from
ember.compat.Pyro5 import config`` spellings work: ``config.SERIALIZER = "json"``.
"""

from __future__ import annotations

import os
import sys
import types
from typing import Any

from ...config import ITEMS
from ...config import config as ember_config

__all__ = ["Configuration", "config", "PYRO5_DEFAULTS"]

# the items whose Pyro5 default differs from Ember's
PYRO5_DEFAULTS: dict[str, Any] = {"SERIALIZER": "serpent", "HOST": "localhost", "SOCK_NODELAY": False,
                                  "LOGFILE": "pyro5.log"}
# Pyro5's own items (5.17); every other item of Ember's is Ember's alone and not shown here
_PYRO5_ITEMS = {"BROADCAST_ADDRS", "COMMTIMEOUT", "COMPRESSION", "DETAILED_TRACEBACK", "HOST", "ITER_STREAMING",
                "ITER_STREAM_LIFETIME", "ITER_STREAM_LINGER", "LOGFILE", "LOGLEVEL", "LOGWIRE", "MAX_MESSAGE_SIZE",
                "MAX_RETRIES", "NATHOST", "NATPORT", "NS_AUTOCLEAN", "NS_BCHOST", "NS_BCPORT", "NS_HOST",
                "NS_LOOKUP_DELAY", "NS_PORT", "POLLTIMEOUT", "PREFER_IP_VERSION", "SERIALIZER", "SERPENT_BYTES_REPR",
                "SERVERTYPE", "SOCK_NODELAY", "SOCK_REUSE", "SSL", "SSL_CACERTS", "SSL_CLIENTCERT", "SSL_CLIENTKEY",
                "SSL_CLIENTKEYPASSWD", "SSL_REQUIRECLIENTCERT", "SSL_SERVERCERT", "SSL_SERVERKEY",
                "SSL_SERVERKEYPASSWD", "THREADPOOL_SIZE", "THREADPOOL_SIZE_MIN"}
_EMBER_ONLY = set(ITEMS) - _PYRO5_ITEMS


class Configuration:
    """Pyro5's config object: item attributes, ``reset()``, ``copy()``, ``as_dict()``, ``dump()``."""

    def __init__(self) -> None:
        object.__setattr__(self, "_own", {})
        self._load_own()

    def _load_own(self) -> None:
        own = dict(PYRO5_DEFAULTS)
        for name in PYRO5_DEFAULTS:
            text = os.environ.get("PYRO_" + name)
            if text is not None:
                own[name] = text.strip().lower() in ("1", "yes", "on", "true") if name == "SOCK_NODELAY" else text
        self._own.clear()
        self._own.update(own)

    def __getattr__(self, name: str) -> Any:
        own = object.__getattribute__(self, "_own")
        if name in own:
            return own[name]
        if name in ITEMS and name not in _EMBER_ONLY:
            return getattr(ember_config, name)
        raise AttributeError(f"no config item {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._own:
            self._own[name] = value
        elif name in ITEMS and name not in _EMBER_ONLY:
            setattr(ember_config, name, value)
        else:
            raise AttributeError(f"invalid config item: {name}")  # what Pyro5 raises for a typo

    def reset(self, use_environment: bool = True) -> None:
        """Back to the defaults (Pyro5's for the four items above, Ember's for the rest)."""
        ember_config.reset(use_environment)
        self._load_own()
        if not use_environment:
            self._own.update(PYRO5_DEFAULTS)

    def as_dict(self) -> dict[str, Any]:
        """Every Pyro5 item and its value."""
        items = {k: v for k, v in ember_config.as_dict().items() if k not in _EMBER_ONLY}
        items.update(self._own)
        return dict(sorted(items.items()))

    def copy(self) -> dict[str, Any]:
        """A snapshot of the items (a plain dict here; Pyro5 returns a Configuration)."""
        return self.as_dict()

    def dump(self) -> str:
        """The items as text, one ``NAME = value`` per line."""
        lines = ["Pyro5 compatibility layer on Ember", "Config items:"]
        lines += [f"{name} = {value!r}" for name, value in self.as_dict().items()]
        return "\n".join(lines)


config = Configuration()
"""The process-wide compat config object."""


class _ConfigModule(types.ModuleType):
    """Lets ``import ember.compat.Pyro5.config as config; config.X = ...`` reach the object."""

    def __getattr__(self, name: str) -> Any:
        return getattr(config, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.isupper():
            setattr(config, name, value)
        else:
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _ConfigModule
