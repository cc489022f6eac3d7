"""The ``ember`` command: one entry point, one table of subcommands.

Each subcommand is a row of :data:`SUBCOMMANDS`: a function that adds its arguments to a
parser and a function that runs it with the parsed arguments and returns the exit code. The
subcommands only parse arguments and call library functions.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ember

from ..config import config
from ..protocol import PROTOCOL_VERSION
from . import bench, demo, echo, events, gateway, genguid, ns, nsc

__all__ = ["SUBCOMMANDS", "Subcommand", "build_parser", "main", "run_subcommand"]


@dataclass(frozen=True)
class Subcommand:
    """One ``ember`` subcommand."""

    help: str  # one line in ``ember --help``
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    description: str | None = None  # of the stand-alone program (python -m ember.naming / ember.nsc)


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    """``ember config`` takes no arguments."""


def _config(args: argparse.Namespace) -> int:
    print(f"Ember {ember.__version__} (Pyro5 wire protocol {PROTOCOL_VERSION}) at {ember.__path__[0]}")
    print(f"Python {sys.version.split()[0]}")
    print(config.dump())
    return 0


# name -> subcommand, in the order ``ember --help`` lists them
SUBCOMMANDS: dict[str, Subcommand] = {
    "config": Subcommand("print every config item, its value and where it came from", _config_arguments, _config),
    "ns": Subcommand("run a name server (same options as pyro5-ns)", ns.add_arguments, ns.run,
                     "Run Ember's name server."),
    "nsc": Subcommand("control a name server (same commands as pyro5-nsc)", nsc.add_arguments, nsc.run,
                      "Control a name server."),
    "echo": Subcommand("run the echo server (object id test.echoserver)", echo.add_arguments, echo.run,
                       "Run Ember's echo server."),
    "events": Subcommand("run the event service (publish/subscribe, registered as Pyro.EventService)",
                         events.add_arguments, events.run, "Run Ember's event service."),
    "gateway": Subcommand("serve the HTTP gateway and web console (same options as pyro5-httpgateway)",
                          gateway.add_arguments, gateway.run, "Run Ember's HTTP gateway and web console."),
    "genguid": Subcommand("print new globally unique ids, one per line", genguid.add_arguments, genguid.run,
                          "Print new globally unique ids."),
    "bench": Subcommand("measure calls/s and latency of a method of your server", bench.add_arguments, bench.run,
                        "Measure calls to your server."),
    "demo": Subcommand("run a name server, a daemon and a client on loopback and show what happens",
                       demo.add_arguments, demo.run, demo.__doc__),
}


def build_parser(prog: str = "ember") -> argparse.ArgumentParser:
    """The parser of the ``ember`` command, with one sub-parser per row of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(prog=prog, description="Ember: remote Python objects (Pyro5 protocol).")
    parser.add_argument("--version", action="version", version=f"ember {ember.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=command.help)
        command.add_arguments(p)
        p.set_defaults(func=command.run)
    return parser


def _call(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None, prog: str = "ember") -> int:
    """Run the ``ember`` command line; returns the exit code."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return _call(args.func, args)


def run_subcommand(name: str, argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run one subcommand as a program of its own (``python -m ember.naming``); returns the exit code."""
    command = SUBCOMMANDS[name]
    parser = argparse.ArgumentParser(prog=prog or f"ember {name}", description=command.description)
    command.add_arguments(parser)
    return _call(command.run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
