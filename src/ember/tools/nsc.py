"""``ember nsc`` / ``python -m ember.nsc``: control a name server from the command line.

The options and commands of Pyro5's ``pyro5-nsc``; works against Ember's and Pyro5's
name servers. Exit status 0 on success, 1 on any error (printed to stderr).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import config
from ..errors import PyroError
from ..naming import locate_ns
from ..server.publish import present_ns_key
from ._run import read_key

__all__ = ["COMMANDS", "add_arguments", "execute", "run"]

COMMANDS = ("ping", "list", "listmatching", "lookup", "register", "remove", "removematching", "setmeta",
            "yplookup_all", "yplookup_any", "replicas")


class _Fail(Exception):
    """A command could not do what was asked (message for the user)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", "--host", help="name server host (default: locate it via NS_HOST, broadcast, URI file)")
    parser.add_argument("-p", "--port", type=int, help="name server port (or the broadcast port when no host is given)")
    parser.add_argument("-u", "--unixsocket", help="name server unix domain socket")
    parser.add_argument("-v", "--verbose", action="store_true", help="say which name server is used")
    parser.add_argument("--key", default=None, metavar="KEY",
                        help="the name server's write key, for register/remove/setmeta (default NS_KEY)")
    parser.add_argument("--key-file", default=None, metavar="PATH", help="read the write key from this file's first line")
    parser.add_argument("-y", "--yes", action="store_true", help="don't ask for confirmation (removematching)")
    parser.add_argument("command", choices=COMMANDS, metavar="command",
                        help="one of: " + ", ".join(COMMANDS))
    parser.add_argument("arguments", nargs="*", help="the command's arguments")


def _meta_text(meta: Any) -> str:
    return ", ".join(sorted(meta)) if meta else "(none)"


def _print_entries(title: str, entries: dict) -> None:
    print(f"--- {title}: {len(entries)} name(s) ---")
    for name in sorted(entries):
        value = entries[name]
        if isinstance(value, (list, tuple)):
            uri, meta = value
            print(f"{name} --> {uri}")
            print(f"    metadata: {_meta_text(meta)}")
        else:
            print(f"{name} --> {value}")


def _need(args: list[str], count: int, usage: str, at_most: int | None = None) -> None:
    if len(args) < count or (at_most is not None and len(args) > at_most):
        raise _Fail(f"usage: {usage}")


def _confirm(question: str, assume_yes: bool) -> bool:
    if assume_yes:
        return True
    print(f"{question} [y/N] ", end="", flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def execute(ns: Any, command: str, args: list[str], assume_yes: bool = False) -> None:
    """Run one nsc command against a name server proxy, printing the outcome."""
    if command == "ping":
        _need(args, 0, "ping", 0)
        ns.ping()
        print("Name server ping ok.")
    elif command == "list":
        _need(args, 0, "list [prefix]", 1)
        prefix = args[0] if args else None
        entries = ns.list(prefix=prefix, return_metadata=True)
        _print_entries(f"names with prefix {prefix!r}" if prefix else "all names", entries)
    elif command == "listmatching":
        _need(args, 1, "listmatching regex", 1)
        _print_entries(f"names matching {args[0]!r}", ns.list(regex=args[0], return_metadata=True))
    elif command == "lookup":
        _need(args, 1, "lookup name", 1)
        uri, meta = ns.lookup(args[0], return_metadata=True)
        print(f"{args[0]} --> {uri}")
        print(f"    metadata: {_meta_text(meta)}")
    elif command == "register":
        _need(args, 2, "register name uri", 2)
        ns.register(args[0], args[1], safe=True)
        print(f"Registered {args[0]} --> {args[1]}")
    elif command == "remove":
        _need(args, 1, "remove name", 1)
        if ns.remove(args[0]) != 1:
            raise _Fail(f"nothing removed: {args[0]!r} is not registered (or is reserved)")
        print(f"Removed {args[0]}")
    elif command == "removematching":
        _need(args, 1, "removematching regex", 1)
        matches = ns.list(regex=args[0])
        matches.pop("Pyro.NameServer", None)
        if not matches:
            print(f"No names match {args[0]!r}.")
            return
        _print_entries(f"names matching {args[0]!r}", matches)
        if not _confirm(f"Remove these {len(matches)} name(s)?", assume_yes):
            print("Nothing removed.")
            return
        print(f"Removed {ns.remove(regex=args[0])} name(s).")
    elif command == "setmeta":
        _need(args, 1, "setmeta name [tag ...]")
        ns.set_metadata(args[0], args[1:])
        print(f"Metadata of {args[0]} set to: {_meta_text(args[1:])}" if args[1:] else f"Metadata of {args[0]} cleared")
    elif command in ("yplookup_all", "yplookup_any"):
        _need(args, 1, f"{command} tag [tag ...]")
        which = "all" if command == "yplookup_all" else "any"
        found = ns.yplookup(meta_all=args if which == "all" else None, meta_any=args if which == "any" else None,
                            return_metadata=True)
        _print_entries(f"names with {which} of the tags {', '.join(args)}", found)
    elif command == "replicas":  # Ember name servers: every URI of a replicated name
        _need(args, 1, "replicas name", 1)
        uris, meta = ns.replicas(args[0], return_metadata=True)
        print(f"{args[0]} --> {len(uris)} replica(s)")
        for uri in uris:
            print(f"    {uri}")
        print(f"    metadata: {_meta_text(meta)}")
    else:  # argparse's choices keep us from getting here
        raise _Fail(f"unknown command {command!r}")


def run(args: argparse.Namespace) -> int:
    try:
        key = read_key(args.key, args.key_file)
    except (ValueError, OSError) as exc:
        print(f"ember nsc: error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.unixsocket:
            ns = locate_ns("./u:" + args.unixsocket)
        elif args.host:
            ns = locate_ns(args.host, args.port)
        else:
            ns = locate_ns(port=args.port, bcport=args.port)
    except PyroError as exc:
        print(f"ember nsc: error: {exc}", file=sys.stderr)
        return 1
    try:
        # serpent carries every metadata form (Pyro5's name server sends frozensets)
        ns._release()
        ns._serializer = "serpent"
        present_ns_key(ns, key if key is not None else config.NS_KEY)
        if args.verbose:
            print(f"Name server: {ns._pyroUri}")
        execute(ns, args.command, args.arguments, args.yes)
        return 0
    except _Fail as exc:
        print(f"ember nsc: {exc}", file=sys.stderr)
        return 1
    except (PyroError, ValueError, TypeError) as exc:
        print(f"ember nsc: error: {exc}", file=sys.stderr)
        return 1
    finally:
        ns._release()

