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

from .client.mobile import ship
from .server.mobile import MOBILE_CODE_NAME, MobileCodeReceiver, Validator

__all__ = ["MobileCodeReceiver", "MOBILE_CODE_NAME", "ship", "Validator"]
