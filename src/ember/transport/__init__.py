"""The only layer that touches sockets, ``ssl`` and asyncio streams.

:mod:`.sync` holds blocking (and selector-driven non-blocking) sockets, :mod:`.aio` the
same surface on asyncio streams, :mod:`.tls` contexts and handshakes with a diagnosis,
:mod:`.udp` the name server's broadcast datagrams, and :mod:`.errors` the one map from
``OSError``/``ssl`` failures to :mod:`ember.errors` that all of them share.
"""
