"""Account settings (mappings, limits) and authenticators that answer asynchronously."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import nats
import pytest

from natsd import hookimpl
from natsd.routing.account import Account
from natsd.routing.connection import NO_LIMIT, min_limit
from natsd.config.conf import ConfError, parse
from natsd.plugin.contracts import AuthRequest, AuthResult
from natsd.server import Server


def test_min_limit_treats_negative_as_unlimited() -> None:
    assert min_limit(-1, -1, -1) == NO_LIMIT
    assert min_limit(-1, 5, 10) == 5
    assert min_limit(0, 5) == 0


def test_limits_block_and_its_errors() -> None:
    acc = Account("A")
    acc.configure(parse("limits { max_conn: 3, max_subs: 4, max_payload: 1KB }"))
    assert (acc.max_connections, acc.max_subscriptions, acc.max_payload) == (3, 4, 1024)
    with pytest.raises(ConfError) as e:
        Account("A").configure(parse("limits {\n  max_connections: 1\n  bogus: 3\n}", "acc.conf"))
    assert (e.value.line, e.value.key) == (3, "bogus") and "unknown account limit" in str(e.value)
    with pytest.raises(ConfError, match="expected a number"):
        Account("A").configure(parse("limits { max_subs: -2 }"))


def test_unknown_key_in_an_account_names_its_line(tmp_path: Any) -> None:
    path = tmp_path / "bad.conf"
    path.write_text("accounts {\n  A {\n    users: []\n    max_connections: 1\n  }\n}\n")
    with pytest.raises(ConfError) as e:
        Server(str(path))
    assert (e.value.file, e.value.line, e.value.key) == (str(path), 4, "max_connections")


async def test_bad_mapping_in_an_account_is_refused_at_start() -> None:
    conf = parse('accounts {\n  A {\n    mappings {\n      "a.*": "b.$2"\n    }\n  }\n}\n', "m.conf")
    server = Server(conf)
    with pytest.raises(ConfError) as e:
        await server.start()
    assert (e.value.line, e.value.key) == (4, "a.*") and "wildcard" in str(e.value)


async def test_mappings_are_per_account(natsd_factory: Any) -> None:
    srv = natsd_factory(parse("""
        accounts {
          A { users: [{user: a, password: p}], mappings { "in.*": "out.$1" } }
          B { users: [{user: b, password: p}] }
        }"""))
    a = await nats.connect(srv.url, user="a", password="p")
    b = await nats.connect(srv.url, user="b", password="p")
    try:
        sa, sb = await a.subscribe("out.>"), await b.subscribe(">")
        await a.flush(), await b.flush()
        await a.publish("in.x", b"1")
        await b.publish("in.y", b"2")
        assert (await sa.next_msg(timeout=2)).subject == "out.x"
        assert (await sb.next_msg(timeout=2)).subject == "in.y"  # B has no mappings
    finally:
        await a.close(), await b.close()


# -- asynchronous authenticators ----------------------------------------------------------------


class SlowDirectory:
    """Answers after an await, as a plugin calling an HTTP service would."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.seen: list[str] = []

    async def _lookup(self, request: AuthRequest) -> AuthResult | None:
        await asyncio.sleep(self.delay)
        user = request.options.get("user")
        self.seen.append(str(user))
        if user == "pass-on":
            return None
        ok = request.options.get("pass") == "right"
        return AuthResult(ok=ok, user=user, reason="" if ok else "directory said no",
                          max_subscriptions=1)

    def authenticate(self, request: AuthRequest) -> Any:
        return self._lookup(request)


class Fallback:
    def authenticate(self, request: AuthRequest) -> AuthResult | None:
        if request.options.get("user") == "pass-on":
            return AuthResult(ok=True, user="fallback")
        return None


def plugin(directory: SlowDirectory) -> Any:
    class P:
        @hookimpl
        def natsd_authenticators(self) -> list[Any]:
            return [directory, Fallback()]  # pluggy order is not relied on: one hook, one list
    return P()


def raw_session(port: int, data: bytes, until: bytes = b"PONG\r\n") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.recv(4096)
        sock.sendall(data)
        out = b""
        while until not in out:
            chunk = sock.recv(4096)
            if not chunk:
                break
            out += chunk
        return out


def connect_line(**opts: Any) -> bytes:
    return b"CONNECT " + json.dumps({"verbose": False, **opts}).encode() + b"\r\n"


async def test_async_authenticator_holds_only_its_connection() -> None:
    directory = SlowDirectory(0.3)
    async with Server({"port": 0, "host": "127.0.0.1"}, plugins=[plugin(directory)]) as srv:
        loop = asyncio.get_running_loop()
        # Everything after CONNECT arrives in the same read and must wait for the verdict.
        pipelined = (connect_line(user="u", **{"pass": "right"}) + b"SUB x 1\r\nSUB y 2\r\n"
                     + b"PUB x 2\r\nhi\r\nPING\r\n")
        slow = loop.run_in_executor(None, raw_session, srv.port, pipelined)
        await asyncio.sleep(0.05)
        t0 = loop.time()
        other = await loop.run_in_executor(
            None, raw_session, srv.port, connect_line(user="pass-on") + b"PING\r\n")
        assert other == b"PONG\r\n"
        assert loop.time() - t0 < 0.25 + 0.3  # not queued behind the first verdict
        out = await slow
    # The user's own limit (1 subscription) came with the late verdict.
    assert out == b"-ERR 'maximum subscriptions exceeded'\r\nMSG x 1 2\r\nhi\r\nPONG\r\n"
    assert directory.seen == ["u", "pass-on"]


async def test_async_refusal_and_timeout(caplog: Any) -> None:
    async with Server({"port": 0, "host": "127.0.0.1", "authorization": {"timeout": 0.2}},
                      plugins=[plugin(SlowDirectory(0.05))]) as srv:
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(
            None, raw_session, srv.port, connect_line(user="u", **{"pass": "wrong"}) + b"PING\r\n")
        assert out == b"-ERR 'Authorization Violation'\r\n"
        assert "directory said no" in caplog.text
    async with Server({"port": 0, "host": "127.0.0.1", "authorization": {"timeout": 0.2}},
                      plugins=[plugin(SlowDirectory(5))]) as srv:
        out = await loop.run_in_executor(
            None, raw_session, srv.port, connect_line(user="u", **{"pass": "right"}) + b"PING\r\n")
        assert out == b"-ERR 'Authentication Timeout'\r\n"
