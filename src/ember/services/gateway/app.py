"""``create_app``: the gateway and console as one Starlette (ASGI) application.

Routes::

    GET|POST /pyro/<name>/<method>?arg=value   call (Pyro5 gateway compatible); JSON body {"args", "kwargs"}
    GET      /pyro/<name>/<attribute>          read an exposed attribute
    GET      /pyro/<name>/$meta                methods and attributes
    OPTIONS  /pyro/...                         CORS preflight
    GET      /openapi.json                     OpenAPI 3.1 of every exposed name
    GET      /events/<pattern>                 server-sent events (when an event source is given)
    GET      /, /object/<name>, /events        the console; /static/* its script and style
    POST     /console/remove                   remove a name (needs the gateway key)
    GET      /console/ping                     ping the name server
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ...client import AsyncProxy
from ...config import config
from ...context import current_context
from ...errors import CommunicationError, ConfigError, PyroError, TimeoutError
from ...naming.locate import alocate_ns
from . import console
from .calls import (
    GatewayRefusal,
    ProxyPool,
    call_arguments,
    communication_refusal,
    correlation_id,
    deadline,
    dumps,
    error_body,
    is_exposed,
    timeout_refusal,
)
from .openapi import openapi_document
from .sse import EventHub

__all__ = ["Gateway", "create_app"]

log = logging.getLogger("ember.services.gateway")
STATIC = Path(__file__).resolve().parent / "static"
_JSON = "application/json; charset=utf-8"
_ALLOW_HEADERS = "Content-Type, X-Pyro-Options, X-Pyro-Correlation-Id, X-Pyro-Gateway-Key"


def _static_files() -> dict[str, tuple[bytes, str]]:
    types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
    return {p.name: (p.read_bytes(), types[p.suffix]) for p in STATIC.iterdir() if p.suffix in types}


class Gateway:
    """The state behind the routes: settings, the proxy pool, the event hub."""

    def __init__(self, *, expose: str, gateway_key: str | None, timeout: float, cors: str | None,
                 max_body: int, pool: ProxyPool, hub: EventHub | None) -> None:
        try:
            self.expose: re.Pattern[str] | None = re.compile(expose) if expose else None
        except re.error as exc:
            raise ConfigError(f"invalid expose pattern {expose!r}: {exc}") from None
        self.expose_text = expose
        self.key = gateway_key.encode("utf-8") if gateway_key else None
        self.timeout = timeout
        self.cors = cors
        self.max_body = max_body
        self.pool = pool
        self.hub = hub
        self.static = _static_files()

    async def aclose(self) -> None:
        """Close the event subscription and every pooled connection (the app's lifespan does this
        at shutdown; call it yourself when the app is mounted in another one, whose lifespan
        does not reach it)."""
        if self.hub is not None:
            await self.hub.aclose()
        await self.pool.aclose()

    # ---- checks --------------------------------------------------------------------------

    def key_ok(self, request: Request) -> bool:
        if self.key is None:
            return True
        given = request.headers.get("x-pyro-gateway-key")
        if not given:
            given = dict(parse_qsl(_query(request))).get("$key", "")
        return hmac.compare_digest(given.encode("utf-8"), self.key)

    def check_key(self, request: Request) -> None:
        if not self.key_ok(request):
            raise GatewayRefusal(403, "forbidden: missing or wrong gateway key (header X-Pyro-Gateway-Key or query $key)")

    def check_exposed(self, name: str) -> None:
        if not is_exposed(name, self.expose):
            raise GatewayRefusal(403, f"forbidden: {name!r} is not exposed by this gateway "
                                      f"(expose pattern {self.expose_text!r})")

    async def body(self, request: Request) -> bytes:
        """The request body, refused with 413 once it passes ``max_body`` bytes."""
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body:
            raise GatewayRefusal(413, f"request body of {declared} bytes is over the limit of {self.max_body}")
        chunks = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise GatewayRefusal(413, f"request body is over the limit of {self.max_body} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        if self.cors:
            headers["Access-Control-Allow-Origin"] = self.cors
            headers["Access-Control-Expose-Headers"] = "X-Pyro-Correlation-Id"
        return headers

    def refusal(self, exc: GatewayRefusal, extra: dict[str, str] | None = None) -> Response:
        return Response(dumps({"error": exc.message, "status": exc.status}), exc.status, self.headers(extra),
                        media_type=_JSON)

    # ---- the gateway proper ------------------------------------------------------------

    async def pyro(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(b"", 200, self.headers({"Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                                                    "Access-Control-Allow-Headers": _ALLOW_HEADERS,
                                                    "Access-Control-Max-Age": "600"}))
        path = request.path_params["path"]
        name, sep, method = path.rpartition("/")
        if not path:
            return RedirectResponse(_root(request) + "/", 302)
        corr_header: dict[str, str] = {}
        try:
            if not sep or not name or not method:
                raise GatewayRefusal(404, f"not found: use /pyro/<name>/<method>, got /pyro/{path}")
            self.check_key(request)
            self.check_exposed(name)
            corr = correlation_id(request.headers.get("x-pyro-correlation-id"))
            corr_header = {"X-Pyro-Correlation-Id": str(corr)}
            body = await self.body(request) if request.method == "POST" else b""
            args, kwargs = call_arguments(_query(request), body, request.headers.get("content-type", ""))
            oneway = "oneway" in (o.strip() for o in request.headers.get("x-pyro-options", "").split(","))
            current_context.correlation_id = corr
            return await self._call(name, method, args, kwargs, oneway, corr_header)
        except GatewayRefusal as exc:
            return self.refusal(exc, corr_header)

    async def _call(self, name: str, method: str, args: list[Any], kwargs: dict[str, Any], oneway: bool,
                    corr_header: dict[str, str]) -> Response:
        pool = self.pool
        acquired = None
        broken = True  # unless it ends well: close the connection (a late reply must not answer the next call)
        lost = False  # the connection failed
        try:
            async with deadline(self.timeout):
                acquired = await pool.acquire(name)
                proxy = acquired[0]
                if method == "$meta":
                    result: Any = {"methods": sorted(proxy._methods), "attributes": sorted(proxy._attrs),
                                   "oneway": sorted(proxy._oneway_server)}
                else:
                    result = await pool.call(proxy, method, args, kwargs, oneway)
            broken = False
            if method != "$meta" and (oneway or method in proxy._oneway_server):  # no result: empty, as Pyro5's
                return Response(b"", 200, self.headers(corr_header), media_type=_JSON)
            if hasattr(result, "__anext__"):
                stream, acquired = acquired, None  # the stream gives the connection back when it ends
                return StreamingResponse(self._ndjson(result, name, stream), 200, self.headers(corr_header),
                                         media_type="application/x-ndjson")
            return Response(dumps(result), 200, self.headers(corr_header), media_type=_JSON)
        except GatewayRefusal:
            broken = False
            raise
        except asyncio.TimeoutError:
            raise timeout_refusal(f"{name!r}", self.timeout) from None
        except CommunicationError as exc:
            if getattr(exc, "_pyroTraceback", None) is not None:
                broken = False
                return self._remote_failure(exc, corr_header)  # raised by the remote code itself
            lost = True
            if isinstance(exc, TimeoutError):  # the proxy's own timeout (same length as the deadline) came first
                raise timeout_refusal(f"{name!r}", self.timeout) from None
            raise communication_refusal(f"{name!r}", exc) from None
        except Exception as exc:  # the remote method raised (or the result cannot be json)
            broken = False
            return self._remote_failure(exc, corr_header)
        finally:
            if acquired is not None:
                if broken and not lost and acquired[0]._multiplex:
                    # timed out or cancelled: a multiplexing daemon's late reply is matched by sequence number
                    # and dropped, so the connection other requests share stays
                    broken = False
                await pool.release(name, acquired[0], acquired[1], broken)

    def _remote_failure(self, exc: BaseException, corr_header: dict[str, str]) -> Response:
        return Response(error_body(exc), 500, self.headers(corr_header), media_type=_JSON)

    async def _ndjson(self, iterator: Any, name: str, acquired: Any) -> AsyncIterator[bytes]:
        """A remote generator as newline-delimited JSON; a failure ends it with the exception dict."""
        broken = True  # until the stream ends cleanly (a cancelled or timed-out stream drops its connection)
        try:
            while True:
                try:
                    async with deadline(self.timeout):
                        item = await iterator.__anext__()
                except StopAsyncIteration:
                    broken = False
                    return
                except asyncio.TimeoutError:
                    yield dumps({"error": f"the next item did not come within {self.timeout:g} s", "status": 504}) + b"\n"
                    return
                except CommunicationError as exc:
                    yield error_body(exc) + b"\n"
                    return
                except Exception as exc:  # raised by the remote generator
                    broken = False
                    yield error_body(exc) + b"\n"
                    return
                yield dumps(item) + b"\n"
        finally:
            if not broken:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(iterator.aclose(), 2.0)
            await self.pool.release(name, acquired[0], acquired[1], broken)

    # ---- name server data --------------------------------------------------------------

    async def exposed_names(self) -> tuple[dict[str, tuple[str, list[str]]], int]:
        """Exposed names -> (uri, sorted metadata), and how many names are hidden."""
        listing = await asyncio.wait_for(self.pool.ns_call("list", return_metadata=True), self.timeout)
        entries = {}
        for name, value in listing.items():
            if is_exposed(name, self.expose):
                uri, metadata = value
                entries[name] = (str(uri), sorted(str(m) for m in metadata or ()))
        return entries, len(listing) - len(entries)

    async def ping(self) -> float:
        start = time.perf_counter()
        await asyncio.wait_for(self.pool.ns_call("ping"), self.timeout)
        return (time.perf_counter() - start) * 1000

    async def metadata_of(self, names: list[str]) -> dict[str, dict[str, Any]]:
        async def one(name: str) -> dict[str, Any]:
            try:
                async with self.pool.proxy(name) as proxy:
                    return {"methods": sorted(proxy._methods), "attributes": sorted(proxy._attrs),
                            "oneway": sorted(proxy._oneway_server)}
            except GatewayRefusal as exc:
                return {"error": exc.message}
            except PyroError as exc:
                return {"error": f"{type(exc).__name__}: {exc}"}

        async def bounded(name: str) -> dict[str, Any]:
            try:
                return await asyncio.wait_for(one(name), self.timeout)
            except asyncio.TimeoutError:
                return {"error": f"no answer within {self.timeout:g} s"}

        results = await asyncio.gather(*(bounded(n) for n in names))
        return dict(zip(names, results, strict=True))


def create_app(*, ns_host: str | None = None, ns_port: int | None = None, expose: str = r"http\.",
               gateway_key: str | None = None, timeout: float | None = None, cors: str | None = None,
               max_body: int | None = None, pool_size: int | None = None,
               make_subscriber: Callable[[], Any] | None = None,
               locate: Callable[[], Awaitable[AsyncProxy]] | None = None) -> Starlette:
    """The gateway and console as an ASGI app (see :func:`ember.web.create_app`, which adds live events).

    ``expose``: regular expression of the names that are listed and callable (``re.match``).
    ``gateway_key``: when set, every call and every change needs it. ``timeout``: seconds per
    call (default config ``GATEWAY_TIMEOUT``). ``cors``: ``Access-Control-Allow-Origin`` value
    (None: no CORS headers). ``max_body``/``pool_size``: default config ``GATEWAY_MAX_BODY``
    and ``GATEWAY_POOL_SIZE``. ``make_subscriber``: event source for ``/events`` (see
    :mod:`.sse`). ``locate``: coroutine function giving the name server proxy (default
    :func:`~ember.naming.locate.alocate_ns` at ``ns_host``/``ns_port``).
    """
    timeout = config.GATEWAY_TIMEOUT if timeout is None else timeout
    if timeout <= 0:
        raise ConfigError(f"gateway timeout must be > 0 seconds, got {timeout}")

    async def default_locate() -> AsyncProxy:
        return await alocate_ns(ns_host, ns_port)

    pool = ProxyPool(locate or default_locate, size=pool_size or config.GATEWAY_POOL_SIZE, timeout=timeout)
    hub = EventHub(make_subscriber) if make_subscriber is not None else None
    gw = Gateway(expose=expose, gateway_key=gateway_key, timeout=timeout, cors=cors,
                 max_body=config.GATEWAY_MAX_BODY if max_body is None else max_body, pool=pool, hub=hub)
    routes = [  # the calls first: the route most requests take is matched first
        Route("/pyro/{path:path}", gw.pyro, methods=["GET", "POST", "OPTIONS"]),
        Route("/pyro", lambda request: RedirectResponse(_root(request) + "/", 302)),
        Route("/openapi.json", _openapi(gw)),
        Route("/events/{pattern:path}", _events(gw)),
        *_console_routes(gw),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await gw.aclose()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gw
    return app


def _openapi(gw: Gateway) -> Callable[[Request], Awaitable[Response]]:
    async def openapi(request: Request) -> Response:
        try:
            entries, _hidden = await gw.exposed_names()
        except (PyroError, asyncio.TimeoutError) as exc:
            return gw.refusal(GatewayRefusal(503, f"name server not reachable: {exc}"))
        objects = await gw.metadata_of(sorted(entries))
        doc = openapi_document(objects, "Ember HTTP gateway", "1", gw.key is not None)
        return JSONResponse(doc, headers=gw.headers())
    return openapi


def _events(gw: Gateway) -> Callable[[Request], Awaitable[Response]]:
    async def events(request: Request) -> Response:
        try:
            gw.check_key(request)
            if gw.hub is None:
                raise GatewayRefusal(503, "this gateway has no event source (build it with ember.web.create_app)")
            pattern = request.path_params["pattern"]
            try:
                re.compile(pattern)
            except re.error as exc:
                raise GatewayRefusal(400, f"invalid subject pattern {pattern!r}: {exc}") from None
            stack = contextlib.AsyncExitStack()
            try:
                listener = await asyncio.wait_for(stack.enter_async_context(gw.hub.listen(pattern)), gw.timeout)
            except (PyroError, asyncio.TimeoutError) as exc:
                await stack.aclose()
                raise GatewayRefusal(503, f"cannot subscribe at the event service (is `ember events` running?): "
                                          f"{type(exc).__name__}: {exc}") from None
        except GatewayRefusal as exc:
            return gw.refusal(exc)
        hub = gw.hub

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for chunk in hub.stream(listener, dumps):
                    yield chunk
            finally:
                await stack.aclose()

        return StreamingResponse(stream(), 200, gw.headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}),
                                 media_type="text/event-stream")
    return events


def _console_routes(gw: Gateway) -> list[Route]:
    keyed = gw.key is not None

    async def names(request: Request) -> Response:
        ping_ms: float | None = None
        error = ""
        entries: dict[str, tuple[str, list[str]]] = {}
        hidden = 0
        ns_uri = "?"
        try:
            ping_ms = await gw.ping()
            ns_uri = str((await gw.pool.nameserver())._pyroUri)
            entries, hidden = await gw.exposed_names()
        except (GatewayRefusal, PyroError, asyncio.TimeoutError) as exc:
            error = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        html = console.names_page(entries, ns_uri, ping_ms, error, keyed=keyed, expose=gw.expose_text, hidden=hidden,
                                  root=_root(request))
        return HTMLResponse(html, 503 if error else 200)

    async def object_page(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            gw.check_exposed(name)
            try:
                uri, metadata = await asyncio.wait_for(gw.pool.ns_call("lookup", name, return_metadata=True), gw.timeout)
            except PyroError as exc:
                raise GatewayRefusal(404, f"{name!r} is not registered: {exc}") from None
            except asyncio.TimeoutError:
                raise timeout_refusal("the name server", gw.timeout) from None
        except GatewayRefusal as exc:
            body = f"<h1>{console._e(name)}</h1><p class=bad id=object-error>{console._e(exc.message)}</p>"
            return HTMLResponse(console.layout(name, body, keyed=keyed, page="object", root=_root(request)), exc.status)
        meta = (await gw.metadata_of([name]))[name]
        error = meta.get("error", "")
        html = console.object_page(name, str(uri), sorted(str(m) for m in metadata or ()),
                                   None if error else meta, error, keyed=keyed, root=_root(request))
        return HTMLResponse(html)

    async def events_page(request: Request) -> Response:
        return HTMLResponse(console.events_page(gw.hub is not None, keyed=keyed, root=_root(request)))

    async def static(request: Request) -> Response:
        found = gw.static.get(request.path_params["file"])
        if found is None:
            return Response(b"not found", 404, media_type="text/plain")
        return Response(found[0], media_type=found[1], headers={"Cache-Control": "max-age=300"})

    async def ping(request: Request) -> Response:
        try:
            return JSONResponse({"ms": round(await gw.ping(), 3)})
        except (GatewayRefusal, PyroError, asyncio.TimeoutError) as exc:
            return gw.refusal(GatewayRefusal(503, f"name server not reachable: {type(exc).__name__}: {exc}"))

    async def remove(request: Request) -> Response:
        try:
            if gw.key is None:
                raise GatewayRefusal(403, "removal is off: start the gateway with a gateway key to allow it")
            gw.check_key(request)
            try:
                data = _json_object(await gw.body(request))
            except ValueError as exc:
                raise GatewayRefusal(400, str(exc)) from None
            name = data.get("name")
            if not isinstance(name, str) or not name:
                raise GatewayRefusal(400, 'send {"name": "<the name to remove>"}')
            gw.check_exposed(name)
            removed = await asyncio.wait_for(gw.pool.ns_call("remove", name), gw.timeout)
            gw.pool.forget(name)
            log.info("console removed %r from the name server", name)
            return JSONResponse({"removed": removed, "name": name})
        except GatewayRefusal as exc:
            return gw.refusal(exc)
        except (PyroError, asyncio.TimeoutError) as exc:
            return gw.refusal(GatewayRefusal(503, f"name server refused or failed: {type(exc).__name__}: {exc}"))

    return [
        Route("/", names),
        Route("/object/{name:path}", object_page),
        Route("/events", events_page),
        Route("/static/{file}", static),
        Route("/console/ping", ping),
        Route("/console/remove", remove, methods=["POST"]),
    ]


def _query(request: Request) -> str:
    """The raw query string (without building Starlette's URL object on the hot path)."""
    return request.scope["query_string"].decode("latin-1")


def _root(request: Request) -> str:
    """Where the app is mounted ("" at the top of the server)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise ValueError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data
