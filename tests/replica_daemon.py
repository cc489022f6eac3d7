"""A daemon process serving one replica of a name, for the scale-out tests and benchmark.

``python tests/replica_daemon.py WORKER_ID NAME [NAME...]``: registers a ``Worker`` under
each name with ``replicated=True`` in the name server found as ``locate_ns`` does
(``PYRO_NS_HOSTS``/``PYRO_NS_HOST``/``PYRO_NS_PORT``), publishing under a lease
(``PYRO_NS_LEASE_TIME``), prints ``ready URI`` and serves until killed.
"""

import os
import signal
import sys

import ember


@ember.expose
class Worker:
    worker_id = "?"
    die_on_call = os.environ.get("REPLICA_DIE_ON_CALL") == "1"

    @ember.idempotent
    def whoami(self):
        return self.worker_id

    @ember.idempotent
    def work(self, n):
        return n + 1, self.worker_id

    @ember.idempotent
    def crash_idempotent(self):
        """Dies during the call when REPLICA_DIE_ON_CALL=1 (SIGKILL: no reply, no cleanup)."""
        if self.die_on_call:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.worker_id

    def crash(self):
        """The same, not marked idempotent."""
        if self.die_on_call:
            os.kill(os.getpid(), signal.SIGKILL)
        return self.worker_id


def main() -> None:
    Worker.worker_id = sys.argv[1]
    with ember.Daemon(host="127.0.0.1", ns=True) as daemon:
        uris = [daemon.register(Worker, name, replicated=True) for name in sys.argv[2:]]
        print("ready", *uris, flush=True)
        daemon.request_loop()


if __name__ == "__main__":
    main()
