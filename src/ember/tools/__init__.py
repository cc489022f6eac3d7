"""The ``ember`` command line (top layer): nothing in Ember imports this package.

``cli`` holds the entry point and the one subcommand table; ``ns``, ``nsc``, ``echo``,
``bench`` and ``demo`` each hold one subcommand (a function that adds its arguments and one
that runs it); ``_run`` the helpers that run a server until Ctrl-C or SIGTERM.
"""
