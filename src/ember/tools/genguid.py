"""``ember genguid``: print new globally unique ids (random UUIDs), one per line."""

from __future__ import annotations

import argparse
import sys
import uuid

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-n", type=int, default=1, metavar="N", help="how many ids to print (default 1)")


def run(args: argparse.Namespace) -> int:
    if args.n < 0:
        print("ember genguid: error: -n must be 0 or more", file=sys.stderr)
        return 2
    sys.stdout.write("".join(f"{uuid.uuid4()}\n" for _ in range(args.n)))
    return 0
