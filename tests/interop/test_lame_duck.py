"""Lame-duck mode side by side with nats-server 2.15.1, and nats-py failing over.

SIGUSR2 must stop the client port at once, send protocol-1 clients an INFO
with ``"ldm": true`` (protocol-0 clients get nothing), close every client
after the grace period, then exit cleanly. nats-server insists on a
lame_duck_duration of at least 30 s; with three clients it closes them about
a second apart, so the scenario still ends within seconds.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time

import nats
import pytest

import transcripts as T  # on sys.path via conftest.py
from natsd.testing import read_first_pong, read_until

CONF = """
lame_duck_duration: "30s"
lame_duck_grace_period: "1s"
accounts {
  SYS { users: [ {user: sys, password: sys} ] }
  APP { users: [ {user: a, password: a} ] }
}
system_account: SYS
"""


def _connect(address, user: str, protocol: int) -> socket.socket:
    sock = socket.create_connection(address, timeout=3)
    read_until(sock, b"\r\n")
    connect = {"user": user, "pass": user, "verbose": False, "protocol": protocol}
    sock.sendall(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
    got = read_first_pong(sock, protocol)  # protocol 1: nats-server 2.12+ sends an INFO after PONG
    assert got.endswith(b"PONG\r\n" if protocol < 1 else b" \r\n"), got
    return sock


def _normalise(info: bytes) -> dict:
    assert info.startswith(b"INFO ") and info.endswith(b" \r\n"), info
    body = json.loads(info[5:])
    for key in ("server_id", "server_name", "go", "git_commit", "host", "port", "client_id", "xkey"):
        body[key] = type(body[key]).__name__
    return body


def _refused(address, timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(address, timeout=0.5).close()
        except ConnectionRefusedError:
            return True
        except ConnectionResetError:
            pass  # the listener closed while this connection waited in its backlog: not yet refused
        time.sleep(0.02)
    return False


def _closed_within(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except socket.timeout:
        return False
    return True


def scenario(server: T.ExternalServer) -> dict:
    address = server.address
    sysc = _connect(address, "sys", 1)
    sysc.sendall(b"SUB $SYS.SERVER.*.LAMEDUCK 1\r\nPING\r\n")
    read_until(sysc)
    modern, old = _connect(address, "a", 1), _connect(address, "a", 0)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGUSR2)
    seen = {"refused": _refused(address), "info": _normalise(read_until(modern, b"\r\n"))}
    old.settimeout(0.5)
    try:
        seen["old"] = old.recv(4096)
    except socket.timeout:
        seen["old"] = b""
    seen["sys"] = read_until(sysc, b"}\r\n")  # the LAMEDUCK event, a JSON payload
    seen["all closed"] = all(_closed_within(s, 8) for s in (sysc, modern, old))
    seen["exit"] = server.proc.wait(8)
    seen["seconds"] = time.monotonic() - started
    seen["log"] = server.log_tail(20000)
    return seen


@pytest.fixture(scope="module")
def observed(server_factory):
    return {kind: scenario(server_factory.server(kind, CONF, fresh=True))
            for kind in (T.NATS_SERVER, T.NATSD)}


def test_same_ldm_info_and_closing(observed):
    ours, theirs = observed[T.NATSD], observed[T.NATS_SERVER]
    for key in ("refused", "info", "old", "all closed", "exit"):
        assert ours[key] == theirs[key], key
    assert ours["info"]["ldm"] is True and ours["refused"] and ours["all closed"]
    assert ours["old"] == b"" and ours["exit"] == 0
    assert 1.0 <= ours["seconds"] < 6.0  # after the grace period, clients about a second apart


def test_same_log_lines(observed):
    for kind in (T.NATS_SERVER, T.NATSD):
        log = observed[kind]["log"]
        for line in ("Entering lame duck mode, stop accepting new clients",
                     "Closing existing clients", "Server Exiting"):
            assert line in log, (kind, line)


def test_lame_duck_event(observed):
    """Both announce lame-duck mode in the system account (nats-server 2.10 and later; 2.9.10
    did not), with the same keys, framed as nats-server frames the messages it sends itself:
    an empty reply, hence two spaces before the size."""
    bodies = {}
    for kind in (T.NATS_SERVER, T.NATSD):
        msg = observed[kind]["sys"]  # (and the lame-duck INFO, before or after: sys has protocol 1)
        match = re.search(rb"MSG \$SYS\.SERVER\.(\w+)\.LAMEDUCK 1  (\d+)\r\n", msg)
        assert match, (kind, msg)
        bodies[kind] = json.loads(msg[match.end():match.end() + int(match.group(2))])
    assert sorted(bodies[T.NATSD]) == sorted(bodies[T.NATS_SERVER])
    assert bodies[T.NATSD]["ver"] == bodies[T.NATS_SERVER]["ver"]


async def test_nats_py_fails_over_keeping_subscriptions(natsd_factory):
    ldm = {"lame_duck_duration": "1s", "lame_duck_grace_period": "0.2s"}
    first, second = natsd_factory(ldm), natsd_factory()
    told = asyncio.Event()

    async def lame_duck_cb() -> None:
        told.set()

    nc = await nats.connect(servers=[first.url, second.url], dont_randomize=True,
                            reconnect_time_wait=0.1, lame_duck_mode_cb=lame_duck_cb)
    pub = await nats.connect(second.url)
    try:
        sub = await nc.subscribe("work")
        await nc.flush()
        assert nc.connected_url.port == first.port
        first.call(first.server.lame_duck)
        await asyncio.wait_for(told.wait(), 2)
        for _ in range(100):
            if nc.is_connected and nc.connected_url.port == second.port:
                break
            await asyncio.sleep(0.05)
        assert nc.connected_url.port == second.port
        await nc.flush()
        await pub.publish("work", b"after failover")
        msg = await sub.next_msg(timeout=2)
        assert msg.data == b"after failover"
        assert first.call(lambda: first.server.running) is False
    finally:
        await nc.close()
        await pub.close()
