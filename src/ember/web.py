"""The HTTP gateway and web console, ready to serve: ``create_app``, ``serve``, ``start``.

Needs the ``web`` extra: ``pip install 'ember-rpc[web]'`` (Starlette and uvicorn).

>>> app = ember.web.create_app(expose=r"http\\.", gateway_key="s3cret")   # an ASGI app
>>> server = ember.web.start(app, port=0)        # uvicorn in a background thread
>>> server.url
'http://127.0.0.1:41234'
>>> server.stop()

``ember gateway`` does the same from the command line. :func:`create_app` is
:func:`ember.services.gateway.create_app` plus live events: ``GET /events/<pattern>`` and the
console's events page subscribe at the event service (``ember events``) found through the
same name server.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import uvicorn

from .errors import CommunicationError
from .services.events import AsyncSubscriber
from .services.gateway import create_app as _create_gateway_app

__all__ = ["WebServer", "create_app", "serve", "start"]


def create_app(*, ns_host: str | None = None, ns_port: int | None = None, expose: str = r"http\.",
               gateway_key: str | None = None, timeout: float | None = None, cors: str | None = None,
               max_body: int | None = None, pool_size: int | None = None, events: bool = True) -> Any:
    """The gateway and console as an ASGI (Starlette) app; mount it in any ASGI server.

    ``ns_host``/``ns_port``: where the name server is (default: located as ``locate_ns()``
    does). ``expose``: regular expression of the names that may be listed and called
    (``re.match``; ``Pyro.*`` names only when the pattern names them). ``gateway_key``: when
    set, needed by every call and every change (header ``X-Pyro-Gateway-Key`` or query
    ``$key``). ``timeout``: seconds per call before 504 (config ``GATEWAY_TIMEOUT``).
    ``cors``: the ``Access-Control-Allow-Origin`` value, None for no CORS headers.
    ``max_body``: request body limit (config ``GATEWAY_MAX_BODY``). ``pool_size``: most
    connections per daemon (config ``GATEWAY_POOL_SIZE``). ``events``: serve
    ``/events/<pattern>`` from the event service.
    """

    def subscriber() -> AsyncSubscriber:
        return AsyncSubscriber(ns_host=ns_host, ns_port=ns_port)

    return _create_gateway_app(ns_host=ns_host, ns_port=ns_port, expose=expose, gateway_key=gateway_key,
                               timeout=timeout, cors=cors, max_body=max_body, pool_size=pool_size,
                               make_subscriber=subscriber if events else None)


def _uvicorn_config(app: Any, host: str, port: int, certfile: str | None, keyfile: str | None,
                    log_level: str) -> uvicorn.Config:
    if bool(certfile) != bool(keyfile):
        raise CommunicationError("HTTPS needs both a certificate file and a key file (--certfile and --keyfile)")
    return uvicorn.Config(app, host=host, port=port, ssl_certfile=certfile or None, ssl_keyfile=keyfile or None,
                          log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=2,
                          server_header=False)


def serve(app: Any, host: str = "127.0.0.1", port: int = 8080, *, certfile: str | None = None,
          keyfile: str | None = None, log_level: str = "info") -> None:
    """Serve ``app`` with uvicorn in this thread until Ctrl-C / SIGTERM (HTTPS with ``certfile`` + ``keyfile``)."""
    uvicorn.Server(_uvicorn_config(app, host, port, certfile, keyfile, log_level)).run()


class WebServer:
    """uvicorn serving an app in a background thread (see :func:`start`)."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, *, certfile: str | None = None,
                 keyfile: str | None = None, log_level: str = "warning") -> None:
        self.app = app
        self.server = uvicorn.Server(_uvicorn_config(app, host, port, certfile, keyfile, log_level))
        self.scheme = "https" if certfile else "http"
        self.host = host
        self.port = port
        self._thread = threading.Thread(target=self._run, name="ember-web", daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        try:
            asyncio.run(self.server.serve())
        except BaseException as exc:  # reported by start()
            self._error = exc

    def start(self, timeout: float = 10.0) -> WebServer:
        """Start serving; returns once the socket listens (the actual port is in :attr:`port`)."""
        self._thread.start()
        deadline = threading.Event()
        waited = 0.0
        while not self.server.started and self._thread.is_alive() and waited < timeout:
            deadline.wait(0.01)
            waited += 0.01
        if not self.server.started:
            self.stop()
            raise CommunicationError(f"the web server did not start on {self.host}:{self.port}: "
                                     f"{self._error or 'timed out'}")
        with contextlib.suppress(AttributeError, IndexError):
            self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        """``http://host:port`` (or ``https://``) of the running server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def stop(self) -> None:
        """Stop serving and wait for the thread (idempotent)."""
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(10)

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(app: Any, host: str = "127.0.0.1", port: int = 0, *, certfile: str | None = None,
          keyfile: str | None = None, log_level: str = "warning") -> WebServer:
    """Serve ``app`` with uvicorn in a background thread; returns the running :class:`WebServer`."""
    return WebServer(app, host, port, certfile=certfile, keyfile=keyfile, log_level=log_level).start()
