"""The built-in auth plugin (natsd_plugins.auth) against nats-py and raw sockets."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import bcrypt
import nats
import pytest
from nats.errors import NoServersError

from natsd.config.conf import ConfError, parse
from natsd.server import Server
from natsd.testing import read_until


def raw(port: int, connect: dict[str, Any], then: bytes = b"PING\r\n") -> tuple[dict[str, Any], bytes]:
    """INFO and what the server answered to CONNECT + ``then`` (read until close or PONG)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        f = sock.makefile("rb")
        info = json.loads(f.readline()[5:])
        sock.sendall(b"CONNECT " + json.dumps({"verbose": False, **connect}).encode() + b"\r\n" + then)
        return info, read_until(sock)


VIOLATION = b"-ERR 'Authorization Violation'\r\n"


def test_token(natsd_factory: Any) -> None:
    srv = natsd_factory(parse("authorization { token: s3cr3t }"))
    info, out = raw(srv.port, {"auth_token": "s3cr3t"})
    assert info["auth_required"] is True and out == b"PONG\r\n"
    assert raw(srv.port, {"auth_token": "nope"})[1] == VIOLATION
    assert raw(srv.port, {})[1] == VIOLATION


def test_bcrypt_token_and_password(natsd_factory: Any) -> None:
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    srv = natsd_factory(parse(f'authorization {{ users: [ {{user: bob, password: "{hashed}"}} ] }}'))
    assert raw(srv.port, {"user": "bob", "pass": "pw"})[1] == b"PONG\r\n"
    assert raw(srv.port, {"user": "bob", "pass": hashed})[1] == VIOLATION


async def test_users_in_accounts_are_isolated(natsd_factory: Any) -> None:
    srv = natsd_factory(parse("""
        accounts {
          A: { users: [ {user: a1, password: p}, {user: a2, password: p} ] }
          B: { users: [ {user: b1, password: p} ] }
        }
    """))
    a1 = await nats.connect(srv.url, user="a1", password="p")
    a2 = await nats.connect(srv.url, user="a2", password="p")
    b1 = await nats.connect(srv.url, user="b1", password="p")
    sa = await a1.subscribe("orders")
    sb = await b1.subscribe("orders")
    await a1.flush()
    await b1.flush()
    await a2.publish("orders", b"for A")
    await b1.publish("orders", b"for B")
    await a2.flush()
    assert (await sa.next_msg(timeout=2)).data == b"for A"
    assert (await sb.next_msg(timeout=2)).data == b"for B"
    with pytest.raises(Exception):
        await sa.next_msg(timeout=0.2)
    for nc in (a1, a2, b1):
        await nc.close()


async def test_wrong_password_is_refused_by_nats_py(natsd_factory: Any) -> None:
    srv = natsd_factory({"authorization": {"user": "u", "password": "p"}})
    ok = await nats.connect(srv.url, user="u", password="p")
    await ok.close()
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        await nats.connect(srv.url, user="u", password="x", allow_reconnect=False,
                           max_reconnect_attempts=0, error_cb=on_error, connect_timeout=2)
    assert any("authorization violation" in str(e).lower() for e in errors)


def test_no_auth_user(natsd_factory: Any) -> None:
    srv = natsd_factory(parse("""
        accounts { A: { users: [ {user: anon, password: x} ] } }
        no_auth_user: anon
    """))
    assert raw(srv.port, {})[1] == b"PONG\r\n"
    assert raw(srv.port, {"user": "anon", "pass": "bad"})[1] == VIOLATION


def test_no_auth_user_must_exist() -> None:
    server = Server(parse("authorization { users: [ {user: a, password: b} ] }\nno_auth_user: ghost\n",
                          "n.conf"))
    with pytest.raises(ConfError, match="ghost"):
        server.configure()


def test_allowed_connection_types(natsd_factory: Any) -> None:
    srv = natsd_factory(parse("""
        authorization { users: [
          {user: web, password: p, allowed_connection_types: ["WEBSOCKET"]}
          {user: any, password: p}
        ] }
    """))
    assert raw(srv.port, {"user": "web", "pass": "p"})[1] == VIOLATION
    assert raw(srv.port, {"user": "any", "pass": "p"})[1] == b"PONG\r\n"


def test_token_and_users_together_is_a_config_error() -> None:
    server = Server(parse("authorization { token: t, users: [ {user: a, password: b} ] }", "x.conf"))
    with pytest.raises(ConfError) as info:
        server.configure()
    assert info.value.key == "token" and info.value.line == 1


async def test_auth_timeout_from_config(natsd_factory: Any) -> None:
    srv = natsd_factory(parse("authorization { token: t, timeout: 0.2 }"))
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    await reader.readline()
    assert await asyncio.wait_for(reader.read(), 3) == b"-ERR 'Authentication Timeout'\r\n"
    writer.close()


def test_denying_the_auth_plugin_with_users_configured_refuses_to_start() -> None:
    conf = parse("plugins { deny: [auth] }\nauthorization { token: t }\n", "d.conf")

    async def start() -> None:
        async with Server({**conf, "port": 0}):
            pass

    with pytest.raises(ConfError, match="no plugin authenticates them"):
        asyncio.run(start())


def test_user_permissions_are_enforced(natsd_factory: Any) -> None:
    srv = natsd_factory(parse("""
        authorization { users: [
          {user: r, password: p, permissions: {publish: ["orders.>"], subscribe: {deny: "secret.>"}}}
        ] }
    """))
    _, out = raw(srv.port, {"user": "r", "pass": "p"},
                 b"PUB admin.x 1\r\na\r\nSUB secret.x 1\r\nSUB orders.* 2\r\nPUB orders.new 1\r\nb\r\nPING\r\n")
    assert out == (b"-ERR 'Permissions Violation for Publish to \"admin.x\"'\r\n"
                   b"-ERR 'Permissions Violation for Subscription to \"secret.x\"'\r\n"
                   b"MSG orders.new 2 1\r\nb\r\nPONG\r\n")


def test_nkey_user_signs_the_nonce(natsd_factory: Any) -> None:
    import base64

    from natsd.security.nkeys import KeyPair

    user = KeyPair.create("U")
    srv = natsd_factory(parse(f"authorization {{ users: [ {{nkey: {user.public_key}}} ] }}"))
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        f = sock.makefile("rb")
        info = json.loads(f.readline()[5:])
        sig = base64.urlsafe_b64encode(user.sign(info["nonce"].encode())).rstrip(b"=").decode()
        sock.sendall(b"CONNECT " + json.dumps({"verbose": False, "nkey": user.public_key,
                                               "sig": sig}).encode() + b"\r\nPING\r\n")
        assert f.readline() == b"PONG\r\n"
    other = KeyPair.create("U")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        f = sock.makefile("rb")
        info = json.loads(f.readline()[5:])
        sig = base64.urlsafe_b64encode(other.sign(info["nonce"].encode())).rstrip(b"=").decode()
        sock.sendall(b"CONNECT " + json.dumps({"verbose": False, "nkey": user.public_key,
                                               "sig": sig}).encode() + b"\r\nPING\r\n")
        assert f.readline() == VIOLATION


async def test_password_check_dropped_when_its_client_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A queued bcrypt check whose awaiting task is cancelled (its client closed) never runs."""
    import threading

    from natsd_plugins.auth import static

    release, ran = threading.Event(), []

    def slow_check(configured: str, given: str) -> bool:
        ran.append(given)
        release.wait(5)
        return False

    monkeypatch.setattr(static, "secret_ok", slow_check)
    hasher = static.PasswordHasher(workers=1)
    try:
        first = asyncio.ensure_future(hasher.check("$2a$11$x", "busy"))
        queued = asyncio.ensure_future(hasher.check("$2a$11$x", "queued"))
        await asyncio.sleep(0.05)
        queued.cancel()
        await asyncio.sleep(0.05)  # the cancellation reaches the pool's queue on the next pass
        release.set()
        assert await first is False
        await asyncio.sleep(0.05)
        assert ran == ["busy"]
    finally:
        hasher.close()
