"""What the daemon needs to know about a value a method returned: plain, or an iterator."""

from __future__ import annotations

import collections.abc
from typing import Any

__all__ = ["PLAIN", "is_iterator"]

_ITER_EXCLUDED = (str, bytes, bytearray, dict, list, tuple, set, frozenset)
# types that are serialized as they are (the cheap test before the iterator one)
PLAIN = frozenset({int, float, str, bytes, bool, type(None), list, tuple, dict, set, frozenset, complex})


def is_iterator(value: Any) -> bool:
    """True for iterators and generators (callers skip the plain types first: the cheap test)."""
    return isinstance(value, collections.abc.Iterator) and not isinstance(value, _ITER_EXCLUDED)
