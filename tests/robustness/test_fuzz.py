"""A socket-level fuzzer: malformed and hostile input, one connection each, against natsd.

Inputs come from a seeded generator (so a failure names its seed and index
and can be replayed): valid operations mixed with mutations (wrong sizes,
missing or extra arguments, control characters, truncated payloads, huge
tokens, random bytes), sent in random splits. Each connection ends with a
half-close; the server must answer and close it within a timeout (no hang),
keep serving a bystander without stalling, and log no traceback.

The normal run sends a few thousand inputs; ``NATSD_ROBUSTNESS=long`` (see
README) sends 100,000.
"""

from __future__ import annotations

import errno
import random
import socket
import time
from typing import Any

from .conftest import Bystander, long_mode

SEED = 20261201
STALL = 0.5


def _token(rng: random.Random) -> bytes:
    choice = rng.random()
    if choice < 0.6:
        return rng.choice([b"foo", b"foo.bar", b"a.*", b"a.>", b">", b"*", b"_INBOX.x", b"q1"])
    if choice < 0.8:
        return bytes(rng.choice(b"abc.*>_- \t\r\n\x00\xff") for _ in range(rng.randint(0, 12)))
    if choice < 0.9:
        return b"." * rng.randint(1, 5) + b"x"
    return b"t" * rng.randint(100, 5000)


def _operation(rng: random.Random) -> bytes:
    kind = rng.randrange(12)
    payload = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
    size = len(payload) + rng.choice([0, 0, 0, 1, -1, 1000])
    if kind == 0:
        return b"PUB " + _token(rng) + b" " + str(size).encode() + b"\r\n" + payload + b"\r\n"
    if kind == 1:
        hdr = b"NATS/1.0\r\nA: " + _token(rng) + b"\r\n\r\n"
        return (b"HPUB " + _token(rng) + b" " + str(len(hdr) + rng.choice([0, 5, -3])).encode() + b" "
                + str(len(hdr) + size).encode() + b"\r\n" + hdr + payload + b"\r\n")
    if kind == 2:
        return b"SUB " + _token(rng) + b" " + rng.choice([b"", _token(rng) + b" "]) + b"1\r\n"
    if kind == 3:
        return b"UNSUB " + rng.choice([b"1", b"1 5", b"x", b"1 -1", b""]) + b"\r\n"
    if kind == 4:
        return b"CONNECT " + rng.choice([
            b'{"verbose":true}', b"null", b"{}", b"[1]", b'{"protocol":99999999999999999999}',
            b'{"headers":"yes"}', b'{"x":' + b"[" * rng.randint(1, 3000) + b"]" * rng.randint(0, 3000) + b"}",
            b'{"echo":false,"no_responders":true}', payload]) + b"\r\n"
    if kind == 5:
        return rng.choice([b"PING", b"PONG", b"+OK", b"-ERR 'x'", b"INFO {}"]) + rng.choice(
            [b"", b" junk", b" " + b"a" * 4096]) + b"\r\n"
    if kind == 6:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
    if kind == 7:
        return b"PUB " + b"a." * rng.randint(100, 3000) + b"b 0\r\n\r\n"
    if kind == 8:
        return b"SUB " + b".".join([b"*"] * rng.randint(10, 1500)) + b" 9\r\n"
    if kind == 9:
        return b"PUB foo 99999999999999999999\r\n"
    if kind == 10:
        return b"\r" * rng.randint(1, 3) + b"PING\r\n"
    return b"PUB foo 5\r\nab"  # truncated payload, then EOF


def _input(rng: random.Random) -> bytes:
    ops = [_operation(rng) for _ in range(rng.randint(1, 6))]
    if rng.random() < 0.7:
        ops.insert(0, b'CONNECT {"verbose":false,"pedantic":true,"headers":true}\r\n')
    return b"".join(ops)


def _send(port: int, data: bytes, rng: random.Random) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.settimeout(5)
        pos = 0
        try:
            while pos < len(data):
                step = rng.randint(1, max(1, len(data) - pos))
                sock.sendall(data[pos:pos + step])
                pos += step
            sock.shutdown(socket.SHUT_WR)
            while sock.recv(1 << 16):  # the server must answer and close: no hang
                pass
        except TimeoutError:
            raise
        except OSError as exc:  # closed on a protocol error while we were still sending
            if exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.ENOTCONN):
                raise


def test_fuzz_the_client_port(natsd_proc: Any) -> None:
    srv = natsd_proc("max_payload: 64KB\n")
    count = 100_000 if long_mode() else 5000
    rng = random.Random(SEED)
    watch = Bystander(srv.port)
    started = time.monotonic()
    for i in range(count):
        data = _input(rng)
        try:
            _send(srv.port, data, rng)
        except OSError as exc:
            raise AssertionError(f"input {i} (seed {SEED}) {data[:200]!r}: {exc}") from exc
        assert srv.proc.poll() is None, f"natsd exited after input {i}: {data[:200]!r}"
    worst = watch.stop()
    assert worst < STALL, f"a bystander waited {worst:.3f} s during {count} inputs"
    assert time.monotonic() - started < (3600 if long_mode() else 120)
