"""The HTTP gateway and web console: call exposed objects over HTTP+JSON, browse the name server.

Optional: needs the ``web`` extra (``pip install 'ember-rpc[web]'``: Starlette and uvicorn).
:func:`create_app` builds the ASGI app; :func:`ember.web.create_app` adds live events from
the event service, and ``ember gateway`` serves it. See docs/web.md.
"""

from __future__ import annotations

from .app import Gateway, create_app
from .calls import GatewayRefusal, ProxyPool

__all__ = ["Gateway", "GatewayRefusal", "ProxyPool", "create_app"]
