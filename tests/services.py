"""Objects the behavioural tests serve."""

import contextlib
import threading
import time
import uuid

import ember
from ember import current_context


class Unexposed:
    def secret(self):
        raise AssertionError("never called remotely")


@ember.expose
class Calc:
    def __init__(self):
        self.calls = []
        self._value = 1
        self.oneway_done = threading.Event()
        self.items_made = 0

    def add(self, a, b):
        return a + b

    def echo(self, *args, **kwargs):
        return args[0] if args and not kwargs else [list(args), kwargs]

    def fail(self, text="bad value"):
        raise ValueError(text)

    def fail_custom(self):
        e = KeyError("missing")
        e.code = 7
        raise e

    def _private(self):
        raise AssertionError("never called remotely")

    def generator(self, n):
        for i in range(n):
            self.items_made += 1
            yield i * 10

    def sleepy(self, seconds):
        time.sleep(seconds)
        return seconds

    @ember.oneway
    def slow_oneway(self, seconds):
        time.sleep(seconds)
        self.calls.append("oneway")
        self.oneway_done.set()

    def record(self, x):
        self.calls.append(x)
        self.oneway_done.set()

    def context_info(self):
        ctx = current_context
        ctx.response_annotations = {"RESP": b"back"}
        return {
            "addr": list(ctx.client_sock_addr)[:1],
            "seq": ctx.seq,
            "serializer": ctx.serializer_id,
            "annotations": {k: v for k, v in ctx.annotations.items() if k not in ("EMBR", "EOOB")},
            "corr": str(ctx.correlation_id) if ctx.correlation_id else None,
        }

    def nested_corr(self, uri):
        with ember.Proxy(uri) as p:
            return p.context_info()["corr"]

    def call_back(self, callback_proxy, value):
        return callback_proxy.notify(value)

    def get_other(self):
        return self.other

    def make_uuid(self):
        return uuid.UUID("12345678-1234-5678-1234-567812345678")

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, v):
        self._value = v

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return i * 2

    not_callable_attr = 5


@ember.expose
class Other:
    def hello(self):
        return "hello from other"


@ember.expose
@ember.behavior(instance_mode="single")
class Single:
    def ident(self):
        return id(self)


@ember.expose
@ember.behavior(instance_mode="session")
class Session:
    def ident(self):
        return id(self)


@ember.expose
@ember.behavior(instance_mode="percall")
class PerCall:
    def ident(self):
        return id(self)


created = []


@ember.expose
@ember.behavior(instance_mode="single", instance_creator=lambda cls: created.append(cls) or cls("made"))
class Created:
    def __init__(self, how):
        self.how = how

    def get(self):
        return self.how


class PartlyExposed:
    @ember.expose
    def visible(self):
        return "yes"

    def hidden(self):
        raise AssertionError("never called remotely")

    @ember.expose
    @property
    def prop(self):
        return 11


class CallbackTarget:
    def __init__(self):
        self.values = []

    @ember.expose
    @ember.callback
    def notify(self, value):
        if value < 0:
            raise ValueError("negative")
        self.values.append(value)
        return value * 2


def wait_for(condition, timeout=5.0):
    """Poll ``condition()`` until it is true or ``timeout`` seconds passed; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def read_reply(s, tolerate_reset=False):
    """The next whole message on a raw socket, or None when the peer closed it (or, with
    ``tolerate_reset``, reset it)."""
    from ember.protocol import Decoder

    dec = Decoder()
    while True:
        try:
            chunk = s.recv(65536)
        except OSError:
            if tolerate_reset:
                return None
            raise
        if not chunk:
            return None
        dec.feed(chunk)
        msg = dec.next_message()
        if msg is not None:
            return msg


@contextlib.contextmanager
def pyro5_daemon(**options):
    """A real Pyro5 daemon serving in a thread (loopback, port 0, unless ``options`` say
    otherwise), shut down and closed when the block ends."""
    import Pyro5.api

    if "unixsocket" not in options:
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
    daemon = Pyro5.api.Daemon(**options)
    thread = threading.Thread(target=daemon.requestLoop, daemon=True)
    thread.start()
    try:
        yield daemon
    finally:
        daemon.shutdown()
        thread.join(5)
        daemon.close()
