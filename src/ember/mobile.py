"""Mobile code (opt-in, off by default): a client ships a module's source to a daemon.

**This runs code sent over the network inside the server process.** Anyone who can reach
the daemon and pass the validator can do anything the server process can. Enable it only
on trusted networks, only with TLS and client certificates or a handshake check, and
with a validator that accepts exactly the modules you expect (by name *and* content,
e.g. a hash of the source). It is never on by default, and a daemon refuses to enable it
without a validator.

Server::

    def validator(module_name, source, client_address):
        return module_name == "shapes" and hashlib.sha256(source.encode()).hexdigest() == KNOWN

    daemon = ember.Daemon(mobile_code=validator)     # or MOBILE_CODE=1 and mobile_code=...

Client::

    import shapes
    ember.mobile.ship(proxy, shapes)    # SecurityError if the daemon refuses it
"""

from __future__ import annotations

import inspect
import re
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from . import context
from .errors import SecurityError
from .server.decorators import expose
from .uri import URI

__all__ = ["MobileCodeReceiver", "MOBILE_CODE_NAME", "ship", "Validator"]

MOBILE_CODE_NAME = "Ember.MobileCode"
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


def ship(target: Any, module: types.ModuleType | str, source: str | None = None) -> bool:
    """Send a module's source to the daemon serving ``target`` (a proxy or a URI).

    Returns True when the daemon installed it, False when it already had it. Raises
    :class:`~ember.errors.SecurityError` when the daemon refuses it, and
    :class:`~ember.errors.CommunicationError` when the daemon has no mobile code enabled.
    """
    from .client import Proxy
    from .errors import CommunicationError

    name = module if isinstance(module, str) else module.__name__
    if source is None:
        if isinstance(module, str):
            module = sys.modules[module]
        source = inspect.getsource(module)
    if isinstance(target, Proxy):
        target._bind()
        uri = target._bound_uri or target._pyroUri
    else:
        from .naming import resolve

        uri = resolve(URI(target))
    try:
        with Proxy(f"PYRO:{MOBILE_CODE_NAME}@{uri.location}") as receiver:
            return receiver.install(name, source)
    except CommunicationError as exc:
        if "unknown object" in str(exc):
            raise CommunicationError(f"the daemon at {uri.location} does not accept mobile code "
                                     "(it needs Daemon(mobile_code=validator))") from None
        raise
