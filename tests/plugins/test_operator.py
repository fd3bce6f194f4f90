"""natsd_plugins.operator: settings errors, limits, mappings and imports from account JWTs.

The side-by-side runs against nats-server are in tests/interop
(test_jwt_nats_server.py, test_operator_updates.py); these cover what only
natsd can be asked directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from typing import Any

import nats
import pytest

from natsd_jwt import keytool
from natsd.config.conf import ConfError, parse
from natsd_jwt.claims import AccountClaims, AccountLimits, UserClaims, encode, encode_generic, parse_creds
from natsd_jwt.claims import Permissions as JWTPermissions
from natsd.security.nkeys import KeyPair, Prefix, sign_nonce
from natsd.server import Server
from natsd.testing import read_until


def _seed(root: str, name: str) -> KeyPair:
    with open(os.path.join(root, "keys", f"{name}.nk")) as f:
        return KeyPair.from_seed(f.read().strip())


def _reissue(root: str, name: str, **changes: Any) -> AccountClaims:
    """Re-sign account ``name`` with ``changes`` applied (and refresh resolver.conf)."""
    from natsd_jwt.claims import decode

    path = os.path.join(root, "accounts", f"{name}.jwt")
    with open(path) as f:
        claims = decode(f.read().strip())
    for k, v in changes.items():
        setattr(claims, k, v)
    with open(path, "w") as f:
        f.write(encode(claims, _seed(root, "operator")) + "\n")
    keytool.write_resolver_conf(root)
    return claims


def _user_creds(root: str, account: str, name: str, **claims: Any) -> str:
    from natsd_jwt.claims import format_creds

    user = KeyPair.create(Prefix.USER)
    token = encode(UserClaims(subject=user.public_key, name=name, **claims), _seed(root, account))
    path = os.path.join(root, "users", f"{name}.creds")
    with open(path, "w") as f:
        f.write(format_creds(token, user.seed))
    return path


def _activation(exporter: KeyPair, importer: str, subject: str) -> str:
    """An activation token granting ``importer`` the stream ``subject``."""
    return encode_generic("activation", importer, {"subject": subject, "kind": "stream"}, exporter)


@pytest.fixture
def chain(tmp_path: Any) -> str:
    root = str(tmp_path / "chain")
    keytool.init(root)
    return root


def _conf(root: str) -> Any:
    return parse(keytool.resolver_conf(root), os.path.join(root, "resolver.conf"))


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize("line, reason", [
    ("resolver: BOGUS", "unknown resolver 'BOGUS'"),
    ("resolver: { type: cache, dir: /tmp/x }", "unknown resolver type 'cache'"),
    ("resolver: { type: full }", "dir has no value"),
    ("resolver: { type: full, dir: /tmp/x, bogus: 1 }", "unknown key in resolver"),
    ('resolver_preload: { ABC: "x" }', "not an account public key"),
])
def test_resolver_errors_name_file_line_and_key(chain: str, line: str, reason: str) -> None:
    text = keytool.resolver_conf(chain).replace("resolver: MEMORY", "resolver: MEMORY" if
                                                line.startswith("resolver_preload") else line)
    if line.startswith("resolver_preload"):
        text += line + "\n"
    path = os.path.join(chain, "bad.conf")
    with open(path, "w") as f:
        f.write(text)
    with pytest.raises(ConfError) as e:
        asyncio.run(Server(path).start())
    assert reason in str(e.value) and e.value.file == path and e.value.line


def test_missing_operator_file_is_a_config_error(tmp_path: Any) -> None:
    path = tmp_path / "op.conf"
    path.write_text('port: -1\noperator: "/nonexistent/op.jwt"\nresolver: MEMORY\n')
    with pytest.raises(ConfError) as e:
        asyncio.run(Server(str(path)).start())
    assert (e.value.line, e.value.key) == (2, "operator") and "cannot read operator JWT" in str(e.value)


def test_nats_server_aliases_of_operator_and_resolver(chain: str, natsd_factory: Any) -> None:
    """``root_operator`` and ``account_resolver`` are nats-server's other spellings; the
    resolver's TLS and pinned accounts are refused as not supported."""
    text = keytool.resolver_conf(chain).replace("operator:", "root_operator:").replace(
        "resolver: MEMORY", "account_resolver: MEMORY")
    srv = natsd_factory(parse(text, os.path.join(chain, "aliases.conf")))
    assert raw_user(srv.port, os.path.join(chain, "users", "alice.creds"), b"PING\r\n") == b"PONG\r\n"
    with pytest.raises(ConfError) as e:
        Server(parse(text + "resolver_tls: { verify: true }\nresolver_pinned_accounts: []\n", "a.conf"))
    assert [(err.key, err.reason) for err in e.value.errors] == [
        (key, "a nats-server option not supported by natsd (operator mode (JWT))")
        for key in ("resolver_tls", "resolver_pinned_accounts")]


def test_operator_plugin_idle_without_its_keys(natsd_factory: Any) -> None:
    srv = natsd_factory(parse("port: -1"))
    assert "operator" not in srv.call(srv.server.plugins.names)


# -- limits, mappings, imports from JWTs ------------------------------------------------------


def creds_connect(sock: socket.socket, creds: str) -> bytes:
    """Read INFO from ``sock``; the CONNECT line of the ``.creds`` user, nonce signed."""
    with open(creds) as f:
        token, seed = parse_creds(f.read())
    info = json.loads(sock.makefile("rb").readline()[5:])
    sig = sign_nonce(KeyPair.from_seed(seed), info["nonce"])
    return b"CONNECT " + json.dumps({"verbose": False, "jwt": token, "sig": sig}).encode() + b"\r\n"


def raw_user(port: int, creds: str, then: bytes) -> bytes:
    """CONNECT as a ``.creds`` user, then ``then``; what came back until PONG or close."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(creds_connect(sock, creds) + then)
        return read_until(sock)


def test_jwt_limits(chain: str, natsd_factory: Any) -> None:
    _reissue(chain, "APP", limits=AccountLimits(conn=1, payload=8))
    creds = _user_creds(chain, "APP", "one-sub", subs=1, payload=-1, data=-1)
    srv = natsd_factory(_conf(chain))
    # The user's subs: 1 and the account's payload: 8, each with nats-server's -ERR.
    assert raw_user(srv.port, creds, b"SUB a 1\r\nSUB b 2\r\nPUB a 8\r\n12345678\r\nPING\r\n") == (
        b"-ERR 'maximum subscriptions exceeded'\r\nMSG a 1 8\r\n12345678\r\nPONG\r\n")
    assert raw_user(srv.port, creds, b"PUB a 9\r\n123456789\r\nPING\r\n") == (
        b"-ERR 'Maximum Payload Violation'\r\n")
    # The account's conn: 1 while one client is connected.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as first:
        first.sendall(creds_connect(first, creds) + b"PING\r\n")
        assert read_until(first) == b"PONG\r\n"
        assert raw_user(srv.port, creds, b"PING\r\n") == (
            b"-ERR 'maximum account active connections exceeded'\r\n")


async def test_jwt_mappings_and_default_permissions(chain: str, natsd_factory: Any) -> None:
    _reissue(chain, "APP", mappings={"in.*": [{"subject": "out.$1", "weight": 100}]},
             default_permissions=JWTPermissions.from_json({"pub": {"deny": ["secret.>"]}}))
    srv = natsd_factory(_conf(chain))
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    nc = await nats.connect(srv.url, user_credentials=os.path.join(chain, "users", "alice.creds"),
                            error_cb=on_error)
    try:
        sub = await nc.subscribe(">")
        await nc.publish("in.x", b"1")
        await nc.publish("secret.x", b"2")
        await nc.flush()
        assert (await sub.next_msg(timeout=2)).subject == "out.x"
        await asyncio.sleep(0.1)
        assert any('publish to "secret.x"' in str(e).lower() for e in errors), errors
    finally:
        await nc.close()


async def test_jwt_exports_and_imports(chain: str, natsd_factory: Any) -> None:
    keytool.add_account(chain, "TEAM")
    app = _reissue(chain, "APP", exports=[
        {"name": "news", "subject": "news.>", "type": "stream"},
        {"name": "private", "subject": "private.>", "type": "stream", "token_req": True},
        {"name": "help", "subject": "help", "type": "service"},
    ])
    team_key = _seed(chain, "TEAM")
    activation = _activation(_seed(chain, "APP"), team_key.public_key, "private.>")
    _reissue(chain, "TEAM", imports=[
        {"name": "news", "subject": "news.>", "account": app.subject, "type": "stream"},
        {"name": "private", "subject": "private.>", "account": app.subject, "type": "stream",
         "token": activation},
        {"name": "help", "subject": "help", "account": app.subject, "type": "service",
         "local_subject": "app.help"},
    ])
    bob = _user_creds(chain, "TEAM", "bob", subs=-1, payload=-1, data=-1)
    srv = natsd_factory(_conf(chain))
    alice = await nats.connect(srv.url, user_credentials=os.path.join(chain, "users", "alice.creds"))
    team = await nats.connect(srv.url, user_credentials=bob)
    try:
        async def helper(msg: Any) -> None:
            await msg.respond(b"helped")

        await alice.subscribe("help", cb=helper)
        news, private = await team.subscribe("news.>"), await team.subscribe("private.>")
        await alice.flush(), await team.flush()
        await alice.publish("news.today", b"n")
        await alice.publish("private.x", b"p")
        assert (await news.next_msg(timeout=2)).data == b"n"
        assert (await private.next_msg(timeout=2)).data == b"p"
        assert (await team.request("app.help", b"?", timeout=2)).data == b"helped"
    finally:
        await alice.close(), await team.close()


async def test_import_without_activation_token_is_not_wired(chain: str, natsd_factory: Any,
                                                           caplog: Any) -> None:
    keytool.add_account(chain, "TEAM")
    app = _reissue(chain, "APP", exports=[
        {"name": "private", "subject": "private.>", "type": "stream", "token_req": True}])
    _reissue(chain, "TEAM", imports=[
        {"name": "private", "subject": "private.>", "account": app.subject, "type": "stream"}])
    bob = _user_creds(chain, "TEAM", "bob", subs=-1, payload=-1, data=-1)
    srv = natsd_factory(_conf(chain))
    alice = await nats.connect(srv.url, user_credentials=os.path.join(chain, "users", "alice.creds"))
    team = await nats.connect(srv.url, user_credentials=bob)
    try:
        sub = await team.subscribe("private.>")
        await team.flush()
        await alice.publish("private.x", b"p")
        await alice.flush()
        with pytest.raises(nats.errors.TimeoutError):
            await sub.next_msg(timeout=0.3)
    finally:
        await alice.close(), await team.close()
    assert "requires an activation token" in caplog.text
