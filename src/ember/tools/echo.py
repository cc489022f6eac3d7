"""``ember echo``: run the echo server (object id ``test.echoserver``), as Pyro5's echo server."""

from __future__ import annotations

import argparse
import sys

from ..errors import PyroError
from ..naming import start_ns
from ..server import Daemon
from ..services.echo import EchoServer
from ._run import serve_until_stopped, stop_on_sigterm

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-H", "--host", default="127.0.0.1", help="hostname to bind server on (default 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=0, help="port to bind server on (0 = random)")
    parser.add_argument("-u", "--unixsocket", help="unix domain socket name to bind server on")
    parser.add_argument("-n", "--naming", action="store_true", help="register with the name server")
    parser.add_argument("-N", "--nameserver", action="store_true", help="also start a name server")
    parser.add_argument("-v", "--verbose", action="store_true", help="verbose output")
    parser.add_argument("-q", "--quiet", action="store_true", help="don't output anything")


def run(args: argparse.Namespace) -> int:
    service = None
    try:
        if args.nameserver:
            service = start_ns(args.host)
            if not args.quiet:
                print(service.describe())
        ns = service.uri if service is not None else (True if args.naming else None)
        daemon = Daemon(host=args.host, port=args.port, unixsocket=args.unixsocket, servertype="multiplex", ns=ns)
        echo = EchoServer()
        echo._verbose = args.verbose
        uri = daemon.register(echo, "test.echoserver")
    except PyroError as exc:
        if service is not None:
            service.shutdown()
        print(f"ember echo: error: {exc}", file=sys.stderr)
        return 1

    def stop() -> None:
        daemon.shutdown()
        if service is not None:
            service.shutdown()

    stop_on_sigterm(stop)
    if not args.quiet:
        print("Ember echo server running.")
        if ns is not None:
            print("registered in the name server as test.echoserver")
        print(f"uri = {uri}", flush=True)
    serve_until_stopped(daemon.request_loop, stop)
    if not args.quiet:
        print("Echo server stopped.")
    return 0
