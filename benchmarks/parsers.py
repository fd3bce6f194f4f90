#!/usr/bin/env python3
"""The compiled modules against the pure-Python ones, in-process: parsers alone, then the whole path.

Three figures per implementation, each the best of 5 rounds in nanoseconds of
CPU time per message (``time.process_time``), on realistic traffic: 200,000
distinct 16 B payloads over 16 subjects, fed in 256 KiB reads:

- the client protocol's ``Parser`` with a handler that does nothing;
- the route protocol's ``RouteParser`` (``RMSG``) likewise;
- ``benchmarks/per_message.py``'s path: a client's read parsed, routed to one
  subscriber on ``bench.*`` and queued for writing (no sockets).

The pure-Python figures come from a second run of this script with
``NATSD_PURE_PYTHON=1``::

    python benchmarks/parsers.py
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from typing import Any

N = 200_000
READ = 256 * 1024
SUBJECTS = [b"bench.s%02d" % i for i in range(16)]
PAYLOADS = [b"%08x" % i + b"abcdefgh" + b"\r\n" for i in range(1000)]


class _Handler:
    def on_pub(self, *args: Any) -> None: ...
    def on_pub_run(self, *args: Any) -> None: ...
    def on_msg(self, *args: Any) -> None: ...


def _best(feed: Any, stream: bytes, rounds: int = 5) -> float:
    best = float("inf")
    for _ in range(rounds):
        step = feed()
        start = time.process_time()
        for k in range(0, len(stream), READ):
            step(stream[k:k + READ])
        best = min(best, time.process_time() - start)
    return best / N * 1e9


async def _whole_path(stream: bytes) -> float:
    from natsd import Server

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from per_message import CONNECT, MemoryTransport

    async with Server({"host": "127.0.0.1", "port": 0}) as server:
        def connect() -> Any:
            client = server.client_protocol()
            client.connection_made(MemoryTransport())
            client.data_received(CONNECT)
            return client

        publisher = connect()
        connect().data_received(b"SUB bench.* 1\r\n")
        return _best(lambda: publisher.data_received, stream)


def measure() -> dict[str, float]:
    from natsd.wire.protocol import Parser
    from natsd.wire.routed import RouteParser

    client = b"".join(b"PUB %s 16\r\n%s" % (SUBJECTS[i & 15], PAYLOADS[i % 1000]) for i in range(N))
    routed = b"".join(b"RMSG $G %s 16\r\n%s" % (SUBJECTS[i & 15], PAYLOADS[i % 1000]) for i in range(N))
    return {
        "client protocol: parse": _best(lambda: Parser(_Handler()).feed, client),
        "route protocol: parse": _best(lambda: RouteParser(_Handler()).feed, routed),
        "client PUB parsed, routed, queued": asyncio.run(_whole_path(client)),
    }


def main() -> None:
    if "--child" in sys.argv:
        from natsd import compiled

        print(json.dumps({"compiled": compiled.active(), "ns": measure()}))
        return
    runs = {}
    for label, pure in (("compiled", "0"), ("pure Python", "1")):
        env = {**os.environ, "NATSD_PURE_PYTHON": pure}
        out = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True,
                             timeout=600, check=True).stdout
        runs[label] = json.loads(out)
    if not all(runs["compiled"]["compiled"].values()):
        print(f"warning: not every module is compiled: {runs['compiled']['compiled']}", file=sys.stderr)
    print("| ns per message | compiled | pure Python | pure / compiled |")
    print("|---|---:|---:|---:|")
    for case, fast in runs["compiled"]["ns"].items():
        slow = runs["pure Python"]["ns"][case]
        print(f"| {case} | {fast:.0f} | {slow:.0f} | {slow / fast:.2f}× |")


if __name__ == "__main__":
    main()
