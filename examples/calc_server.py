"""A tiny Ember server: run it, then run calc_client.py with the URI it prints."""

import ember


@ember.expose
class Calc:
    def add(self, a, b):
        return a + b

    def divide(self, a, b):
        return a / b

    def countdown(self, n):
        while n > 0:
            yield n
            n -= 1


if __name__ == "__main__":
    with ember.Daemon(host="127.0.0.1", port=0) as daemon:
        uri = daemon.register(Calc, "example.calc")
        print(f"serving at {uri}", flush=True)
        daemon.request_loop()
