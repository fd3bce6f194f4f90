#!/usr/bin/env python3
"""CPU time per published message inside one natsd process: the parser, the router, the output.

No sockets and no other process: publisher and subscribers are ``Client``
objects on an in-memory transport, so the figure is the broker's own Python
cost per message, far steadier than a throughput run on a busy machine. Use
it to compare two versions of the delivery path::

    python benchmarks/per_message.py                       # the installed natsd
    PYTHONPATH=/tmp/old python benchmarks/per_message.py   # another checkout, exported as natsd/

Each case publishes 1,000 distinct messages 100 times and reports the best of
15 rounds in nanoseconds per message (``time.process_time``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from natsd import Server

CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true}\r\n'


class MemoryTransport:
    """The transport methods a client uses; writes are counted and dropped."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name == "peername" else default

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool: return False
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


CASES = {
    "2 alternating subjects, 2 subscribers": b"".join(
        b"PUB req.%d 4\r\n%04d\r\n" % (i % 2, i) for i in range(1000)),
    "16 subjects with reply, 2 subscribers": b"".join(
        b"PUB req.%d _INBOX.x.%d 4\r\n%04d\r\n" % (i % 16, i, i) for i in range(1000)),
    "16 subjects, queue group of 2": b"".join(
        b"PUB q.%d 4\r\n%04d\r\n" % (i % 16, i) for i in range(1000)),
    "no subscribers, with reply (no-responders)": b"".join(
        b"PUB none.%d _INBOX.y.%d 4\r\n%04d\r\n" % (i % 16, i, i) for i in range(1000)),
}


async def main() -> None:
    async with Server({"host": "127.0.0.1", "port": 0}) as server:
        def connect() -> Any:
            client = server.client_protocol()
            client.connection_made(MemoryTransport())  # type: ignore[arg-type]
            client.data_received(CONNECT)
            return client

        publisher = connect()
        for _ in range(2):
            connect().data_received(b"SUB req.* 1\r\nSUB q.* workers 2\r\n")
        for name, chunk in CASES.items():
            best = float("inf")
            for _ in range(15):
                start = time.process_time()
                for _ in range(100):
                    publisher.data_received(chunk)
                best = min(best, (time.process_time() - start) / 100_000)
            print(f"{name:44s} {best * 1e9:7.0f} ns/msg")


if __name__ == "__main__":
    asyncio.run(main())
