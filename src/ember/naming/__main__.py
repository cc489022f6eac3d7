"""``python -m ember.naming``: the ``ember ns`` command (:mod:`ember.tools.ns`) under its old name."""

import sys

from ..tools.cli import run_subcommand

if __name__ == "__main__":
    sys.exit(run_subcommand("ns", prog="python -m ember.naming"))
