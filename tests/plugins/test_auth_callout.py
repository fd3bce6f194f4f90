"""Auth callout against a callout service written with nats-py and natsd_jwt.claims."""

from __future__ import annotations

import asyncio
from typing import Any

import nats
import pytest
from nats.errors import NoServersError

from natsd import NATS_SERVER_VERSION
from natsd.config.conf import ConfError, parse
from natsd_jwt.claims import GenericClaims, Permission, Permissions, UserClaims, decode, encode, \
    encode_generic
from natsd.security.nkeys import KeyPair, Prefix
from natsd.server import Server
from natsd_plugins.auth.callout import REQUEST_SUBJECT

ISSUER = KeyPair.create(Prefix.ACCOUNT)


def conf(extra: str = "") -> Any:
    return parse(f"""
        accounts {{
          AUTH {{ users: [ {{user: auth, password: pwd}} ] }}
          APP {{}}
        }}
        authorization {{
          timeout: 1
          auth_callout {{ issuer: {ISSUER.public_key}, auth_users: [auth], account: AUTH{", " + extra if extra else ""} }}
        }}""")


async def run_service(url: str, seen: list[dict]) -> Any:
    """A callout service: alice/secret joins APP with app.> only; anyone else is refused."""
    nc = await nats.connect(url, user="auth", password="pwd")

    async def handle(msg: Any) -> None:
        request = decode(msg.data.decode())
        assert isinstance(request, GenericClaims) and request.kind == "authorization_request"
        nats_part = request.raw["nats"]
        seen.append(nats_part)
        opts, user_key = nats_part["connect_opts"], nats_part["user_nkey"]
        server_id = nats_part["server_id"]["id"]
        assert request.issuer == server_id  # signed by the server's own NKey
        assert nats_part["server_id"]["version"] == NATS_SERVER_VERSION  # as nats-server: its version
        if opts.get("user") == "alice" and opts.get("pass") == "secret":
            user = UserClaims(subject=user_key, name="alice", audience="APP",
                              permissions=Permissions(pub=Permission(allow=["app.>", "_INBOX.>"]),
                                                      sub=Permission(allow=["app.>", "_INBOX.>"])))
            body = {"jwt": encode(user, ISSUER)}
        else:
            body = {"error": f"bad password for {opts.get('user')!r}"}
        await msg.respond(encode_generic("authorization_response", user_key, body, ISSUER,
                                         audience=server_id).encode())

    await nc.subscribe(REQUEST_SUBJECT, cb=handle)
    await nc.flush()
    return nc


async def test_callout_admits_binds_and_restricts(natsd_factory: Any, caplog: Any) -> None:
    srv = natsd_factory(conf())
    seen: list[dict] = []
    service = await run_service(srv.url, seen)
    errors: list[Exception] = []

    async def on_error(e: Exception) -> None:
        errors.append(e)

    alice = await nats.connect(srv.url, user="alice", password="secret", error_cb=on_error)
    try:
        sub = await alice.subscribe("app.>")
        snoop = await service.subscribe(">")  # AUTH account: sees nothing of APP
        await service.flush()
        await alice.publish("app.x", b"hi")
        await alice.publish("other", b"no")
        await alice.flush()
        assert (await sub.next_msg(timeout=2)).data == b"hi"
        await asyncio.sleep(0.1)
        assert any('publish to "other"' in str(e).lower() for e in errors)
        with pytest.raises(nats.errors.TimeoutError):
            await snoop.next_msg(timeout=0.2)
        with pytest.raises((NoServersError, nats.errors.Error, OSError)):
            await nats.connect(srv.url, user="bob", password="guess", allow_reconnect=False,
                               max_reconnect_attempts=0, connect_timeout=2)
        assert "bad password for 'bob'" in caplog.text
    finally:
        await alice.close(), await service.close()
    request = seen[0]
    assert request["connect_opts"]["user"] == "alice" and request["user_nkey"].startswith("U")
    assert request["client_info"]["kind"] == "Client" and request["client_info"]["type"] == "nats"


async def test_callout_without_a_service_refuses(natsd_factory: Any, caplog: Any) -> None:
    srv = natsd_factory(conf())
    with pytest.raises((NoServersError, nats.errors.Error, OSError)):
        await nats.connect(srv.url, user="alice", password="secret", allow_reconnect=False,
                           max_reconnect_attempts=0, connect_timeout=2)
    assert "no service listens on $SYS.REQ.USER.AUTH" in caplog.text


async def test_forged_response_is_refused(natsd_factory: Any, caplog: Any) -> None:
    """A response signed by another key than the issuer admits nobody."""
    srv = natsd_factory(conf())
    nc = await nats.connect(srv.url, user="auth", password="pwd")
    rogue = KeyPair.create(Prefix.ACCOUNT)

    async def handle(msg: Any) -> None:
        request = decode(msg.data.decode()).raw["nats"]
        user = UserClaims(subject=request["user_nkey"], audience="APP")
        await msg.respond(encode_generic("authorization_response", request["user_nkey"],
                                         {"jwt": encode(user, rogue)}, rogue,
                                         audience=request["server_id"]["id"]).encode())

    await nc.subscribe(REQUEST_SUBJECT, cb=handle)
    await nc.flush()
    try:
        with pytest.raises((NoServersError, nats.errors.Error, OSError)):
            await nats.connect(srv.url, user="mallory", password="x", allow_reconnect=False,
                               max_reconnect_attempts=0, connect_timeout=2)
    finally:
        await nc.close()
    assert "not the issuer" in caplog.text


@pytest.mark.parametrize("extra, reason", [
    ("xkey: XAB3NANV3M6N7AHSQP2U5FRWKKUT7EG2ZXXABV4XVXYQRJGM4S2CZGHT", "xkey"),
    ("bogus: 1", "unknown key in auth_callout"),
])
def test_callout_config_errors(extra: str, reason: str) -> None:
    with pytest.raises(ConfError, match=reason):
        asyncio.run(Server(conf(extra)).start())


def test_auth_users_must_exist() -> None:
    bad = parse(f"""
        accounts {{ AUTH {{ users: [ {{user: auth, password: pwd}} ] }} }}
        authorization {{ auth_callout {{ issuer: {ISSUER.public_key}, auth_users: [nobody], account: AUTH }} }}""")
    with pytest.raises(ConfError, match="'nobody' is not a configured user"):
        asyncio.run(Server(bad).start())
