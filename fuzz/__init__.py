"""Ember's protocol fuzzer: a target server run in a subprocess, input generators
(structured mutations of valid frames and raw byte mutations of captured ones) and a
driver that feeds them over real sockets while checking that the server stays alive,
answers a well-behaved client promptly and does not leak file descriptors or memory.

Short run: ``pytest tests/test_fuzz.py``. Long run: ``python fuzz/run.py --help``.
"""
