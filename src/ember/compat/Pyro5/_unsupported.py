"""How a compat module answers for a Pyro5 name it does not offer.

Each module lists the Pyro5 names it leaves out, with the native equivalent or the
reason; :func:`module_getattr` turns a lookup of one into an :class:`AttributeError` that
says so (a name Pyro5 does not have either gets the usual message).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["module_getattr", "unsupported"]


def unsupported(where: str, name: str, hint: str) -> AttributeError:
    return AttributeError(f"{where}.{name} is not supported by ember.compat.Pyro5: {hint}")


def module_getattr(module: str, missing: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` raising a helpful AttributeError for the names in ``missing``."""
    where = module.replace("ember.compat.", "")

    def __getattr__(name: str) -> Any:
        hint = missing.get(name)
        if hint is not None:
            raise unsupported(where, name, hint)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
