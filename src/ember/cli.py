"""Old home of the ``ember`` command, kept so ``python -m ember.cli`` works; see :mod:`ember.tools.cli`."""

import sys

from .tools.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
