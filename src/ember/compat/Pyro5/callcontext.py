"""``Pyro5.callcontext``: the per-thread call context (Ember's, same attribute names)."""

from __future__ import annotations

from ...context import current_context

__all__ = ["current_context"]
