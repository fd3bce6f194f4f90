"""The WebSocket port, byte for byte beside nats-server 2.15.1.

Each case sends the same raw HTTP request (and frames) to a natsd process
and to a nats-server process with the same ``websocket {}`` block, and
compares what comes back: refused handshakes (status line, headers, body,
whether the connection stays open), the ``101`` response, the INFO frame,
control frames, closes. Values that legitimately differ (dates, server ids,
ports, accept keys for random keys) are masked.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import transcripts as T  # on sys.path via conftest.py
from conftest import require_nats_server

pytestmark = pytest.mark.timeout(120)

CONF = """
websocket {
  listen: "127.0.0.1:%d"
  no_tls: true
  compression: true
  allowed_origins: ["http://good.example.com"]
  headers { "X-Custom": "yes" }
}
"""


class Proc:
    def __init__(self, argv: list[str], port: int, ws_port: int) -> None:
        self.port, self.ws_port = port, ws_port
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", ws_port), timeout=1).close()
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Proc]]:
    binary = require_nats_server()
    work = tmp_path_factory.mktemp("ws")
    started = {}
    for kind in ("natsd", "nats-server"):
        port, ws_port = T.free_port(), T.free_port()
        conf = work / f"{kind}.conf"
        conf.write_text(CONF % ws_port)
        argv = ([binary] if kind == "nats-server" else [sys.executable, "-m", "natsd"]) + [
            "-c", str(conf), "-a", "127.0.0.1", "-p", str(port)]
        started[kind] = Proc(argv, port, ws_port)
    yield started
    for proc in started.values():
        proc.stop()


KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request(path: str = "/", *, method: str = "GET", headers: dict[str, str] | None = None,
            version: str = "HTTP/1.1") -> bytes:
    base = {"Host": "127.0.0.1", "Upgrade": "websocket", "Connection": "Upgrade",
            "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13"}
    for name, value in (headers or {}).items():
        if value is None:
            base.pop(name, None)
        else:
            base[name] = value
    lines = [f"{method} {path} {version}", *(f"{k}: {v}" for k, v in base.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(port: int, data: bytes, *, then: bytes = b"", wait: float = 0.3,
             after: float | None = None) -> tuple[bytes, bool]:
    """What the server sends back to ``data`` (and ``then``, sent once ``wait`` passed quietly;
    ``after``: how long to wait for the answer to ``then``, default ``wait``), and whether it closed."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.sendall(data)
    got, closed = b"", False
    deadline = time.monotonic() + wait
    sent_then = False
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if then and not sent_then:
                sock.sendall(then)
                sent_then = True
                deadline = time.monotonic() + (wait if after is None else after)
            continue
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        got += chunk
    sock.close()
    return got, closed


def masked(data: bytes) -> bytes:
    data = re.sub(rb"Date: [^\r]*", b"Date: <date>", data)
    return data


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    head = bytes([(0x80 if fin else 0) | opcode])
    key = os.urandom(4) if mask else b""
    n = len(payload)
    if n < 126:
        head += bytes([(0x80 if mask else 0) | n])
    elif n < 65536:
        head += bytes([(0x80 if mask else 0) | 126]) + struct.pack(">H", n)
    else:
        head += bytes([(0x80 if mask else 0) | 127]) + struct.pack(">Q", n)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if mask else payload
    return head + key + body


def frames_of(data: bytes) -> list[tuple[int, bool, bytes]]:
    """``(opcode, rsv1, payload)`` of the server's (unmasked) frames in ``data``."""
    out = []
    i = 0
    while i + 2 <= len(data):
        b0, b1 = data[i], data[i + 1]
        n = b1 & 0x7F
        j = i + 2
        if n == 126:
            n = struct.unpack(">H", data[j:j + 2])[0]
            j += 2
        elif n == 127:
            n = struct.unpack(">Q", data[j:j + 8])[0]
            j += 8
        out.append((b0 & 0x0F, bool(b0 & 0x40), data[j:j + n]))
        i = j + n
    return out


REFUSALS = {
    "post": request(method="POST"),
    "mqtt_path_disabled": request("/mqtt"),
    "no_upgrade": request(headers={"Upgrade": None}),
    "upgrade_not_websocket": request(headers={"Upgrade": "h2c"}),
    "no_connection": request(headers={"Connection": "keep-alive"}),
    "no_key": request(headers={"Sec-WebSocket-Key": None}),
    "bad_key": request(headers={"Sec-WebSocket-Key": "short"}),
    "bad_version": request(headers={"Sec-WebSocket-Version": "8"}),
    "foreign_origin": request(headers={"Origin": "http://evil.example.com"}),
    "wrong_scheme_origin": request(headers={"Origin": "https://good.example.com"}),
    "null_origin": request(headers={"Origin": "null"}),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refused_handshakes_match(servers: dict[str, Proc], case: str) -> None:
    ours = exchange(servers["natsd"].ws_port, REFUSALS[case])
    theirs = exchange(servers["nats-server"].ws_port, REFUSALS[case])
    assert masked(ours[0]) == masked(theirs[0])
    assert ours[1] == theirs[1]  # the connection stays open (keep-alive) or closes, alike


def _upgrade(port: int, headers: dict[str, str] | None = None, then: bytes = b"",
             after: float | None = None) -> tuple[bytes, list[Any], bool]:
    data, closed = exchange(port, request(headers=headers), then=then, wait=0.4, after=after)
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, frames_of(rest), closed


def test_the_upgrade_and_the_info_frame_match(servers: dict[str, Proc]) -> None:
    ours = _upgrade(servers["natsd"].ws_port, {"Origin": "http://GOOD.example.com:80"})
    theirs = _upgrade(servers["nats-server"].ws_port, {"Origin": "http://GOOD.example.com:80"})
    assert ours[0] == theirs[0]  # 101, header order, the custom header, no extension
    [(op, rsv1, info)] = ours[1]
    [(their_op, _, their_info)] = theirs[1]
    assert op == their_op == 2 and not rsv1  # INFO in one binary frame
    assert info.startswith(b"INFO {") and info.endswith(b" \r\n")
    assert set(json.loads(info[5:-3])) <= set(json.loads(their_info[5:-3])) | {"git_commit"}


def test_compression_is_negotiated_alike(servers: dict[str, Proc]) -> None:
    ext = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    ours = _upgrade(servers["natsd"].ws_port, ext)
    theirs = _upgrade(servers["nats-server"].ws_port, ext)
    assert ours[0] == theirs[0]
    assert b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; " \
           b"client_no_context_takeover" in ours[0]
    assert ours[1][0][1] and theirs[1][0][1]  # the INFO frame is compressed (RSV1)


@pytest.mark.parametrize("case", ["ping", "close_empty", "close_status", "unmasked", "reserved_bits",
                                  "nats_ping_split", "text_frames"])
def test_frames_after_the_upgrade_match(servers: dict[str, Proc], case: str) -> None:
    then = {
        "ping": frame(9, b"hello"),
        "close_empty": frame(8, b""),
        "close_status": frame(8, struct.pack(">H", 4000) + b"app"),
        "unmasked": frame(2, b"PING\r\n", mask=False),
        "reserved_bits": bytes([0xA2]) + frame(2, b"PING\r\n")[1:],
        "nats_ping_split": frame(2, b'CONNECT {"verbose":false}\r\nPI', fin=False) + frame(0, b"NG\r\n"),
        "text_frames": frame(1, b'CONNECT {"verbose":false}\r\nPING\r\n'),
    }[case]
    # the server closes after these: wait longer for it (the read ends as soon as it does), so
    # that a loaded machine does not cut the answer off
    after = 3.0 if case in ("close_empty", "close_status", "unmasked", "reserved_bits") else None
    ours = _upgrade(servers["natsd"].ws_port, then=then, after=after)
    theirs = _upgrade(servers["nats-server"].ws_port, then=then, after=after)
    assert [f[:1] + f[2:] for f in ours[1][1:]] == [f[:1] + f[2:] for f in theirs[1][1:]]  # after INFO
    assert ours[2] == theirs[2]


def test_a_browser_gets_frames_of_at_most_4096_bytes(servers: dict[str, Proc]) -> None:
    import nats  # noqa: F401 - needs the test extras

    ua = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/156"}
    big = frame(2, b'CONNECT {"verbose":false}\r\nSUB big 1\r\nPUB big 10000\r\n' + b"x" * 10000 + b"\r\nPING\r\n")
    for kind in ("natsd", "nats-server"):
        _, frames, _ = _upgrade(servers[kind].ws_port, ua, then=big)
        assert all(len(f[2]) <= 4096 for f in frames), kind
        assert sum(len(f[2]) for f in frames[1:]) > 10000, kind


def test_keep_alive_after_a_refusal_then_upgrade(servers: dict[str, Proc]) -> None:
    for kind in ("natsd", "nats-server"):
        data, closed = exchange(servers[kind].ws_port, request(method="POST"), then=request(), wait=0.4)
        assert data.startswith(b"HTTP/1.1 405 Method Not Allowed") and b"101 Switching Protocols" in data, kind
        assert not closed, kind
    assert base64.b64decode(KEY)


AUTH_SCENARIOS: dict[str, tuple[str, list[tuple[str, dict[str, Any], dict[str, str], str]]]] = {
    # name: (config after the listen line, [(try, CONNECT fields, upgrade headers, expected)])
    "block_user_and_cookies": (
        "authorization { user: wu, password: wp, timeout: 2 }\n"
        'user_cookie: "u"\npass_cookie: "p"\n}\n', [
            ("no credentials", {}, {}, "refused"),
            ("block user", {"user": "wu", "pass": "wp"}, {}, "accepted"),
            ("cookies", {}, {"Cookie": "u=wu; p=wp"}, "accepted"),
            ("CONNECT wins over a cookie", {"pass": "wp"}, {"Cookie": "u=wu; p=bad"}, "accepted"),
            ("a bad CONNECT password", {"pass": "bad"}, {"Cookie": "u=wu; p=wp"}, "refused"),
        ]),
    "server_token_block_user": (
        "authorization { user: wu, password: wp }\n}\nauthorization { token: tt }\n", [
            ("the server's token", {"auth_token": "tt"}, {}, "refused"),
            ("block user", {"user": "wu", "pass": "wp"}, {}, "accepted"),
        ]),
    "server_user_block_token": (
        "authorization { token: s3cr3t }\ntoken_cookie: tok\n}\nauthorization { user: tu, password: tp }\n", [
            ("the server's user", {"user": "tu", "pass": "tp"}, {}, "refused"),
            ("block token", {"auth_token": "s3cr3t"}, {}, "accepted"),
            ("token cookie", {}, {"Cookie": "tok=s3cr3t"}, "accepted"),
        ]),
    "block_no_auth_user": (
        "no_auth_user: wso\n}\nauthorization { users: [\n"
        '  {user: std, password: s, allowed_connection_types: ["STANDARD"]}\n'
        '  {user: wso, password: w, allowed_connection_types: ["WEBSOCKET"]}\n'
        "  {user: any, password: a}\n]}\n", [
            ("no credentials: the block's no_auth_user", {}, {}, "accepted"),
            ("a STANDARD-only user", {"user": "std", "pass": "s"}, {}, "refused"),
            ("a WEBSOCKET user", {"user": "wso", "pass": "w"}, {}, "accepted"),
            ("any transport", {"user": "any", "pass": "a"}, {}, "accepted"),
        ]),
    "server_no_auth_user_standard_only": (
        '}\nno_auth_user: std\nauthorization { users: [ {user: any, password: a}, '
        '{user: std, password: s, allowed_connection_types: ["STANDARD"]} ] }\n', [
            ("no credentials: a STANDARD-only no_auth_user", {}, {}, "refused"),
            ("any transport", {"user": "any", "pass": "a"}, {}, "accepted"),
        ]),
}


def _auth_outcome(port: int, fields: dict[str, Any], headers: dict[str, str]) -> tuple[Any, str, list[Any]]:
    connect = frame(2, b"CONNECT " + json.dumps({"verbose": False, **fields}).encode() + b"\r\nPING\r\n")
    _, frames, closed = _upgrade(port, headers, then=connect)
    info = json.loads(frames[0][2][5:-3])
    text = b"".join(f[2] for f in frames[1:] if f[0] == 2)
    closes = [struct.unpack(">H", f[2][:2])[0] for f in frames if f[0] == 8]
    outcome = "accepted" if text == b"PONG\r\n" and not closed else (
        "refused" if text == b"-ERR 'Authorization Violation'\r\n" and closes == [1008] else repr(frames))
    return info.get("auth_required"), outcome, closes


def _tcp_outcome(port: int) -> tuple[Any, bytes]:
    """INFO's ``auth_required`` and the answer to a CONNECT without credentials, over TCP."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        info = sock.recv(65536)
        sock.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        answer = b""
        while not answer.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return json.loads(info[5:]).get("auth_required"), answer


@pytest.mark.parametrize("scenario", sorted(AUTH_SCENARIOS))
def test_the_block_s_authorization_matches(tmp_path: Any, scenario: str) -> None:
    """The ``websocket {}`` block's credentials and no_auth_user, beside nats-server's verdicts."""
    binary = require_nats_server()
    tail, tries = AUTH_SCENARIOS[scenario]
    procs = {}
    try:
        for kind in ("natsd", "nats-server"):
            port, ws_port = T.free_port(), T.free_port()
            conf = tmp_path / f"{kind}.conf"
            conf.write_text(f'websocket {{\nlisten: "127.0.0.1:{ws_port}"\nno_tls: true\n{tail}')
            argv = ([binary] if kind == "nats-server" else [sys.executable, "-m", "natsd"]) + [
                "-c", str(conf), "-a", "127.0.0.1", "-p", str(port)]
            procs[kind] = Proc(argv, port, ws_port)
        for name, fields, headers, expected in tries:
            ours = _auth_outcome(procs["natsd"].ws_port, fields, headers)
            theirs = _auth_outcome(procs["nats-server"].ws_port, fields, headers)
            assert ours == theirs, name
            assert ours[:2] == (True, expected), name
        tcp = {kind: _tcp_outcome(proc.port) for kind, proc in procs.items()}
        assert tcp["natsd"] == tcp["nats-server"]  # TCP clients keep the server's own rules
        if scenario == "block_user_and_cookies":
            assert tcp["natsd"] == (None, b"PONG\r\n")
    finally:
        for proc in procs.values():
            proc.stop()


def test_websocket_clients_learn_the_cluster_s_websocket_ports(tmp_path: Any) -> None:
    """A natsd and a nats-server in one cluster: each gives WebSocket clients the other's
    WebSocket port in ``connect_urls``, TCP clients the TCP ports, and nobody ``ws_connect_urls``."""
    binary = require_nats_server()
    ports = {kind: (T.free_port(), T.free_port(), T.free_port()) for kind in ("natsd", "nats-server")}
    procs = {}
    try:
        for kind, (port, ws_port, route_port) in ports.items():
            other = ports["nats-server" if kind == "natsd" else "natsd"][2]
            conf = tmp_path / f"{kind}.conf"
            conf.write_text(f'server_name: {kind}\nwebsocket {{ listen: "127.0.0.1:{ws_port}", no_tls: true }}\n'
                            f'cluster {{ name: C, listen: "127.0.0.1:{route_port}", '
                            f'routes: ["nats-route://127.0.0.1:{other}"] }}\n')
            argv = ([binary] if kind == "nats-server" else [sys.executable, "-m", "natsd"]) + [
                "-c", str(conf), "-a", "127.0.0.1", "-p", str(port)]
            procs[kind] = Proc(argv, port, ws_port)
        ws_urls = sorted(f"127.0.0.1:{p[1]}" for p in ports.values())
        tcp_urls = sorted(f"127.0.0.1:{p[0]}" for p in ports.values())
        for kind, proc in procs.items():
            deadline = time.monotonic() + 15
            while True:
                _, frames, _ = _upgrade(proc.ws_port)
                info = json.loads(frames[0][2][5:-3])
                if sorted(info.get("connect_urls", [])) == ws_urls or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert sorted(info["connect_urls"]) == ws_urls, kind
            assert "ws_connect_urls" not in info and info["port"] == proc.ws_port, kind
            with socket.create_connection(("127.0.0.1", proc.port), timeout=2) as sock:
                tcp_info = json.loads(sock.recv(65536)[5:])
            assert sorted(tcp_info["connect_urls"]) == tcp_urls and "ws_connect_urls" not in tcp_info, kind
    finally:
        for proc in procs.values():
            proc.stop()
