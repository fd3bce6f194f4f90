"""The protocol trace (``trace: true``, ``-V``) side by side with nats-server 2.15.1.

Both servers run the same sessions with the same config; their ``[TRC]`` lines
must be the same once the log prefix (pid, time) and each client's address
and connection id are replaced by the client's order of appearance. That
covers the client's ``"v<version>:<lang>:<name>"`` and ``"<account>/user:<u>"``
labels, deliveries (``->> [MSG ...]``), Go-quoted payloads clipped at
``max_traced_msg_len``, ``+OK``, ``-ERR``, and ``DELSUB`` at UNSUB and close.
"""

from __future__ import annotations

import json
import re
import socket
import time

import pytest

import transcripts as T  # on sys.path via conftest.py
from reference import use_reference_server

CONF = """
trace: true
max_traced_msg_len: 12
authorization { users: [ {user: bob, password: secret}, {user: amy, password: pw} ] }
"""

_PREFIX = re.compile(r"^\[\d+\] \S+ \S+ \[(\w+)\] ")
_CLIENT = re.compile(r"127\.0\.0\.1:\d+ - cid:\d+")


def _read_past(sock: socket.socket, marker: bytes = b"PONG\r\n") -> None:
    """Read until ``marker`` has arrived (an INFO may follow it: nats-server's connect_info)."""
    data = b""
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return
        data += chunk


def _session(address: tuple[str, int]) -> None:
    """Two clients: a subscriber with a full CONNECT label, a verbose publisher."""
    sub = socket.create_connection(address, timeout=5)
    _read_past(sub, b"\r\n")
    connect = {"verbose": False, "pedantic": False, "user": "bob", "pass": "secret", "name": "app",
               "lang": "python3", "version": "2.9.0", "protocol": 1, "headers": True}
    sub.sendall(f"CONNECT {json.dumps(connect, separators=(',', ':'))}\r\n".encode()
                + b"SUB foo 1\r\nSUB bar q 2\r\nSUB once 3\r\nUNSUB 3 1\r\n"
                + b"PUB foo 5\r\nhello\r\nPUB foo reply.x 3\r\n\x00\x01\xff\r\n"
                + b"HPUB foo 12 15\r\nNATS/1.0\r\n\r\nhey\r\n"
                + "PUB foo 9\r\nh\u00e9\u20ac\"\\\n\r\n".encode() + b"PING\r\n")
    _read_past(sub)
    pub = socket.create_connection(address, timeout=5)
    _read_past(pub, b"\r\n")
    pub.sendall(b'CONNECT {"verbose":true,"pedantic":false,"user":"amy","pass":"pw","lang":"go"}\r\n'
                b"PUB bar 2\r\nhi\r\nPUB once 0\r\n\r\nPUB foo 40\r\n" + b"0123456789" * 4 + b"\r\n"
                b"SUB foo.. 7\r\nPING\r\n")
    _read_past(pub)
    sub.sendall(b"UNSUB 1\r\nPING\r\n")
    _read_past(sub)
    pub.sendall(b"FOO\r\n")  # an unknown operation: -ERR and close
    _read_past(pub, b"\r\n")
    pub.close()
    sub.close()


def _trace(server: T.ExternalServer, expect_delsubs: int) -> list[str]:
    """The server's [TRC] lines, clients renamed c1, c2 ... in order of appearance."""
    deadline = time.monotonic() + 5
    while True:  # the close's DELSUB lines come after the sockets are gone
        with open(server.log_path) as f:
            text = f.read()
        if text.count("DELSUB") >= expect_delsubs or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    names: dict[str, str] = {}
    out = []
    for line in text.splitlines():
        m = _PREFIX.match(line)
        if m is None or m.group(1) != "TRC":
            continue
        body = _CLIENT.sub(lambda c: names.setdefault(c.group(), f"c{len(names) + 1}"), line[m.end():])
        out.append(body)
    return out


@pytest.mark.timeout(60)
def test_trace_matches_nats_server(server_factory, monkeypatch) -> None:
    use_reference_server(monkeypatch)
    traces = {}
    for kind in (T.NATS_SERVER, T.NATSD):
        server = server_factory.server(kind, CONF, fresh=True)
        _session(server.address)
        traces[kind] = _trace(server, expect_delsubs=3)
    assert traces[T.NATSD] == traces[T.NATS_SERVER]
    natsd = "\n".join(traces[T.NATSD])
    # what the comparison covers, so that an empty trace cannot pass
    for needle in ('c1 - "v2.9.0:python3:app" - "$G/user:bob" - ->> [MSG foo 1 5]',
                   '->> MSG_PAYLOAD: ["hello"]', 'MSG_PAYLOAD: ["\\x00\\x01\\xff"]',
                   'MSG_PAYLOAD: ["012345678901..."]', 'c2 - "go" - "$G/user:amy" - ->> [OK]',
                   "->> [-ERR Unknown Protocol Operation]", "<-> [DELSUB 3]"):
        assert needle in natsd
