#!/usr/bin/env python3
"""Messages per second over WebSocket and over TCP, natsd beside nats-server.

A standalone benchmark, not a test::

    python benchmarks/websocket.py                 # 200,000 messages per case, best of 3
    python benchmarks/websocket.py --count 50000 --repeat 1

Each case starts a fresh server (natsd, then nats-server 2.15.1 from the test
extras) with ``websocket { no_tls: true }`` on free ports of 127.0.0.1, a
subscriber process on ``bench.>`` and a publisher process, both over the same
transport. Traffic is what a dashboard sees: every payload differs, spread
over 16 subjects. The publisher sends pre-built ``PUB`` commands (over
WebSocket: in masked binary frames of up to 64 KiB); the subscriber counts
``MSG`` lines until every message has arrived (hex payloads cannot contain
one), stripping frame headers over WebSocket. The rate is
messages over the time from the publisher's first byte to the subscriber's
last.
"""

from __future__ import annotations

import argparse
import base64
import multiprocessing as mp
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import find_nats_server, free_port

SUBJECTS = [f"bench.s{i:02d}".encode() for i in range(16)]
UPGRADE = ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")


def open_conn(transport: str, port: int, setup: bytes) -> socket.socket:
    """A connected client that sent CONNECT, ``setup`` and PING and got its PONG."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    data = b""
    if transport == "ws":
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(UPGRADE.format(key=key).encode())
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 101"), data[:200]
        data = data.split(b"\r\n\r\n", 1)[1]
    sock.sendall(frames(transport, b'CONNECT {"verbose":false}\r\n' + setup + b"PING\r\n"))
    while b"PONG\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "closed during setup"
        data += chunk
    return sock


def frames(transport: str, data: bytes, size: int = 65536) -> bytes:
    """``data`` as the client sends it: as is over TCP, in masked binary frames over WebSocket."""
    if transport == "tcp":
        return data
    out = []
    for i in range(0, len(data), size):
        part = data[i:i + size]
        n, key = len(part), os.urandom(4)
        if n < 126:
            head = bytes([0x82, 0x80 | n])
        elif n < 65536:
            head = bytes([0x82, 0x80 | 126]) + struct.pack(">H", n)
        else:
            head = bytes([0x82, 0x80 | 127]) + struct.pack(">Q", n)
        mask = int.from_bytes((key * (n // 4 + 1))[:n], "big")
        out.append(head + key + (int.from_bytes(part, "big") ^ mask).to_bytes(n, "big"))
    return b"".join(out)


def strip_frames(buf: bytearray) -> tuple[bytes, int]:
    """The payload of the complete server frames at the start of ``buf``, and the bytes they took."""
    parts = []
    i, end = 0, len(buf)
    while i + 2 <= end:
        n = buf[i + 1] & 0x7F
        j = i + 2
        if n == 126:
            if j + 2 > end:
                break
            n = struct.unpack_from(">H", buf, j)[0]
            j += 2
        elif n == 127:
            if j + 8 > end:
                break
            n = struct.unpack_from(">Q", buf, j)[0]
            j += 8
        if j + n > end:
            break
        parts.append(buf[j:j + n])
        i = j + n
    return b"".join(parts), i


def subscriber(transport: str, port: int, expected: int, ready: Any, out: Any) -> None:
    """Count ``MSG`` lines (payloads are hex: no ``MSG `` inside them) until ``expected``."""
    sock = open_conn(transport, port, b"SUB bench.> 1\r\n")
    ready.set()
    got, pending, tail = 0, bytearray(), b""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    deadline = time.perf_counter() + 120
    sock.settimeout(20)
    while got < expected and time.perf_counter() < deadline:
        try:
            n = sock.recv_into(view)
        except OSError:  # a timeout, or the server cut us off: report the shortfall
            break
        if not n:
            break
        if transport == "tcp":
            data = bytes(view[:n])
        else:
            pending += view[:n]
            data, used = strip_frames(pending)
            del pending[:used]
        data = tail + data
        got += data.count(b"MSG ")
        tail = data[-3:]
    out.send((time.perf_counter(), got))
    sock.close()


def publisher(transport: str, port: int, count: int, size: int, out: Any) -> None:
    sock = open_conn(transport, port, b"")
    parts = []
    for i in range(count):
        body = os.urandom(size // 2).hex().encode()  # distinct, printable
        parts.append(b"PUB %s %d\r\n%s\r\n" % (SUBJECTS[i % 16], len(body), body))
    wire = frames(transport, b"".join(parts))
    started = time.perf_counter()
    sock.sendall(wire)
    out.send(started)
    # Wait for the PONG to a last PING: every PUB before it has been processed, so closing
    # cannot reset the connection under data the server has not read yet.
    sock.sendall(frames(transport, b"PING\r\n"))
    sock.settimeout(60)
    seen = b""
    while b"PONG" not in seen:
        chunk = sock.recv(65536)
        if not chunk:
            break
        seen = seen[-8:] + chunk
    sock.close()


def one_run(kind: str, transport: str, count: int, size: int, workdir: Path) -> float:
    port, ws_port = free_port(), free_port()
    conf = workdir / "ws.conf"
    # One limit for both servers, above a 200 MB run: the subscriber is the slowest party
    conf.write_text(f"max_pending: 1GB\nwrite_deadline: \"60s\"\n"
                    f"websocket {{ listen: \"127.0.0.1:{ws_port}\", no_tls: true }}\n")
    argv = ([find_nats_server()] if kind == "nats-server" else [sys.executable, "-m", "natsd"]) + [
        "-c", str(conf), "-a", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        target = ws_port if transport == "ws" else port
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", target), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{kind} did not start") from None
                time.sleep(0.05)
        ready, (sub_in, sub_out), (pub_in, pub_out) = mp.Event(), mp.Pipe(False), mp.Pipe(False)
        sub = mp.Process(target=subscriber, args=(transport, target, count, ready, sub_out))
        sub.start()
        ready.wait(20)
        pub = mp.Process(target=publisher, args=(transport, target, count, size, pub_out))
        pub.start()
        if not sub_in.poll(180) or not pub_in.poll(5):
            raise RuntimeError(f"{kind} over {transport}: no result in time")
        (ended, got), started = sub_in.recv(), pub_in.recv()
        sub.join(5)
        if got != count:
            raise RuntimeError(f"{kind} over {transport}: {got} of {count} messages")
        return count / (ended - started)
    finally:
        proc.terminate()
        proc.wait(10)
        for p in mp.active_children():
            p.join(5)
            if p.is_alive():
                p.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (16, 1024):
            rates: dict[tuple[str, str], float] = {}
            for transport in ("tcp", "ws"):
                for kind in ("natsd", "nats-server"):
                    rates[kind, transport] = max(one_run(kind, transport, args.count, size, Path(tmp))
                                                 for _ in range(args.repeat))
            rows.append((size, rates))
    print(f"{'case':<28}{'natsd msg/s':>14}{'nats-server':>14}{'ratio':>8}")
    for size, rates in rows:
        for transport in ("tcp", "ws"):
            ours, theirs = rates["natsd", transport], rates["nats-server", transport]
            name = f"1->1 {size} B, 16 subjects, {transport}"
            print(f"{name:<28}{ours:>14,.0f}{theirs:>14,.0f}{ours / theirs:>8.2f}")
        print(f"{'  ws/tcp':<28}{rates['natsd', 'ws'] / rates['natsd', 'tcp']:>14.2f}"
              f"{rates['nats-server', 'ws'] / rates['nats-server', 'tcp']:>14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
