"""The full resolver side by side: account JWT pushes, lookups, lists and revocations.

The same scenario runs against nats-server 2.15.1 and natsd, each started with
a keytool-built chain and ``resolver { type: full, dir: ... }``. A system
account user pushes a new account JWT on ``$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE``
and a revocation on ``$SYS.REQ.CLAIMS.UPDATE``; both servers must reply
alike, admit the new account's user, and drop the revoked one.
"""

from __future__ import annotations

import asyncio
import json
import os

import nats
import pytest

import transcripts as T  # on sys.path via conftest.py
from natsd_jwt import keytool
from natsd_jwt.claims import decode, parse_creds


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def full_resolver_conf(root: str, jwt_dir: str) -> str:
    conf = keytool.resolver_conf(root)
    return conf.replace("resolver: MEMORY", f'resolver {{ type: full, dir: "{jwt_dir}" }}')


async def _request(nc, subject: str, payload: bytes) -> dict:
    msg = await nc.request(subject, payload, timeout=3)
    return json.loads(msg.data)


async def scenario(url: str, root: str) -> dict:
    """What the server answers, reduced to what must be identical."""
    seen: dict = {}
    sys_creds = keytool.add_user(root, "SYS", "admin")
    alice_creds = os.path.join(root, "users", "alice.creds")
    alice_key = decode(parse_creds(_read(alice_creds))[0]).subject
    team = keytool.add_account(root, "TEAM")
    bob_creds = keytool.add_user(root, "TEAM", "bob")
    team_jwt = _read(os.path.join(root, "accounts", "TEAM.jwt"))

    admin = await nats.connect(url, user_credentials=sys_creds, allow_reconnect=False)
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    alice = await nats.connect(url, user_credentials=alice_creds, allow_reconnect=False,
                               closed_cb=on_closed)
    try:
        reply = await _request(admin, f"$SYS.REQ.ACCOUNT.{team.subject}.CLAIMS.UPDATE", team_jwt.encode())
        seen["push"] = reply.get("data")
        seen["push-server-keys"] = sorted(reply["server"])
        bob = await nats.connect(url, user_credentials=bob_creds, allow_reconnect=False)
        sub = await bob.subscribe("team.x")
        await bob.publish("team.x", b"hi")
        seen["bob"] = (await sub.next_msg(timeout=2)).data.decode()
        await bob.close()
        listed = await _request(admin, "$SYS.REQ.CLAIMS.LIST", b"")
        seen["list-has-team"] = team.subject in listed["data"]
        looked = await admin.request(f"$SYS.REQ.ACCOUNT.{team.subject}.CLAIMS.LOOKUP", b"", timeout=3)
        seen["lookup"] = looked.data.decode() == team_jwt
        bad = await _request(admin, f"$SYS.REQ.ACCOUNT.{team.subject}.CLAIMS.UPDATE", b"not a jwt")
        seen["garbage"] = (bad["error"]["code"], bad["error"]["description"].split(" - ")[0])
        keytool.revoke(root, "APP", alice_key)
        app_jwt = _read(os.path.join(root, "accounts", "APP.jwt"))
        reply = await _request(admin, "$SYS.REQ.CLAIMS.UPDATE", app_jwt.encode())
        seen["revoke-push"] = reply.get("data", {}).get("message")
        await asyncio.wait_for(closed.wait(), 3)
        seen["alice-dropped"] = True
    finally:
        await admin.close()
        await alice.close()
    return seen


#: The reply's server object (nats-server 2.15.1 added feature_flags and flags to 2.9.10's).
EXPECTED_KEYS = ["feature_flags", "flags", "host", "id", "jetstream", "name", "seq", "time", "ver"]


@pytest.mark.parametrize("kind", [T.NATS_SERVER, T.NATSD])
def test_full_resolver_updates(kind, tmp_path, server_factory):
    root = str(tmp_path / "chain")
    keytool.init(root)
    conf = full_resolver_conf(root, str(tmp_path / "jwt"))
    server = server_factory.server(kind, conf, fresh=True)
    host, port = server.address
    try:
        seen = asyncio.run(scenario(f"nats://{host}:{port}", root))
    finally:
        server.stop()
    team = decode(_read(os.path.join(root, "accounts", "TEAM.jwt"))).subject
    assert seen == {
        "push": {"account": team, "code": 200, "message": "jwt updated"},
        "push-server-keys": EXPECTED_KEYS,
        "bob": "hi",
        "list-has-team": True,
        "lookup": True,
        "garbage": (500, "jwt update resulted in error"),
        "revoke-push": "jwt updated",
        "alice-dropped": True,
    }, server.log_tail()
    assert os.path.exists(tmp_path / "jwt" / f"{team}.jwt")
