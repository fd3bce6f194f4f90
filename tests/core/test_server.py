"""The server end to end over raw sockets: limits, timers, slow consumers, plugins."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from natsd import Server, hookimpl
from natsd.config import ServerConfig
from natsd.conn.client import Client
from natsd.plugin.contracts import AuthResult
from natsd.plugin.manager import PluginError


class Conn:
    """A raw NATS connection for tests."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: Server, connect: dict[str, Any] | None = None,
                   rcvbuf: int = 0) -> Conn:
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 22)
        conn = cls(reader, writer)
        info = await conn.line()
        assert info.startswith(b"INFO ")
        conn.info = json.loads(info[5:])
        if connect is not None:
            conn.send(b"CONNECT " + json.dumps(connect).encode() + b"\r\n")
        return conn

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def line(self, timeout: float = 2) -> bytes:
        return await asyncio.wait_for(self.reader.readline(), timeout)

    async def expect(self, *lines: bytes) -> None:
        for want in lines:
            assert await self.line() == want

    async def closed(self, timeout: float = 3) -> bytes:
        """Read until EOF; return everything read."""
        return await asyncio.wait_for(self.reader.read(), timeout)

    def close(self) -> None:
        self.writer.close()


QUIET = {"verbose": False, "pedantic": False}


def cfg(**kw: Any) -> ServerConfig:
    return ServerConfig(host="127.0.0.1", port=0, **kw)


async def test_info_fields() -> None:
    async with Server(cfg(server_name="n1")) as server:
        c = await Conn.open(server)
        assert c.info["server_id"].startswith("N") and len(c.info["server_id"]) == 56
        assert c.info["server_name"] == "n1"
        assert c.info["proto"] == 1 and c.info["headers"] is True
        assert c.info["port"] == server.port and c.info["max_payload"] == 1048576
        assert c.info["client_id"] >= 1 and c.info["client_ip"] == "127.0.0.1"
        c.close()


async def test_max_payload_closes_only_offender() -> None:
    async with Server(cfg(max_payload=100)) as server:
        good = await Conn.open(server, QUIET)
        good.send(b"SUB x 1\r\nPING\r\n")
        await good.expect(b"PONG\r\n")
        bad = await Conn.open(server, QUIET)
        bad.send(b"PUB x 101\r\n" + b"a" * 101 + b"\r\n")
        assert await bad.closed() == b"-ERR 'Maximum Payload Violation'\r\n"
        other = await Conn.open(server, QUIET)
        other.send(b"PUB x 3\r\nabc\r\n")
        await good.expect(b"MSG x 1 3\r\n", b"abc\r\n")
        good.send(b"PING\r\n")
        await good.expect(b"PONG\r\n")


async def test_stale_connection() -> None:
    async with Server(cfg(ping_interval=0.1, ping_max=2)) as server:
        c = await Conn.open(server, QUIET)
        assert await c.closed() == b"PING\r\nPING\r\n-ERR 'Stale Connection'\r\n"
        assert server.stale_connections == 1


async def test_pong_keeps_connection_alive() -> None:
    async with Server(cfg(ping_interval=0.05, ping_max=1)) as server:
        c = await Conn.open(server, QUIET)
        for _ in range(5):
            await c.expect(b"PING\r\n")
            c.send(b"PONG\r\n")
        assert server.clients


async def test_max_connections() -> None:
    async with Server(cfg(max_connections=1)) as server:
        first = await Conn.open(server, QUIET)
        second = await Conn.open(server)
        assert await second.closed() == b"-ERR 'maximum connections exceeded'\r\n"
        first.send(b"PING\r\n")
        await first.expect(b"PONG\r\n")


async def test_max_subscriptions_is_not_fatal() -> None:
    async with Server(cfg(max_subscriptions=2)) as server:
        c = await Conn.open(server, QUIET)
        c.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nPING\r\n")
        await c.expect(b"-ERR 'maximum subscriptions exceeded'\r\n", b"PONG\r\n")


async def test_slow_consumer_is_dropped_and_publisher_unaffected() -> None:
    async with Server(cfg(max_pending=256 * 1024)) as server:
        slow = await Conn.open(server, QUIET, rcvbuf=4096)
        slow.send(b"SUB flood 1\r\nPING\r\n")
        await slow.expect(b"PONG\r\n")
        slow.reader._transport.pause_reading()  # type: ignore[attr-defined]
        fast = await Conn.open(server, QUIET)
        frame = b"PUB flood 1024\r\n" + b"x" * 1024 + b"\r\n"
        for _ in range(20):
            fast.send(frame * 1000)  # ~20 MB in all
            await fast.writer.drain()
            if server.slow_consumers:
                break
        fast.send(b"PING\r\n")
        await fast.expect(b"PONG\r\n")
        assert server.slow_consumers == 1
        assert len(server.clients) == 1


async def test_write_deadline_closes_blocked_consumer() -> None:
    async with Server(cfg(write_deadline=0.2)) as server:
        slow = await Conn.open(server, QUIET, rcvbuf=4096)
        slow.send(b"SUB d 1\r\nPING\r\n")
        await slow.expect(b"PONG\r\n")
        slow.reader._transport.pause_reading()  # type: ignore[attr-defined]
        pub = await Conn.open(server, QUIET)
        pub.send((b"PUB d 1024\r\n" + b"y" * 1024 + b"\r\n") * 4000)
        for _ in range(50):
            await asyncio.sleep(0.05)
            if server.slow_consumers:
                break
        assert server.slow_consumers == 1


class TokenAuth:
    """An authenticator plugin: tokens map to accounts."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens

    @hookimpl
    def natsd_authenticators(self, server: Server) -> list[Any]:
        return [self]

    def authenticate(self, request: Any) -> AuthResult:
        account = self.tokens.get(request.options.get("auth_token", ""))
        if account is None:
            return AuthResult(ok=False, reason="unknown token")
        return AuthResult(ok=True, account=account, user="u-" + account)


async def test_auth_hook_accounts_and_errors() -> None:
    plugin = TokenAuth({"ta": "A", "tb": "B", "ta2": "A"})
    async with Server(cfg(auth_timeout=0.3), plugins=[plugin]) as server:
        waiting = await Conn.open(server)
        assert waiting.info["auth_required"] is True
        early = await Conn.open(server)
        early.send(b"PUB x 1\r\na\r\n")
        assert await early.closed() == b"-ERR 'Authorization Violation'\r\n"
        wrong = await Conn.open(server, {**QUIET, "auth_token": "nope"})
        assert await wrong.closed() == b"-ERR 'Authorization Violation'\r\n"
        a1 = await Conn.open(server, {**QUIET, "auth_token": "ta"})
        a2 = await Conn.open(server, {**QUIET, "auth_token": "ta2"})
        b1 = await Conn.open(server, {**QUIET, "auth_token": "tb"})
        for c in (a1, b1):
            c.send(b"SUB s 1\r\nPING\r\n")
            await c.expect(b"PONG\r\n")
        a2.send(b"PUB s 2\r\nhi\r\nPING\r\n")
        await a2.expect(b"PONG\r\n")
        await a1.expect(b"MSG s 1 2\r\n", b"hi\r\n")
        b1.send(b"PING\r\n")
        await b1.expect(b"PONG\r\n")  # account B saw nothing
        assert await waiting.closed() == b"-ERR 'Authentication Timeout'\r\n"
        assert set(server.accounts) >= {"$G", "A", "B"}


class Events:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def client_connected(self, client: Any) -> None:
        self.seen.append(("connected", client.cid))

    def client_closed(self, client: Any, reason: str) -> None:
        self.seen.append(("closed", reason))


class MessageEvents(Events):
    def message_published(self, client: Any, account: Any, subject: bytes, reply: Any,
                          headers: Any, payload: bytes) -> None:
        self.seen.append(("published", account.name, subject, headers, payload))


class ObserverPlugin:
    def __init__(self, observer: Any) -> None:
        self.observer = observer

    @hookimpl
    def natsd_observers(self) -> Any:
        return self.observer


async def test_lifecycle_observer_keeps_plain_hot_path() -> None:
    obs = Events()
    async with Server(cfg(), plugins=[ObserverPlugin(obs)]) as server:
        # the msgtrace plugin's tracer is triggered by a header: only HPUB takes another path
        cls = server.client_protocol().__class__
        assert cls.__name__ == "TracingClient"
        assert cls.on_pub is Client.on_pub and cls.on_pub_run is Client.on_pub_run
        c = await Conn.open(server, QUIET)
        c.send(b"PING\r\n")
        await c.expect(b"PONG\r\n")
        c.close()
        for _ in range(50):
            if len(obs.seen) == 2:
                break
            await asyncio.sleep(0.02)
    assert obs.seen == [("connected", 1), ("closed", "Client Closed")]


async def test_message_observer_sees_publishes() -> None:
    obs = MessageEvents()
    async with Server(cfg(), plugins=[ObserverPlugin(obs)]) as server:
        assert server.client_protocol().__class__.__name__ == "ObservedClient"
        c = await Conn.open(server, {**QUIET, "headers": True})
        c.send(b"PUB a 2\r\nhi\r\nHPUB b 12 14\r\nNATS/1.0\r\n\r\nyo\r\nPING\r\n")
        await c.expect(b"PONG\r\n")
    assert ("published", "$G", b"a", None, b"hi") in obs.seen
    assert ("published", "$G", b"b", b"NATS/1.0\r\n\r\n", b"yo") in obs.seen


def test_misspelt_hook_is_a_startup_error() -> None:
    class Typo:
        @hookimpl
        def natsd_observer(self) -> None:  # should be natsd_observers
            return None

    with pytest.raises(PluginError, match="natsd_observer"):
        Server(cfg(), plugins=[Typo()])


async def test_internal_client_and_tcp_client_talk() -> None:
    async with Server(cfg()) as server:
        internal = server.connect_internal("svc")
        seen: list[Any] = []

        def handle(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
            seen.append((subject, payload))
            assert reply is not None
            internal.publish(reply, payload.upper())

        internal.subscribe("upper", handle)
        c = await Conn.open(server, QUIET)
        c.send(b"SUB _INBOX.1 9\r\nPUB upper _INBOX.1 3\r\nabc\r\n")
        await c.expect(b"MSG _INBOX.1 9 3\r\n", b"ABC\r\n")
        assert seen == [(b"upper", b"abc")]


async def test_shutdown_closes_clients_and_frees_port() -> None:
    server = Server(cfg())
    await server.start()
    port = server.port
    c = await Conn.open(server, QUIET)
    c.send(b"PING\r\n")
    await c.expect(b"PONG\r\n")
    await server.shutdown()
    assert await c.closed() == b""
    async with Server(cfg().replace(port=port)) as again:  # the port is free for a new server
        assert again.port == port


async def test_runs_of_identical_publishes_are_byte_exact() -> None:
    """Batched delivery of repeated PUB lines, including payloads that contain the line."""
    async with Server(cfg()) as server:
        a = await Conn.open(server, QUIET)
        b = await Conn.open(server, {**QUIET, "echo": False})
        a.send(b"SUB r 1\r\nSUB r.> 5\r\nPING\r\n")
        b.send(b"SUB r 2\r\nPING\r\n")
        await a.expect(b"PONG\r\n")
        await b.expect(b"PONG\r\n")
        tricky = b"PUB r 10\r\n"  # a payload that is the control line itself
        frames = b"PUB r 10\r\n0123456789\r\n" * 5 + b"PUB r 10\r\n" + tricky + b"\r\n"
        b.send(frames + b"PING\r\n")
        await b.expect(b"PONG\r\n")  # echo off: b gets none of its own messages
        for payload in [b"0123456789"] * 5 + [tricky]:
            await a.expect(b"MSG r 1 10\r\n")
            assert await a.reader.readexactly(12) == payload + b"\r\n"
