"""Find an object by name: a name server, a daemon that publishes a name, a PYRONAME: proxy.

Everything runs in this process on 127.0.0.1 (the name server on a free port), so it does
not disturb a name server you may have running on 9090; discovery by broadcast goes to
127.255.255.255 only.
"""

import ember
from ember import naming


@ember.expose
class Inventory:
    def __init__(self):
        self.items = {"apple": 3, "pear": 0}

    def stock(self, item):
        return self.items.get(item, 0)


with naming.start_ns("127.0.0.1", 0, bcport=0) as nameserver:
    print("name server:", nameserver.uri)
    with ember.Daemon(ns=nameserver.uri) as daemon:
        daemon.register(Inventory, "shop.inventory", metadata={"shop"})
        daemon.start()
        assert nameserver.broadcast is not None  # None only when the name server runs without a responder
        with ember.config.override(BROADCAST_ADDRS=["127.255.255.255"], NS_BCPORT=nameserver.broadcast.port,
                                   NS_PORT=nameserver.daemon.port, NS_HOST="127.0.0.1"):
            with ember.locate_ns() as ns:
                print("registered:", ns.list(prefix="shop."))
            with ember.Proxy("PYRONAME:shop.inventory") as inventory:
                print("apples in stock:", inventory.stock("apple"))
            with ember.Proxy("PYROMETA:shop") as inventory:
                print("pears in stock:", inventory.stock("pear"))
