"""``ember demo``: a name server, a daemon and a client in one process, on loopback only.

Every socket is on 127.0.0.1 and the one broadcast goes to 127.255.255.255 (the loopback
network), so nothing leaves the machine. Prints each step and exits 0.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Iterator
from typing import Any

from ..client import BatchProxy, Proxy
from ..config import config
from ..errors import remote_traceback
from ..naming import broadcast_for_ns, start_ns
from ..server import Daemon, expose, oneway

__all__ = ["Sensor", "add_arguments", "run"]


@expose
class Sensor:
    """A pretend temperature sensor: the object the demo serves."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.noted = threading.Event()

    def read(self, channel: int) -> float:
        """The current temperature of a channel."""
        return 20.0 + channel * 0.5

    def calibrate(self, offset: float) -> float:
        """Accepts offsets within ±5 degrees; anything else raises ValueError."""
        if abs(offset) > 5:
            raise ValueError(f"offset {offset} is out of range (-5..5)")
        return offset

    @oneway
    def note(self, text: str) -> None:
        """Oneway: store a note (the caller does not wait)."""
        time.sleep(0.05)
        self.notes.append(text)
        self.noted.set()

    def history(self) -> list[str]:
        return list(self.notes)

    def samples(self, count: int) -> Iterator[float]:
        """A generator: streamed to the client item by item."""
        for i in range(count):
            yield round(20.0 + i * 0.25, 2)


def _step(number: int, text: str) -> None:
    print(f"\n[{number}] {text}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo takes no arguments."""


def run(args: argparse.Namespace | None = None) -> int:
    """Run the demo; returns the exit code."""
    print("Ember demo: name server, daemon and client in one process, all on 127.0.0.1.")
    print("The only broadcast goes to 127.255.255.255 (loopback), so nothing leaves this machine.")
    with start_ns("127.0.0.1", 0, bcport=0) as service:
        bcport = service.broadcast.port if service.broadcast is not None else 0
        _step(1, "Started a name server")
        if service.broadcast is not None:
            print(f"    URI {service.uri}, broadcast responder on udp 127.255.255.255:{bcport}")
        else:
            print(f"    URI {service.uri} (this system has no loopback broadcast address: no responder)")
        with config.override(NS_HOST="127.0.0.1", NS_PORT=service.daemon.port, NS_BCPORT=bcport,
                             BROADCAST_ADDRS=["127.255.255.255"]):
            sensor = Sensor()
            with Daemon(host="127.0.0.1", ns=service.uri) as daemon:
                daemon.start()
                uri = daemon.register(sensor, "demo.sensor", metadata={"kind:sensor", "room:lab"})
                _step(2, "Started a daemon serving a Sensor, published in the name server")
                print(f"    demo.sensor --> {uri}   metadata: kind:sensor, room:lab")

                if bcport:
                    found = broadcast_for_ns(bcport, ["127.255.255.255"])
                    _step(3, "Client: found the name server by UDP broadcast")
                    print(f"    GET_NSURI to 127.255.255.255:{bcport} answered {found}")
                else:
                    _step(3, "Client: broadcast discovery skipped (no loopback broadcast here); using NS_HOST/NS_PORT")

                with Proxy[Any]("PYRONAME:demo.sensor") as sensor_proxy:
                    _step(4, "Client: a normal call through Proxy('PYRONAME:demo.sensor')")
                    print(f"    sensor.read(3) = {sensor_proxy.read(3)}")
                    print(f"    (the name resolved to {sensor_proxy._bound_uri})")

                    _step(5, "Client: a call that raises on the server")
                    try:
                        sensor_proxy.calibrate(9)
                    except ValueError as exc:
                        print(f"    caught ValueError: {exc}")
                        print("    remote traceback (last lines):")
                        for line in remote_traceback(exc).rstrip().splitlines()[-3:]:
                            print(f"      | {line}")

                    _step(6, "Client: a oneway call (returns at once, runs on the server)")
                    started = time.perf_counter()
                    sensor_proxy.note("checked by the demo")
                    print(f"    note(...) returned after {1000 * (time.perf_counter() - started):.1f} ms")
                    sensor.noted.wait(5)
                    print(f"    the server's notes now: {sensor_proxy.history()}")

                    _step(7, "Client: a batch of three calls in one round trip")
                    batch = BatchProxy(sensor_proxy)
                    for channel in (1, 2, 3):
                        batch.read(channel)
                    print(f"    results: {list(batch())}")

                    _step(8, "Client: a generator streamed item by item")
                    print(f"    samples(4) -> {[value for value in sensor_proxy.samples(4)]}")

                with Proxy[Any]("PYROMETA:kind:sensor") as by_meta:
                    _step(9, "Client: found by metadata with Proxy('PYROMETA:kind:sensor')")
                    print(f"    read(0) = {by_meta.read(0)}")
            _step(10, "Shut down the daemon (its name was removed from the name server) and the name server")
            print(f"    names left: {sorted(service.nameserver.list())}")
    print("\nDemo finished.")
    return 0

