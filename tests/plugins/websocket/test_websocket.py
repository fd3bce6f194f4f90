"""The websocket plugin in one process: settings, its own credentials, monitoring, slow browsers."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import urllib.request

import bcrypt
import nats
import pytest

from natsd import Server
from natsd.config import ConfigError
from natsd.config.conf import parse

pytestmark = pytest.mark.timeout(60)

UPGRADE = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def frame(payload: bytes) -> bytes:
    """A masked binary frame (payload under 126 bytes)."""
    key = os.urandom(4)
    return bytes([0x82, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def serve(text: str) -> tuple[Server, str]:
    server = Server(parse("host: 127.0.0.1\nport: -1\nhttp: 127.0.0.1:-1\n" + text))
    await server.start()
    return server, server.ports["websocket"][0]


def ws_block(extra: str = "") -> str:
    return f"websocket {{ listen: 127.0.0.1:-1, no_tls: true\n{extra} }}\n"


@pytest.mark.parametrize(("text", "message"), [
    ("websocket { port: -1 }", "websocket requires TLS configuration"),
    ("websocket { port: -1, no_tls: true, bogus: 1 }", "unknown field 'bogus'"),
    ("websocket { port: -1, no_tls: true, ping_interval: 5 }", "not supported by natsd"),
    ("websocket { port: -1, no_tls: true, headers { Upgrade: x } }", "can not be set"),
    ("websocket { port: -1, no_tls: true, allowed_origins: ['nope'] }", "unable to parse allowed origin"),
    ("websocket { port: -1, no_tls: true, authorization { token: t, user: u } }", "both a token and a user"),
    ("websocket { port: -1, no_tls: true, authorization { user: u, password: p } }\n"
     "authorization { users: [{user: a, password: b}] }", "username not compatible with presence of users"),
    ("websocket { port: -1, no_tls: true, authorization { token: t } }\n"
     "accounts { A { users: [{user: a, password: b}] } }", "token not compatible with presence of users"),
    ("websocket { port: -1, no_tls: true, no_auth_user: x }", "users/nkeys are not defined"),
    ("websocket { port: -1, no_tls: true, no_auth_user: x }\n"
     "authorization { users: [{user: a, password: b}] }", '"x" not present as user'),
])
def test_settings_errors_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Server(parse("port: -1\n" + text)).configure()


async def test_block_credentials_apply_to_websocket_clients_only() -> None:
    hashed = bcrypt.hashpw(b"wp", bcrypt.gensalt(4)).decode()
    server, url = await serve(ws_block(f'authorization {{ user: wu, password: "{hashed}" }}'))
    try:
        tcp = await nats.connect(server.client_url)  # TCP clients still need nothing
        with pytest.raises(nats.errors.Error):
            await nats.connect(url, user="wu", password="bad", allow_reconnect=False, max_reconnect_attempts=0)
        ws = await nats.connect(url, user="wu", password="wp")  # bcrypt, checked off the loop
        sub = await tcp.subscribe("greet")
        await tcp.flush()
        await ws.publish("greet", b"from the browser side")
        assert (await sub.next_msg(2)).data == b"from the browser side"
        await ws.close()
        await tcp.close()
    finally:
        await server.shutdown()


async def test_the_block_timeout_bounds_authentication() -> None:
    server, url = await serve(ws_block("authorization { token: s3cr3t, timeout: 0.3 }"))
    try:
        port = int(url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(UPGRADE)
        started = time.monotonic()
        data = b""
        while b"Authentication Timeout" not in data:
            chunk = await asyncio.wait_for(reader.read(65536), 3)
            assert chunk, data
            data += chunk
        assert time.monotonic() - started < 1.5  # the block's 0.3 s, not the server's 2 s
        writer.close()
    finally:
        await server.shutdown()


async def test_connz_and_allowed_connection_types() -> None:
    server, url = await serve(ws_block() + 'authorization { users: [\n'
                              '  {user: web, password: w, allowed_connection_types: ["WEBSOCKET"]}\n'
                              '  {user: tcp, password: t, allowed_connection_types: ["STANDARD"]} ] }\n')
    try:
        ws = await nats.connect(url, user="web", password="w", name="tab")
        tcp = await nats.connect(server.client_url, user="tcp", password="t")
        for target, user, password in ((server.client_url, "web", "w"), (url, "tcp", "t")):
            with pytest.raises(nats.errors.Error):
                await nats.connect(target, user=user, password=password, allow_reconnect=False,
                                   max_reconnect_attempts=0)
        monitor = server.ports["monitoring"][0]
        raw = await asyncio.to_thread(lambda: urllib.request.urlopen(f"{monitor}/connz?auth=1").read())
        conns = {c["name"] if "name" in c else c["authorized_user"]: c for c in json.loads(raw)["connections"]}
        assert conns["tab"]["type"] == "websocket" and conns["tab"]["authorized_user"] == "web"
        assert conns["tcp"]["type"] == "nats"  # as nats-server names the TCP client type
        await ws.close()
        await tcp.close()
    finally:
        await server.shutdown()


async def test_a_tab_that_stops_reading_is_a_slow_consumer() -> None:
    server, url = await serve('write_deadline: "500ms"\nmax_pending: 262144\n' + ws_block())
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        sock.sendall(UPGRADE)
        assert (await asyncio.to_thread(sock.recv, 65536)).startswith(b"HTTP/1.1 101")
        sock.sendall(frame(b'CONNECT {"verbose":false}\r\nSUB flood 1\r\nPING\r\n'))
        bystander = await nats.connect(server.client_url)
        echo = await bystander.subscribe("echo")
        await asyncio.sleep(0.2)
        payload = os.urandom(4096)
        deadline = time.monotonic() + 10
        while server.slow_consumers == 0 and time.monotonic() < deadline:
            for _ in range(64):
                await bystander.publish("flood", payload)
            await bystander.flush()
        assert server.slow_consumers == 1  # the tab is cut off (it never read a byte) ...
        await bystander.publish("echo", b"still here")
        assert (await echo.next_msg(2)).data == b"still here"  # ... nobody else noticed
        assert not any(c.transport == "websocket" for c in server.clients.values())
        await bystander.close()
    finally:
        sock.close()
        await server.shutdown()


async def read_until_closed(reader: asyncio.StreamReader, timeout: float) -> bytes:
    data = b""
    while True:
        chunk = await asyncio.wait_for(reader.read(65536), timeout)
        if not chunk:
            return data
        data += chunk


async def test_a_handshake_that_never_finishes_is_closed_at_the_bound(monkeypatch: Any) -> None:
    from natsd_plugins.websocket import listener

    monkeypatch.setattr(listener, "DEFAULT_HANDSHAKE_TIMEOUT", 0.3)  # the bound without handshake_timeout
    server, url = await serve(ws_block())
    try:
        port = int(url.rsplit(":", 1)[1])
        bystander = await nats.connect(url)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # ... and nothing more
        started = time.monotonic()
        assert await read_until_closed(reader, 5) == b""
        assert 0.2 < time.monotonic() - started < 3
        writer.close()
        assert bystander.is_connected  # an upgraded client is not bound by the handshake timer
        await bystander.close()
    finally:
        await server.shutdown()


async def test_a_frame_announcing_too_much_closes_only_its_connection() -> None:
    server, url = await serve(ws_block())
    try:
        port = int(url.rsplit(":", 1)[1])
        bystander = await nats.connect(url)
        sub = await bystander.subscribe("still")
        await bystander.flush()
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(UPGRADE)
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        # a masked binary frame announcing 1 TiB: refused from its header, nothing buffered
        writer.write(bytes([0x82, 0x80 | 127]) + (1 << 40).to_bytes(8, "big") + os.urandom(4) + b"x" * 1000)
        await read_until_closed(reader, 5)
        await bystander.publish("still", b"here")
        assert (await sub.next_msg(2)).data == b"here"
        writer.close()
        await bystander.close()
    finally:
        await server.shutdown()
