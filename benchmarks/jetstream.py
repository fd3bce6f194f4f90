#!/usr/bin/env python3
"""JetStream: acknowledged publishes and pull consumption, natsd beside nats-server.

A standalone benchmark, not a test::

    python benchmarks/jetstream.py                  # 20,000 messages per case, best of 3
    python benchmarks/jetstream.py --count 5000 --repeat 1

Each case starts a fresh server with its own store directory: natsd (which
syncs before every acknowledgement), nats-server 2.15.1 with
``sync_interval: always`` (the same promise) and nats-server with its
default (a sync every two minutes: acknowledged before durable). Clients
speak the protocol over raw sockets, so the client is not what is measured:

- **async publish**: 128-byte distinct payloads over 16 subjects, up to 512
  publishes in flight, each waiting for its PubAck; messages per second;
- **sync publish**: one publish at a time, the next after the PubAck;
  median and 99th percentile latency;
- **pull**: a durable pull consumer (ack none) fetches the stream in batches
  of 500; messages per second.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import find_nats_server, free_port

SERVERS = ("natsd", "nats-server always", "nats-server default")


def start(kind: str, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    store = Path(tempfile.mkdtemp(dir=work))
    conf = store / "js.conf"
    sync = "\n  sync_interval: always" if kind == "nats-server always" else ""
    conf.write_text(f'jetstream {{\n  store_dir: "{store}"{sync}\n}}\n')
    argv = ([sys.executable, "-m", "natsd"] if kind == "natsd" else [find_nats_server()]) + [
        "-c", str(conf), "-a", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{kind} did not start") from None
            time.sleep(0.05)


class Conn:
    """A raw client: send protocol, count the ``MSG`` frames that come back."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.sock.recv(65536)
        self.request(b'CONNECT {"verbose":false,"headers":true}\r\nSUB _r.> 1\r\n')

    def request(self, data: bytes) -> bytes:
        """Send ``data`` and a PING; what came back before the PONG."""
        self.sock.sendall(data + b"PING\r\n")
        while b"PONG\r\n" not in self.buf:
            self.buf += self.sock.recv(1 << 20)
        out, _, self.buf = self.buf.partition(b"PONG\r\n")
        return out

    def api(self, subject: str, body: bytes) -> bytes:
        self.sock.sendall(b"PUB %s _r.api %d\r\n%s\r\n" % (subject.encode(), len(body), body))
        return self.wait_msgs(1)

    def wait_msgs(self, count: int) -> bytes:
        """Read until ``count`` MSG frames arrived (payloads hold no ``MSG ``); return them."""
        seen = 0
        data = b""
        while seen < count:
            chunk = self.buf or self.sock.recv(1 << 20)
            self.buf = b""
            if not chunk:
                raise RuntimeError("connection closed")
            data += chunk
            seen = data.count(b"MSG ") + data.count(b"HMSG ")
        return data

    def close(self) -> None:
        self.sock.close()


def payloads(count: int) -> list[bytes]:
    return [os.urandom(64).hex().encode() for _ in range(count)]


def async_publish(port: int, count: int) -> float:
    conn = Conn(port)
    conn.api("$JS.API.STREAM.CREATE.BENCH", b'{"name":"BENCH","subjects":["bench.>"]}')
    bodies = payloads(count)
    window = 512
    started = time.perf_counter()
    sent = 0
    while sent < count:
        n = min(window, count - sent)
        conn.sock.sendall(b"".join(b"PUB bench.%d _r.%d %d\r\n%s\r\n" % ((sent + i) % 16, sent + i, len(b), b)
                                   for i, b in enumerate(bodies[sent:sent + n])))
        acks = conn.wait_msgs(n)
        if b"error" in acks:
            raise RuntimeError(acks[:300].decode(errors="replace"))
        sent += n
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


def sync_publish(port: int, count: int) -> tuple[float, float]:
    conn = Conn(port)
    conn.api("$JS.API.STREAM.CREATE.SYNC", b'{"name":"SYNC","subjects":["sync"]}')
    bodies = payloads(count)
    times = []
    for i, body in enumerate(bodies):
        started = time.perf_counter()
        conn.sock.sendall(b"PUB sync _r.%d %d\r\n%s\r\n" % (i, len(body), body))
        conn.wait_msgs(1)
        times.append(time.perf_counter() - started)
    conn.close()
    times.sort()
    return statistics.median(times) * 1e6, times[int(len(times) * 0.99)] * 1e6


def pull(port: int, count: int) -> float:
    conn = Conn(port)
    conn.api("$JS.API.STREAM.CREATE.PULL", b'{"name":"PULL","subjects":["pull.>"]}')
    bodies = payloads(count)
    for start in range(0, count, 512):
        chunk = bodies[start:start + 512]
        conn.sock.sendall(b"".join(b"PUB pull.%d _r.p %d\r\n%s\r\n" % (i % 16, len(b), b) for i, b in enumerate(chunk)))
        conn.wait_msgs(len(chunk))
    config = (b'{"stream_name":"PULL","config":{"durable_name":"R","ack_policy":"none",'
              b'"deliver_policy":"all"}}')
    conn.api("$JS.API.CONSUMER.DURABLE.CREATE.PULL.R", config)
    started = time.perf_counter()
    got = 0
    while got < count:
        batch = min(500, count - got)
        conn.sock.sendall(b'PUB $JS.API.CONSUMER.MSG.NEXT.PULL.R _r.next %d\r\n{"batch":%d}\r\n'
                          % (len(b'{"batch":%d}' % batch), batch))
        conn.wait_msgs(batch)
        got += batch
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in SERVERS:
            best: dict[str, object] = {"async": 0.0, "sync": (float("inf"), float("inf")), "pull": 0.0}
            for _ in range(args.repeat):
                for case in ("async", "sync", "pull"):
                    proc, port = start(kind, Path(tmp))
                    try:
                        if case == "async":
                            best["async"] = max(best["async"], async_publish(port, args.count))  # type: ignore[type-var]
                        elif case == "sync":
                            p50, p99 = sync_publish(port, min(args.count, 2000))
                            if p50 < best["sync"][0]:  # type: ignore[index]
                                best["sync"] = (p50, p99)
                        else:
                            best["pull"] = max(best["pull"], pull(port, args.count))  # type: ignore[type-var]
                    finally:
                        proc.terminate()
                        proc.wait(10)
            results[kind] = best
    print(f"{'server':<22}{'async pub msg/s':>17}{'sync p50 µs':>13}{'sync p99 µs':>13}{'pull msg/s':>12}")
    for kind, best in results.items():
        p50, p99 = best["sync"]  # type: ignore[misc]
        print(f"{kind:<22}{best['async']:>17,.0f}{p50:>13,.0f}{p99:>13,.0f}{best['pull']:>12,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
