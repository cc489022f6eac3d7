"""Server and client in one process, on loopback: the smallest complete Ember program."""

import ember


@ember.expose
class Greeter:
    def greet(self, name):
        return f"hello, {name}"


daemon = ember.Daemon()                 # 127.0.0.1, a free port
uri = daemon.register(Greeter(), "greeter")
daemon.start()                          # serve in a background thread
with ember.Proxy(uri) as greeter:
    print(greeter.greet("world"))
daemon.shutdown()
