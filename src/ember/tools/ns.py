"""``ember ns`` / ``python -m ember.naming``: run a name server (the options of Pyro5's ``pyro5-ns``)."""

from __future__ import annotations

import argparse
import sys

from ..config import config
from ..errors import PyroError
from ..naming import NameServerService
from ._run import read_key, serve_until_stopped, stop_on_sigterm

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--host", default=None, help=f"address to bind to (default {config.HOST})")
    parser.add_argument("-p", "--port", type=int, default=None,
                        help=f"TCP port (default NS_PORT = {config.NS_PORT}; 0 = any free port)")
    parser.add_argument("-u", "--unixsocket", help="bind to this unix domain socket instead of TCP")
    parser.add_argument("-s", "--storage", default=None,
                        help="'memory' (default), 'sql:FILE' (SQLite, survives restarts) or 'redis://HOST:PORT/DB' "
                             "(several name servers share one registry; see docs/scale-out.md)")
    parser.add_argument("--bchost", default=None, help="broadcast responder bind address")
    parser.add_argument("--bcport", type=int, default=None,
                        help=f"broadcast responder UDP port (default NS_BCPORT = {config.NS_BCPORT}; 0 = any)")
    parser.add_argument("--nathost", default=None, help="external host name published in the URI (NAT)")
    parser.add_argument("--natport", type=int, default=None, help="external port published in the URI (NAT)")
    parser.add_argument("-x", "--nobc", action="store_true", help="don't start a broadcast responder")
    parser.add_argument("--uri-file", default=None, metavar="PATH",
                        help="write the name server URI to this file (removed at exit); see NS_URI_FILE")
    parser.add_argument("--key", default=None, metavar="KEY",
                        help="write key: register/remove/set_metadata need it, reading stays open (default NS_KEY; "
                             "prefer PYRO_NS_KEY or --key-file: other users can see a command line)")
    parser.add_argument("--key-file", default=None, metavar="PATH", help="read the write key from this file's first line")
    parser.add_argument("--autoclean", type=float, default=None, metavar="SECONDS",
                        help="remove registrations whose daemon stopped answering (default NS_AUTOCLEAN; 0 = off)")


def run(args: argparse.Namespace) -> int:
    try:
        key = read_key(args.key, args.key_file)
        service = NameServerService(
            args.host, args.port, unixsocket=args.unixsocket, storage=args.storage,
            enable_broadcast=not args.nobc, bchost=args.bchost, bcport=args.bcport,
            nathost=args.nathost, natport=args.natport, autoclean=args.autoclean, uri_file=args.uri_file,
            key=key)
    except (PyroError, ValueError, OSError) as exc:
        print(f"ember ns: error: {exc}", file=sys.stderr)
        return 1
    stop_on_sigterm(service.shutdown)
    print(service.describe())
    print("Press Ctrl-C (or send SIGTERM) to stop.", flush=True)
    serve_until_stopped(service.request_loop, service.shutdown)
    print("Name server stopped.", flush=True)
    return 0
