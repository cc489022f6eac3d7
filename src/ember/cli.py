"""The ``ember`` command: one entry point with subcommands.

Each subcommand only parses arguments and calls library functions.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Sequence


def _cmd_config(args: argparse.Namespace) -> int:
    import ember

    from .config import config
    from .protocol import PROTOCOL_VERSION

    print(f"Ember {ember.__version__} (Pyro5 wire protocol {PROTOCOL_VERSION}) at {ember.__path__[0]}")
    print(f"Python {sys.version.split()[0]}")
    print(config.dump())
    return 0


def stop_on_sigterm(stop: Callable[[], None]) -> None:
    """From now on SIGTERM stops the server cleanly: ``stop()`` runs in a helper thread.

    Call it before announcing the server, so a SIGTERM right after the announcement is
    never the default (abrupt) one.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: threading.Thread(target=stop, name="ember-stop").start())


def serve_until_stopped(loop: Callable[[], None], stop: Callable[[], None]) -> None:
    """Run a server loop until Ctrl-C or SIGTERM, then stop it cleanly (for command-line servers)."""
    stop_on_sigterm(stop)
    try:
        loop()
    except KeyboardInterrupt:
        pass
    finally:
        stop()


def build_parser() -> argparse.ArgumentParser:
    import ember

    parser = argparse.ArgumentParser(prog="ember", description="Ember: remote Python objects (Pyro5 protocol).")
    parser.add_argument("--version", action="version", version=f"ember {ember.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("config", help="print every config item, its value and where it came from")
    p.set_defaults(func=_cmd_config)
    for register in _SUBCOMMANDS:
        register(sub)
    return parser


def _ns(sub: argparse._SubParsersAction) -> None:
    from .naming.__main__ import register_cli

    register_cli(sub)


def _nsc(sub: argparse._SubParsersAction) -> None:
    from .nsc import register_cli

    register_cli(sub)


def _echo(sub: argparse._SubParsersAction) -> None:
    from .echo import register_cli

    register_cli(sub)


def _bench(sub: argparse._SubParsersAction) -> None:
    from .bench import register_cli

    register_cli(sub)


def _demo(sub: argparse._SubParsersAction) -> None:
    from .demo import register_cli

    register_cli(sub)


# one registration function per subcommand module
_SUBCOMMANDS: list = [_ns, _nsc, _echo, _bench, _demo]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ember`` command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
