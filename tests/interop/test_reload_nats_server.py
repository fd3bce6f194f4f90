"""Config reload (SIGHUP) side by side with nats-server 2.15.1.

Three raw connections (users a, b, c of account A) are open when the config
file is rewritten and the process gets SIGHUP: a's subscribe permission
shrinks, b is removed, c's password changes. Both servers must answer the
same bytes on each connection, keep a's connection working, and refuse a
change of the server name with a log line naming it.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time

import pytest

import transcripts as T  # on sys.path via conftest.py
from natsd.testing import read_first_pong, read_until

BEFORE = """
accounts {
  A { users: [ {user: a, password: a, permissions: {subscribe: ">"}},
               {user: b, password: b}, {user: c, password: c} ] }
}
"""
AFTER = """
accounts {
  A { users: [ {user: a, password: a, permissions: {subscribe: "foo"}},
               {user: c, password: changed} ] }
}
"""


def _connect(address: tuple[str, int], user: str) -> socket.socket:
    sock = socket.create_connection(address, timeout=3)
    read_until(sock, b"\r\n")
    connect = {"user": user, "pass": user, "verbose": False, "protocol": 1}
    sock.sendall(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
    assert b'"connect_info":true' in read_first_pong(sock)  # nats-server 2.12+: INFO after PONG
    return sock


def _drain(sock: socket.socket, wait: float = 0.5) -> bytes:
    """Everything the server sends until it goes quiet or closes."""
    sock.settimeout(wait)
    out = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            return out
        if not chunk:
            return out + b"<closed>"
        out += chunk


def _wait_for_log(server: T.ExternalServer, pattern: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = server.log_tail(20000)
        if re.search(pattern, text):
            return text
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not logged by {server.kind}:\n{server.log_tail()}")


def scenario(server: T.ExternalServer) -> dict[str, bytes]:
    a, b, c = (_connect(server.address, u) for u in "abc")
    a.sendall(b"SUB foo 1\r\nSUB bar 2\r\nSUB foo.x q 3\r\nPING\r\n")
    read_until(a, b"PONG\r\n")
    with open(server.conf_path, "w") as fh:
        fh.write(AFTER)
    server.proc.send_signal(signal.SIGHUP)
    _wait_for_log(server, "Reloaded server configuration")
    seen = {name: _drain(sock) for name, sock in (("a", a), ("b", b), ("c", c))}
    a.sendall(b"PUB foo 1\r\nx\r\nPUB bar 1\r\ny\r\nPING\r\n")
    seen["a after"] = read_until(a, b"PONG\r\n")
    for sock in (a, b, c):
        sock.close()
    with open(server.conf_path, "w") as fh:
        fh.write("server_name: x\n" + AFTER)
    server.proc.send_signal(signal.SIGHUP)
    seen["log"] = _wait_for_log(server, "Failed to reload server configuration").encode()
    seen["alive"] = _connect(server.address, "a").recv(0) or b"ok"
    return seen


@pytest.fixture(scope="module")
def observed(server_factory):
    return {kind: scenario(server_factory.server(kind, BEFORE, fresh=True))
            for kind in (T.NATS_SERVER, T.NATSD)}


def test_connections_see_the_same_bytes(observed):
    ours, theirs = observed[T.NATSD], observed[T.NATS_SERVER]
    for name in ("c", "a after"):
        assert ours[name] == theirs[name], name
    # nats-server walks the subscriptions in map order: compare a's lines as a set.
    assert sorted(ours["a"].splitlines()) == sorted(theirs["a"].splitlines())
    # A queue subscription's error names its queue (nats-server 2.15.1; 2.9.10 did not).
    assert ours["a"] == (b"-ERR 'Permissions Violation for Subscription to \"bar\" (sid \"2\")'\r\n"
                         b"-ERR 'Permissions Violation for Subscription to \"foo.x\" using queue \"q\" "
                         b"(sid \"3\")'\r\n")
    assert ours["c"] == b"-ERR 'Authorization Violation'\r\n<closed>"
    assert ours["a after"] == b"MSG foo 1 1\r\nx\r\nPONG\r\n"


def test_removed_user_is_disconnected(observed):
    # nats-server closes a removed user's connection without a word (it
    # treats it as a move to another account); natsd says why.
    assert observed[T.NATS_SERVER]["b"] == b"<closed>"
    assert observed[T.NATSD]["b"] == b"-ERR 'Authorization Violation'\r\n<closed>"


def test_server_name_change_is_refused_and_named(observed):
    for kind in (T.NATS_SERVER, T.NATSD):
        log = observed[kind]["log"].decode()
        assert re.search(r"Failed to reload server configuration: .*config reload not supported "
                         r"for (ServerName|server_name): old=, new=x", log), kind
        assert observed[kind]["alive"] == b"ok"
