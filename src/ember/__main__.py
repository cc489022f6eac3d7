"""``python -m ember``: the ``ember`` command (:mod:`ember.tools.cli`), for when the console
script is not on ``PATH`` (a virtual environment that is not activated, ``pip install --user``)."""

import sys

from .tools.cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m ember"))
