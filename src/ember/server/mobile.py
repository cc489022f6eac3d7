"""Mobile code, daemon side: the object that installs validated modules (see :mod:`ember.mobile`)."""

from __future__ import annotations

import re
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from .. import context
from ..client.mobile import MOBILE_CODE_NAME
from ..errors import SecurityError
from .decorators import expose

__all__ = ["MobileCodeReceiver", "MOBILE_CODE_NAME", "Validator"]

Validator = Callable[[str, str, Any], bool]
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_lock = threading.Lock()


class MobileCodeReceiver:
    """The daemon object that installs shipped modules after the validator accepts them."""

    def __init__(self, validator: Validator) -> None:
        self.validator = validator

    @expose
    def install(self, module_name: str, source: str) -> bool:
        """Install ``source`` as module ``module_name``; False when it is already present."""
        if not isinstance(module_name, str) or not _MODULE_NAME.match(module_name):
            raise SecurityError(f"mobile code refused: {module_name!r} is not a valid module name")
        if not isinstance(source, str):
            raise SecurityError("mobile code refused: the source must be a string")
        if module_name in sys.modules:
            return False
        client = context.get().client_sock_addr
        try:
            accepted = self.validator(module_name, source, client)
        except Exception as exc:
            raise SecurityError(f"mobile code {module_name!r} refused: the validator failed ({exc})") from None
        if accepted is not True:
            raise SecurityError(f"mobile code {module_name!r} refused by the daemon's validator")
        code = compile(source, f"<mobile code {module_name}>", "exec")
        module = types.ModuleType(module_name)
        module.__file__ = f"<mobile code {module_name}>"
        with _lock:
            if module_name in sys.modules:
                return False
            sys.modules[module_name] = module
            try:
                exec(code, module.__dict__)  # noqa: S102 - the point of mobile code, after validation
            except BaseException:
                del sys.modules[module_name]
                raise
        return True
