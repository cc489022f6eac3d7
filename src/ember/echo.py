"""The echo server: a test object ``test.echoserver``, as Pyro5's, and ``ember echo``."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from .server import Daemon, expose, oneway

__all__ = ["EchoServer", "main"]


@expose
class EchoServer:
    """Echoes its arguments; handy to check a connection and to test error handling."""

    def __init__(self) -> None:
        self._verbose = False
        self._must_shutdown = False

    def echo(self, message: Any) -> Any:
        """Return the argument unchanged."""
        if self._verbose:
            print(f"{time.strftime('%H:%M:%S')} - echo: {message!r}")
        return message

    def error(self) -> None:
        """Raise a ZeroDivisionError, to test remote exceptions."""
        if self._verbose:
            print(f"{time.strftime('%H:%M:%S')} - error: generating exception")
        1 // 0  # noqa: B018

    def error_with_text(self) -> None:
        """Raise a ValueError with a message."""
        raise ValueError("the message of the error")

    @oneway
    def oneway_echo(self, message: Any) -> None:
        """Oneway: print the argument (when verbose), return nothing."""
        if self._verbose:
            print(f"{time.strftime('%H:%M:%S')} - oneway_echo: {message!r}")

    @oneway
    def oneway_slow(self) -> None:
        """Oneway: sleep 2 seconds."""
        time.sleep(2)

    def slow(self) -> str:
        """Sleep 2 seconds, then answer."""
        time.sleep(2)
        return "Finally, an answer!"

    def generator(self) -> Iterator[str]:
        """Yield three strings (a remote generator)."""
        yield "one"
        yield "two"
        yield "three"

    def nan(self) -> float:
        return float("nan")

    def inf(self) -> float:
        return float("inf")

    @oneway
    def shutdown(self) -> None:
        """Stop the echo server (oneway, so the caller is not cut off)."""
        if self._verbose:
            print(f"{time.strftime('%H:%M:%S')} - shutting down")
        self._must_shutdown = True
        daemon = getattr(self, "_pyroDaemon", None)
        if daemon is not None:
            threading.Thread(target=daemon.shutdown, daemon=True).start()

    @property
    def verbose(self) -> bool:
        return self._verbose

    @verbose.setter
    def verbose(self, onoff: bool) -> None:
        self._verbose = bool(onoff)


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(prog="ember echo", description="Run Ember's echo server.")
    parser.add_argument("-H", "--host", default="127.0.0.1", help="hostname to bind server on (default 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=0, help="port to bind server on (0 = random)")
    parser.add_argument("-u", "--unixsocket", help="unix domain socket name to bind server on")
    parser.add_argument("-n", "--naming", action="store_true", help="register with the name server")
    parser.add_argument("-N", "--nameserver", action="store_true", help="also start a name server")
    parser.add_argument("-v", "--verbose", action="store_true", help="verbose output")
    parser.add_argument("-q", "--quiet", action="store_true", help="don't output anything")
    return parser


def run(args: argparse.Namespace) -> int:
    from .cli import serve_until_stopped, stop_on_sigterm
    from .errors import PyroError

    service = None
    try:
        if args.nameserver:
            from .naming import start_ns

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


def register_cli(sub: Any) -> None:
    p = sub.add_parser("echo", help="run the echo server (object id test.echoserver)")
    build_parser(p)
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
