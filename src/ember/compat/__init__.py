"""Compatibility layers: other libraries' public names on Ember's native API.

``ember.compat.Pyro5`` offers Pyro5's modules (``api``, ``errors``, ``config``, ``core``,
``client``, ``server``, ``nameserver``, ``socketutil``, ``callcontext``,
``serializers``) so that porting a Pyro5 program means changing only its imports::

    from ember.compat.Pyro5 import api          # was: from Pyro5 import api
    import ember.compat.Pyro5.api as Pyro5api   # or keep the old spelling with an alias

See docs/migrating-from-pyro5.md for what differs and how to move on to the native API.
"""
