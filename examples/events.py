"""Publish/subscribe through the event service: a publisher, a subscriber class, an async subscriber.

Everything runs in this process on 127.0.0.1: a name server on a free port (no broadcast),
the event service registered in it as ``Pyro.EventService``, and clients that find the
service through the name server. With ``ember ns`` and ``ember events`` running, drop the
``ns_host``/``ns_port`` arguments and the clients find them on their own.
"""

import asyncio
import threading

from ember import naming
from ember.events import AsyncSubscriber, EventServer, Publisher, Subscriber


class Weather(Subscriber):
    """Prints every event; called in publish order, one event at a time."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.count = 0
        self.done = threading.Event()

    def event(self, event):
        print(f"  #{event['seq']} {event['subject']}: {event['message']}")
        self.count += 1
        if self.count == 3:
            self.done.set()


async def headlines(where):
    async with AsyncSubscriber(**where) as sub:
        await sub.subscribe_match(r"news\.")        # regular expression, matched from the start
        with Publisher(**where) as pub:
            await asyncio.to_thread(pub.publish, "news.sport", "Ajax 2 - 1 Feyenoord")
            await asyncio.to_thread(pub.publish, "news.world", "Tulips in bloom")
        got = []
        async for event in sub:
            got.append(event["message"])
            if len(got) == 2:
                return got


with naming.start_ns("127.0.0.1", 0, enable_broadcast=False) as nameserver:
    host, port = "127.0.0.1", nameserver.daemon.port
    where = {"ns_host": host, "ns_port": port}
    with EventServer("127.0.0.1", 0, ns_host=host, ns_port=port).start() as server:
        print("event service:", server.uri)
        with Weather(ns_host=host, ns_port=port) as weather:                # serves in a background thread
            weather.subscribe("weather.rotterdam", "weather.delft")
            with Publisher(ns_host=host, ns_port=port) as pub:
                pub.publish("weather.rotterdam", {"temp": 11.5, "sky": "rain"})
                pub.publish(["weather.delft", "weather.leiden"], {"temp": 12.0})  # leiden: nobody listens
                pub.publish("weather.rotterdam", {"temp": 12.5, "sky": "sun"})
                weather.done.wait(10)
                stats = pub.stats()
            print("subscriber received", weather.count, "events; last seq", weather.last_seq)
            print("service published", stats["published"], "events")
        print("async subscriber got:", asyncio.run(headlines(where)))
