"""Calls the object served by calc_server.py: python calc_client.py PYRO:example.calc@127.0.0.1:PORT"""

import sys

import ember

with ember.Proxy(sys.argv[1]) as calc:
    print("add(1, 2) =", calc.add(1, 2))
    print("countdown:", list(calc.countdown(3)))
    try:
        calc.divide(1, 0)
    except ZeroDivisionError as exc:
        print("remote error:", exc)
        print(ember.errors.remote_traceback(exc))
    batch = ember.BatchProxy(calc)
    for i in range(3):
        batch.add(i, i)
    print("batch:", list(batch()))
