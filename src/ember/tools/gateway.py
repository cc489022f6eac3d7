"""``ember gateway``: the HTTP gateway and web console (options as ``pyro5-httpgateway``), served by uvicorn."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

import ember

from ..config import config
from ..errors import PyroError

__all__ = ["add_arguments", "run"]

EPILOG = ("Calls: GET/POST /pyro/<name>/<method>?arg=value (JSON body {\"args\": [...], \"kwargs\": {...}} for typed "
          "arguments); console at /; OpenAPI at /openapi.json; live events at /events/<pattern>. "
          "Limits: config items GATEWAY_MAX_BODY, GATEWAY_POOL_SIZE. Needs: pip install 'ember-rpc[web]'.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to serve HTTP on (default %(default)s)")
    parser.add_argument("-p", "--port", type=int, default=8080, help="HTTP port (default %(default)s; 0 = any free port)")
    parser.add_argument("-e", "--expose", default=r"http\.",
                        help="regular expression of the names that may be listed and called (default %(default)s)")
    parser.add_argument("-g", "--gatewaykey", default=None,
                        help="key every call and change must carry (header X-Pyro-Gateway-Key or query $key)")
    parser.add_argument("-t", "--timeout", type=float, default=None,
                        help="seconds a call may take before the answer is 504 (default config GATEWAY_TIMEOUT)")
    parser.add_argument("-c", "--cors", default="*", help="Access-Control-Allow-Origin value (default %(default)s; "
                                                         "'' for no CORS headers)")
    parser.add_argument("-n", "--ns-host", default=None, help="the name server's host (default: located as locate_ns does)")
    parser.add_argument("--ns-port", type=int, default=None, help="the name server's port")
    parser.add_argument("--certfile", default=None, help="serve HTTPS with this certificate (PEM; needs --keyfile)")
    parser.add_argument("--keyfile", default=None, help="the private key of --certfile (PEM)")
    parser.add_argument("--no-events", action="store_true", help="do not serve /events (no event service needed)")


def run(args: argparse.Namespace) -> int:
    try:
        # through the package's lazy attribute: Starlette and uvicorn load only when the gateway runs,
        # not on every `ember` command
        web = ember.web
    except ImportError as exc:  # the optional web extra is not installed
        print(f"ember gateway: error: the web extra is not installed ({exc}); pip install 'ember-rpc[web]'",
              file=sys.stderr)
        return 1
    try:
        app = web.create_app(ns_host=args.ns_host, ns_port=args.ns_port, expose=args.expose,
                             gateway_key=args.gatewaykey, timeout=args.timeout, cors=args.cors or None,
                             events=not args.no_events)
    except (PyroError, ValueError) as exc:
        print(f"ember gateway: error: {exc}", file=sys.stderr)
        return 1
    if args.host not in ("127.0.0.1", "::1", "localhost") and not args.gatewaykey:
        print("ember gateway: warning: serving beyond loopback without a gateway key (--gatewaykey)", file=sys.stderr)
    timeout = args.timeout if args.timeout is not None else config.GATEWAY_TIMEOUT
    print(f"Ember HTTP gateway: exposing names matching {args.expose!r}, timeout {timeout:g} s"
          f"{', gateway key required' if args.gatewaykey else ''}. Press Ctrl-C to stop.", flush=True)
    if threading.current_thread() is threading.main_thread():
        # uvicorn stops gracefully on SIGTERM, then raises the signal again under this handler: exit 0
        signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        web.serve(app, args.host, args.port, certfile=args.certfile, keyfile=args.keyfile)
    except (PyroError, OSError) as exc:
        print(f"ember gateway: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)
