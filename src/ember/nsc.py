"""``python -m ember.nsc``: the ``ember nsc`` command (:mod:`ember.tools.nsc`) under its old name."""

import sys

from .tools.cli import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand("nsc", prog="python -m ember.nsc"))
