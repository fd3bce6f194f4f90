#!/usr/bin/env python3
"""What tracing costs: 1→1 throughput of messages that carry a W3C ``traceparent``.

A standalone benchmark, not a pytest test::

    python benchmarks/otel_cost.py              # 100,000 messages per case
    python benchmarks/otel_cost.py --count 20000

One run, side by side: nats-server 2.15.1 (the reference), natsd with no
tracer at all (the always-on msgtrace plugin denied), natsd without an
``otel {}`` block (msgtrace looks for ``Nats-Trace-Dest``), and natsd with the otel plugin sampling 1 % of the traces
and all of them, exporting nowhere (span creation alone) and over OTLP/HTTP
to a local collector that discards what it gets (the export thread competing
for the interpreter). Every message has its own trace id and payload; the
publisher sends ``HPUB`` frames over a raw socket, a subscriber in another
process counts them. Each case starts a fresh server on a free port and has
a deadline.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench import find_nats_server, free_port  # noqa: E402

CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n'


def connect(port: int, setup: bytes = b"", timeout: float = 15.0) -> socket.socket:
    """A raw connection (headers on) once the server listens; ``setup`` is processed on return."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            break
        except OSError:
            if time.perf_counter() > deadline:
                raise
            time.sleep(0.05)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.recv(65536)  # INFO
    sock.sendall(CONNECT + setup + b"PING\r\n")
    got = b""
    while b"PONG\r\n" not in got and time.perf_counter() < deadline:
        got += sock.recv(65536)
    return sock


def frames(count: int, size: int) -> list[bytes]:
    """``count`` HPUB frames in batches of 500, each with its own trace id and payload."""
    rng = random.Random(7)
    batches, batch = [], []
    for i in range(count):
        trace_id = rng.getrandbits(128)
        span_id = rng.getrandbits(64) or 1
        hdr = b"NATS/1.0\r\ntraceparent: 00-%032x-%016x-01\r\n\r\n" % (trace_id, span_id)
        payload = (b"%08d" % i + rng.randbytes(size)).hex().encode()[:size]
        batch.append(b"HPUB telemetry.%d %d %d\r\n%s%s\r\n" % (i % 16, len(hdr), len(hdr) + len(payload),
                                                                hdr, payload))
        if len(batch) == 500:
            batches.append(b"".join(batch))
            batch = []
    if batch:
        batches.append(b"".join(batch))
    return batches


def subscriber(port: int, expected: int, deadline: float, ready, out) -> None:
    sock = connect(port, b"SUB telemetry.* 1\r\n")
    ready.set()
    seen, first, buf = 0, None, bytearray(1 << 20)
    tail = b""
    sock.settimeout(0.5)
    while seen < expected and time.perf_counter() < deadline:
        try:
            n = sock.recv_into(buf)
        except TimeoutError:
            continue
        if not n:
            break
        chunk = tail + bytes(buf[:n])
        if first is None:
            first = time.perf_counter()
        seen += chunk.count(b"HMSG ")
        tail = chunk[-4:]
        seen -= tail.count(b"HMSG ")  # counted again with the next chunk's head
        if b"PING" in chunk:
            sock.sendall(b"PONG\r\n")
    seen += tail.count(b"HMSG ")
    out.send((seen, time.perf_counter()))


def run_case(argv: list[str], port: int, count: int, size: int, timeout: float) -> float:
    """Messages per second from the first publish to the last delivery."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        connect(port).close()
        batches = frames(count, size)
        ready, (rx, tx) = mp.Event(), mp.Pipe(duplex=False)
        deadline = time.perf_counter() + timeout
        sub = mp.Process(target=subscriber, args=(port, count, deadline, ready, tx))
        sub.start()
        ready.wait(10)
        pub = connect(port)
        time.sleep(0.2)
        start = time.perf_counter()
        for batch in batches:
            pub.sendall(batch)
        seen, end = rx.recv() if rx.poll(timeout + 5) else (0, time.perf_counter())
        sub.join(5)
        pub.close()
        if seen < count:
            raise RuntimeError(f"{argv[0]}: {seen} of {count} messages arrived")
        return count / (end - start)
    finally:
        proc.terminate()
        proc.wait(10)


def sink_process(port: int) -> subprocess.Popen[bytes]:
    """An OTLP/HTTP collector that accepts and discards (a separate process, as a collector is)."""
    code = f"""
import http.server
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H).serve_forever()
"""
    return subprocess.Popen([sys.executable, "-c", code])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=120.0)
    cfg = ap.parse_args()
    sink_port = free_port()
    sink = sink_process(sink_port)
    work = Path(tempfile.mkdtemp(prefix="otel-cost-"))
    blocks = {
        "natsd, no tracer at all (msgtrace denied)": "plugins { deny: [msgtrace] }",
        "natsd, no otel block": "",
        "natsd, otel 1 %, no export": "otel { exporter: none, sampler: traceidratio, ratio: 0.01 }",
        "natsd, otel 100 %, no export": "otel { exporter: none }",
        "natsd, otel 100 %, no export, no delivery spans": "otel { exporter: none, delivery_spans: false }",
        "natsd, otel 1 %, OTLP export": (f'otel {{ endpoint: "http://127.0.0.1:{sink_port}", '
                                         "sampler: traceidratio, ratio: 0.01 }"),
        "natsd, otel 100 %, OTLP export": f'otel {{ endpoint: "http://127.0.0.1:{sink_port}" }}',
    }
    results: dict[str, float] = {}
    try:
        port = free_port()
        results["nats-server 2.15.1"] = run_case([find_nats_server(), "-a", "127.0.0.1", "-p", str(port)], port,
                                                 cfg.count, cfg.size, cfg.timeout)
        for name, block in blocks.items():
            port = free_port()
            conf = work / f"{len(results)}.conf"
            conf.write_text(f"host: 127.0.0.1\nport: {port}\n{block}\n")
            env_argv = [sys.executable, "-m", "natsd", "-c", str(conf)]
            results[name] = run_case(env_argv, port, cfg.count, cfg.size, cfg.timeout)
    finally:
        sink.terminate()
        sink.wait(10)
    base = results["natsd, no otel block"]
    ref = results["nats-server 2.15.1"]
    print(f"1→1, {cfg.count:,} messages of {cfg.size} B with a traceparent header, 16 subjects\n")
    print("| server | msg/s | vs natsd without otel | vs nats-server |")
    print("|---|---|---|---|")
    for name, rate in results.items():
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f}× | {rate / ref:.2f}× |")


if __name__ == "__main__":
    main()
