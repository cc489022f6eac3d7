"""An asyncio daemon and an AsyncProxy in one event loop: many calls in flight on one connection.

Everything runs on 127.0.0.1 with a free port.
"""

import asyncio
import time

import ember


@ember.expose
class Kitchen:
    async def cook(self, dish, seconds):
        await asyncio.sleep(seconds)  # awaited on the daemon's event loop
        return f"{dish} ready"

    def menu(self):  # a plain method: runs in a worker thread
        return ["soup", "pasta", "pie"]

    async def courses(self):  # an async generator streams item by item
        for course in ("starter", "main", "dessert"):
            await asyncio.sleep(0)
            yield course


async def main():
    daemon = ember.Daemon(servertype="asyncio")
    uri = daemon.register(Kitchen, "kitchen")
    serving = asyncio.ensure_future(daemon.serve_async())
    try:
        async with ember.AsyncProxy(uri) as kitchen:
            print("menu:", await kitchen.menu())
            started = time.perf_counter()
            orders = [kitchen.cook(dish, 0.2) for dish in ["soup", "pasta", "pie"] * 10]
            results = await asyncio.gather(*orders)
            print(f"{len(results)} dishes in {time.perf_counter() - started:.2f} s (each takes 0.2 s)")
            print("courses:", [course async for course in await kitchen.courses()])
    finally:
        await asyncio.get_running_loop().run_in_executor(None, daemon.shutdown)
        await serving


asyncio.run(main())
