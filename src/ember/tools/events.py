"""``ember events``: run the event service (``Pyro.EventService``) until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import sys

from ..errors import PyroError
from ..services.events import EventServer
from ._run import serve_until_stopped, stop_on_sigterm

__all__ = ["add_arguments", "run"]

EPILOG = ("TLS is set up as for every Ember server, with the SSL config items (PYRO_SSL=1, PYRO_SSL_SERVERCERT, "
          "PYRO_SSL_SERVERKEY, PYRO_SSL_CACERTS, ...); queues and replay with the EVENTS_* items (see 'ember config').")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("-n", "--host", default=None, help="address to bind to (default HOST, 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=0, help="TCP port (default 0 = any free port)")
    parser.add_argument("-u", "--unixsocket", help="bind to this unix domain socket instead of TCP")
    parser.add_argument("-s", "--storage", default=None,
                        help="'memory' (default), 'sqlite:FILE' (events and sequence numbers survive restarts) or "
                             "'redis://HOST:PORT/DB' (several event services share subjects; see docs/scale-out.md)")
    parser.add_argument("--ns-host", default=None, help="the name server's host (default: located as locate_ns does)")
    parser.add_argument("--ns-port", type=int, default=None, help="the name server's port")
    parser.add_argument("-x", "--no-ns", action="store_true", help="don't register in a name server")
    parser.add_argument("--nathost", default=None, help="external host name published in the URI (NAT)")
    parser.add_argument("--natport", type=int, default=None, help="external port published in the URI (NAT)")


def run(args: argparse.Namespace) -> int:
    try:
        server = EventServer(args.host, args.port, unixsocket=args.unixsocket, storage=args.storage,
                             ns=not args.no_ns, ns_host=args.ns_host, ns_port=args.ns_port,
                             nathost=args.nathost, natport=args.natport)
    except (PyroError, ValueError, OSError) as exc:
        print(f"ember events: error: {exc}", file=sys.stderr)
        return 1
    stop_on_sigterm(server.shutdown)
    print(server.describe())
    print("Press Ctrl-C (or send SIGTERM) to stop.", flush=True)
    serve_until_stopped(server.request_loop, server.shutdown)
    print("Event service stopped.", flush=True)
    return 0
