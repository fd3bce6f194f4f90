"""Old (jwt v1) credentials side by side with nats-server 2.15.1, as nats.py's own JWT tests use them.

nats.py's ``tests/nkeys`` fixtures (``op.jwt``, ``resolver_preload.conf``,
``foo-user.creds``) are jwt v1 tokens: ``type`` at the top level, the
signature over the payload alone, and a user without ``subs``/``data``/
``payload``. jwt v2 (nats-server's decoder) reads those absent user limits
as -1 (unlimited) for v1 tokens only: nats-server accepts the user's
subscriptions, and natsd must too. The tokens are built here the way those
fixtures are (same header, same claims), with fresh keys; nats.py's test
(subscribe ``help``, request it) runs with nats-py against both servers.
An account v1 token without ``limits`` gets no such defaults in jwt v2: its
``conn`` of 0 refuses every client, on both servers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time

import nats
import pytest

import transcripts as T  # on sys.path via conftest.py
from natsd.security.nkeys import KeyPair, Prefix, sign_nonce
from natsd_jwt.claims import UserClaims, decode, format_creds, parse_creds
from reference import use_reference_server

V1_HEADER = {"typ": "jwt", "alg": "ed25519"}  # as in nats.py's op.jwt and foo-user.creds
UNLIMITED = {"subs": -1, "conn": -1, "imports": -1, "exports": -1, "data": -1, "payload": -1,
             "wildcards": True}  # resolver_preload.conf's account limits


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def v1_token(signer: KeyPair, subject: str, kind: str, name: str, nats_claims: dict) -> str:
    """A jwt v1 token: ``type`` beside the registered claims, signed over the payload only."""
    payload = {"jti": _b64(os.urandom(20)), "iat": int(time.time()), "iss": signer.public_key,
               "name": name, "sub": subject, "type": kind, "nats": nats_claims}
    h = _b64(json.dumps(V1_HEADER, separators=(",", ":")).encode())
    p = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{h}.{p}.{_b64(signer.sign(p.encode()))}"


def write_fixtures(root: str) -> dict[str, str]:
    """An operator, accounts ``foo`` (limits -1) and ``bare`` (no limits), a user of each;
    returns the config text and the users' .creds paths."""
    operator = KeyPair.create(Prefix.OPERATOR)
    op_path = os.path.join(root, "op.jwt")
    with open(op_path, "w") as f:
        f.write(v1_token(operator, operator.public_key, "operator", "synadia", {}))
    preload = []
    out: dict[str, str] = {}
    for name, limits in (("foo", {"limits": UNLIMITED}), ("bare", {})):
        account = KeyPair.create(Prefix.ACCOUNT)
        preload.append(f'  {account.public_key}: "{v1_token(operator, account.public_key, "account", name, limits)}"')
        user = KeyPair.create(Prefix.USER)
        token = v1_token(account, user.public_key, "user", f"{name}-user", {"pub": {}, "sub": {}})
        path = out[name] = os.path.join(root, f"{name}-user.creds")
        with open(path, "w") as f:
            f.write(format_creds(token, user.seed))
    out["conf"] = (f'operator = "{op_path}"\nresolver = MEMORY\nresolver_preload = {{\n'
                   + "\n".join(preload) + "\n}\n")
    return out


def test_v1_user_tokens_decode_with_unlimited_limits(tmp_path) -> None:
    fixtures = write_fixtures(str(tmp_path))
    with open(fixtures["foo"]) as f:
        token, _ = parse_creds(f.read())
    claims = decode(token)
    assert isinstance(claims, UserClaims) and claims.version == 1
    assert (claims.subs, claims.data, claims.payload) == (-1, -1, -1)
    assert "subs" not in claims.raw["nats"]


async def _nats_py_request(address: tuple[str, int], creds: str) -> bytes:
    """nats.py's test_nkeys_jwt_creds_user_connect: subscribe ``help``, request it."""
    nc = await nats.connect(f"nats://{address[0]}:{address[1]}", user_credentials=creds,
                            allow_reconnect=False, connect_timeout=5)
    try:
        async def help_handler(msg: nats.aio.msg.Msg) -> None:
            await nc.publish(msg.reply, b"OK!")

        await nc.subscribe("help", cb=help_handler)
        await nc.flush()
        msg = await nc.request("help", b"I need help", timeout=5)
        return msg.data
    finally:
        await nc.close()


def _raw(address: tuple[str, int], creds: str) -> bytes:
    """CONNECT as the ``.creds`` user, two SUBs and a PING; what came back until PONG or close."""
    with open(creds) as f:
        token, seed = parse_creds(f.read())
    with socket.create_connection(address, timeout=5) as sock:
        info = json.loads(sock.makefile("rb").readline()[5:])
        sig = sign_nonce(KeyPair.from_seed(seed), info["nonce"])
        connect = {"verbose": False, "jwt": token, "sig": sig, "protocol": 0}
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nSUB a 1\r\nSUB b 2\r\nPING\r\n")
        data = b""
        while b"PONG\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


@pytest.mark.timeout(60)
def test_v1_credentials_side_by_side(server_factory, monkeypatch, tmp_path) -> None:
    use_reference_server(monkeypatch)
    fixtures = write_fixtures(str(tmp_path))
    seen = {}
    for kind in (T.NATS_SERVER, T.NATSD):
        address = server_factory(kind, fixtures["conf"], fresh=True)
        seen[kind] = (asyncio.run(_nats_py_request(address, fixtures["foo"])),
                      _raw(address, fixtures["foo"]), _raw(address, fixtures["bare"]))
    closed = b"-ERR 'maximum account active connections exceeded'\r\n"  # v1 account: conn 0
    # nats-server applies the account's limits on another goroutine: now and then the first SUB
    # is refused too (a v1 account has no subscriptions either), before or after the connection
    # limit closes it (both orders were seen)
    theirs = seen[T.NATS_SERVER]
    subs = b"-ERR 'maximum subscriptions exceeded'\r\n"
    assert theirs[2] in (closed, subs + closed, closed + subs)
    assert seen[T.NATSD] == (*theirs[:2], closed)
    reply, unlimited, _ = seen[T.NATSD]
    assert reply == b"OK!" and unlimited == b"PONG\r\n"
