"""Pyro5's public API on Ember: change ``Pyro5`` to ``ember.compat.Pyro5`` in your imports.

The modules are Pyro5's (``api``, ``errors``, ``config``, ``core``, ``client``,
``server``, ``nameserver``, ``socketutil``, ``callcontext``, ``serializers``) with
Pyro5's names and defaults (serpent serializer, ``localhost``), built on Ember's native
classes: a compat :class:`~ember.compat.Pyro5.client.Proxy` is an :class:`ember.Proxy`,
a compat :class:`~ember.compat.Pyro5.server.Daemon` an :class:`ember.Daemon`. A Pyro5
name this layer does not offer raises :class:`AttributeError` naming the native
equivalent, or saying why it is missing. docs/migrating-from-pyro5.md has the table.
"""

from __future__ import annotations

from .config import config

__version__ = "5.17"
"""The Pyro5 version whose API this layer follows."""

__all__ = ["config", "__version__"]
