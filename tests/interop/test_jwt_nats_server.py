"""Operator mode side by side: a keytool-built JWT chain against nats-server (and natsd).

``build_chain`` makes a chain with ``natsd_jwt.keytool`` (plus tokens crafted with
``natsd_jwt.claims`` for the refusals), ``check_server(host, port, chain)``
connects every case to whichever server listens there and reports what
happened, and the test compares that with ``EXPECTED`` (what nats-server
2.15.1 does, as 2.9.10 did). The good users also connect with nats-py from
their ``.creds`` files and round-trip a message (nats-py signs with the PyPI
``nkeys`` package, a test dependency).
natsd runs through the same function with the same ``resolver.conf``.
``library_verdict`` applies ``natsd_jwt.claims`` to the same cases without a
server and must reach the same verdicts.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
from dataclasses import dataclass, field

import nats
import pytest

import transcripts as T  # on sys.path via conftest.py
from natsd_jwt import keytool
from natsd_jwt.claims import (
    AccountClaims, JWTError, UserClaims, account_of, decode, encode, parse_creds,
    read_operator_jwt, verify_account, verify_user_chain,
)
from natsd.security.nkeys import KeyPair, NKeyError, Prefix, sign_nonce, verify_nonce_signature

AUTH_VIOLATION = "-ERR 'Authorization Violation'"
OK = "ok"


@dataclass
class Case:
    """One CONNECT: a user JWT, the seed that signs the nonce, and how it signs."""

    jwt: str
    seed: str | None
    sign: str = "url"  # url (base64url, no padding) | std (padded base64) | none | other-nonce | garbage
    then: bytes = b""  # sent after CONNECT+PING when the connect succeeded
    expect_lines: int = 1  # lines to read after a successful connect (PONG + replies to ``then``)


@dataclass
class Chain:
    dir: str
    conf_path: str
    cases: dict[str, Case] = field(default_factory=dict)
    creds: dict[str, str] = field(default_factory=dict)  # nats-py users -> .creds path


#: What nats-server 2.15.1 (and 2.9.10 before it) answers for each case.
EXPECTED: dict[str, str] = {
    "alice": OK,
    "alice-std-base64-sig": OK,
    "signing-key-user": OK,
    "bearer-without-sig": OK,
    "reissued-after-revocation": OK,
    "issued-after-revoke-all": OK,
    "legacy-alg-header": OK,
    "upper-case-header": OK,
    "v1-user": OK,
    "pub-permission": OK + " | -ERR 'Permissions Violation for Publish to \"denied.x\"' | PONG",
    "no-jwt": AUTH_VIOLATION,
    "missing-sig": AUTH_VIOLATION,
    "wrong-nonce-sig": AUTH_VIOLATION,
    "sig-by-other-key": AUTH_VIOLATION,
    "wrong-signer": AUTH_VIOLATION,
    "unknown-signing-key": AUTH_VIOLATION,
    "signing-key-without-issuer-account": AUTH_VIOLATION,
    "operator-signed-user": AUTH_VIOLATION,
    "expired": AUTH_VIOLATION,
    "not-yet-valid": AUTH_VIOLATION,
    "revoked": AUTH_VIOLATION,
    "revoked-via-star": AUTH_VIOLATION,
    "tampered-payload": AUTH_VIOLATION,
    "bad-base64": AUTH_VIOLATION,
    "wrong-alg": AUTH_VIOLATION,
    "v1-user-signed-over-header": AUTH_VIOLATION,
    "account-jwt-as-user": AUTH_VIOLATION,
    "expired-account": AUTH_VIOLATION,
    "untrusted-account": AUTH_VIOLATION,
    "garbage-jwt": AUTH_VIOLATION,
    "jwt-not-a-string": "closed",  # CONNECT does not unmarshal: closed without -ERR
    "garbage-nonce-sig": AUTH_VIOLATION,
    "huge-garbage-jwt": AUTH_VIOLATION,
    "nats-py:alice": OK,
    "nats-py:signing-key-user": OK,
}


# --------------------------------------------------------------------------
# Building the chain
# --------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _resign(token: str, header: dict, signer: KeyPair) -> str:
    """``token``'s payload under another header, signed (v2 style) by ``signer``."""
    h = _b64(json.dumps(header, separators=(",", ":")).encode())
    p = token.split(".")[1]
    return f"{h}.{p}.{_b64(signer.sign(f'{h}.{p}'.encode()))}"


def _user(account_key: KeyPair, user_key: KeyPair | None = None, **kw) -> tuple[str, str]:
    user_key = user_key or KeyPair.create(Prefix.USER)
    issued_at = kw.pop("issued_at", None)
    claims = UserClaims(subject=user_key.public_key, name=kw.pop("name", "u"), **kw)
    return encode(claims, account_key, issued_at=issued_at), user_key.seed


def _creds(path: str) -> tuple[str, str]:
    with open(path) as f:
        return parse_creds(f.read())


def _seed_file(root: str, name: str) -> KeyPair:
    with open(os.path.join(root, "keys", f"{name}.nk")) as f:
        return KeyPair.from_seed(f.read().strip())


def _add_account_jwt(root: str, name: str, claims: AccountClaims, signer: KeyPair) -> None:
    with open(os.path.join(root, "accounts", f"{name}.jwt"), "w") as f:
        f.write(encode(claims, signer) + "\n")


def build_chain(root: str) -> Chain:
    """A chain in ``root`` with a case for every acceptance and refusal we check."""
    now = int(time.time())
    keytool.init(root)
    app, app_sk = _seed_file(root, "APP"), _seed_file(root, "APP-signing")
    operator = _seed_file(root, "operator")
    bob = keytool.add_user(root, "APP", "bob", signer=app_sk)
    bearer = keytool.add_user(root, "APP", "bearer", bearer=True)
    limited = keytool.add_user(root, "APP", "limited", pub_allow=["allowed.>"])
    # Revocation of one key at its token's exact iat; a later token of that key is fine.
    victim = KeyPair.create(Prefix.USER)
    revoked_jwt, _ = _user(app, victim, issued_at=now - 100)
    reissued_jwt, _ = _user(app, victim, issued_at=now - 99)
    keytool.revoke(root, "APP", victim.public_key, at=now - 100)
    # '*' revokes every user of OLD issued at or before its time.
    keytool.add_account(root, "OLD")
    old = _seed_file(root, "OLD")
    old_jwt, old_seed = _user(old, issued_at=now - 50)
    new_jwt, new_seed = _user(old, issued_at=now - 49)
    keytool.revoke(root, "OLD", "*", at=now - 50)
    # An expired account, and one signed by an operator nobody trusts.
    keytool.add_account(root, "GONE", expires_in=-60)
    gone_jwt, gone_seed = _user(_seed_file(root, "GONE"))
    rogue = KeyPair.create(Prefix.ACCOUNT)
    _add_account_jwt(root, "ROGUE", AccountClaims(subject=rogue.public_key, name="ROGUE"),
                     KeyPair.create(Prefix.OPERATOR))
    rogue_jwt, rogue_seed = _user(rogue)
    conf_path = keytool.write_resolver_conf(root)

    alice_jwt, alice_seed = _creds(os.path.join(root, "users", "alice.creds"))
    header, payload, sig = alice_jwt.split(".")
    tampered = json.loads(_unb64(payload))
    tampered["nats"]["pub"] = {"allow": [">"]}
    other = KeyPair.create(Prefix.USER).seed
    v1_key = KeyPair.create(Prefix.USER)
    cases = {
        "alice": Case(alice_jwt, alice_seed),
        "alice-std-base64-sig": Case(alice_jwt, alice_seed, sign="std"),
        "signing-key-user": Case(*_creds(bob)),
        "bearer-without-sig": Case(_creds(bearer)[0], None, sign="none"),
        "reissued-after-revocation": Case(reissued_jwt, victim.seed),
        "issued-after-revoke-all": Case(new_jwt, new_seed),
        "legacy-alg-header": Case(_resign(alice_jwt, {"typ": "JWT", "alg": "ed25519"}, app), alice_seed),
        "upper-case-header": Case(_resign(alice_jwt, {"typ": "jwt", "alg": "ED25519-NKEY"}, app), alice_seed),
        "v1-user": Case(_v1_user(app, v1_key, header_too=False), v1_key.seed),
        "v1-user-signed-over-header": Case(_v1_user(app, v1_key, header_too=True), v1_key.seed),
        "pub-permission": Case(*_creds(limited), then=b"PUB denied.x 1\r\nx\r\nPING\r\n", expect_lines=3),
        "no-jwt": Case("", None, sign="none"),
        "missing-sig": Case(alice_jwt, None, sign="none"),
        "wrong-nonce-sig": Case(alice_jwt, alice_seed, sign="other-nonce"),
        "sig-by-other-key": Case(alice_jwt, other),
        "wrong-signer": Case(*_user(KeyPair.create(Prefix.ACCOUNT))),
        "unknown-signing-key": Case(*_user(KeyPair.create(Prefix.ACCOUNT), issuer_account=app.public_key)),
        "signing-key-without-issuer-account": Case(*_user(app_sk)),
        "operator-signed-user": Case(_operator_signed_user(operator), None, sign="none"),
        "expired": Case(*_user(app, expires=now - 60)),
        "not-yet-valid": Case(*_user(app, not_before=now + 3600)),
        "revoked": Case(revoked_jwt, victim.seed),
        "revoked-via-star": Case(old_jwt, old_seed),
        "tampered-payload": Case(f"{header}.{_b64(json.dumps(tampered).encode())}.{sig}", alice_seed),
        "bad-base64": Case(f"{header}.{payload}!.{sig}", alice_seed),
        "wrong-alg": Case(_resign(alice_jwt, {"typ": "JWT", "alg": "HS256"}, app), alice_seed),
        "account-jwt-as-user": Case(_read(os.path.join(root, "accounts", "APP.jwt")), app.seed),
        "expired-account": Case(gone_jwt, gone_seed),
        "untrusted-account": Case(rogue_jwt, rogue_seed),
        "garbage-jwt": Case("eyJ.garbage.!!", alice_seed),
        "jwt-not-a-string": Case(12345, alice_seed),  # type: ignore[arg-type]
        "garbage-nonce-sig": Case(alice_jwt, alice_seed, sign="garbage"),
        "huge-garbage-jwt": Case("A" * 3000, alice_seed),
    }
    creds = {"alice": os.path.join(root, "users", "alice.creds"), "signing-key-user": bob}
    return Chain(root, conf_path, cases, creds)


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _v1_user(account: KeyPair, user: KeyPair, header_too: bool) -> str:
    """A jwt v1 user token: ``type`` at the top level, signature over the payload alone."""
    payload = {"iat": int(time.time()), "iss": account.public_key, "sub": user.public_key,
               "type": "user", "nats": {"pub": {}, "sub": {}}}
    h = _b64(b'{"typ":"JWT","alg":"ed25519"}')
    p = _b64(json.dumps(payload).encode())
    return f"{h}.{p}.{_b64(account.sign((f'{h}.{p}' if header_too else p).encode()))}"


def _operator_signed_user(operator: KeyPair) -> str:
    """A bearer user JWT signed by the operator (encode refuses; build it by hand)."""
    user = KeyPair.create(Prefix.USER).public_key
    payload = {"iat": int(time.time()), "iss": operator.public_key, "sub": user,
               "nats": {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                        "bearer_token": True, "type": "user", "version": 2}}
    h = _b64(b'{"typ":"JWT","alg":"ed25519-nkey"}')
    p = _b64(json.dumps(payload).encode())
    return f"{h}.{p}.{_b64(operator.sign(f'{h}.{p}'.encode()))}"


# --------------------------------------------------------------------------
# Talking to a server
# --------------------------------------------------------------------------


def _read_lines(sock: socket.socket, n: int, timeout: float = 3.0) -> list[str]:
    """Up to ``n`` protocol lines, fewer if the server closes or goes quiet."""
    sock.settimeout(timeout)
    buf = b""
    while buf.count(b"\r\n") < n:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        buf += chunk
    return [ln.decode("latin-1") for ln in buf.split(b"\r\n")[:n] if ln]


def connect_case(host: str, port: int, case: Case) -> str:
    """CONNECT with ``case``; ``"ok"`` (+ later replies) or the first line the server sent."""
    with socket.create_connection((host, port), timeout=5) as sock:
        info_line = _read_lines(sock, 1)
        assert info_line and info_line[0].startswith("INFO "), info_line
        info = json.loads(info_line[0][5:])
        nonce = info.get("nonce", "")
        connect: dict = {"verbose": False, "pedantic": False, "protocol": 1, "lang": "python",
                         "version": "test"}
        if case.jwt:
            connect["jwt"] = case.jwt
        if case.sign != "none" and case.seed:
            key = KeyPair.from_seed(case.seed)
            if case.sign == "std":  # what nats-py sends
                connect["sig"] = base64.b64encode(key.sign(nonce.encode())).decode()
            elif case.sign == "garbage":
                connect["sig"] = "%%not base64%%" + nonce
            else:
                connect["sig"] = sign_nonce(key, nonce if case.sign == "url" else nonce[::-1] + "x")
        sock.sendall(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
        lines = _read_lines(sock, 1)
        if lines != ["PONG"]:
            return lines[0] if lines else "closed"
        if case.then:
            sock.sendall(case.then)
            lines += _read_lines(sock, case.expect_lines - 1)
        return " | ".join([OK] + lines[1:])


async def _nats_py_round_trip(url: str, creds: str) -> str:
    nc = await nats.connect(url, user_credentials=creds, allow_reconnect=False, connect_timeout=3)
    try:
        sub = await nc.subscribe("jwt.check")
        await nc.publish("jwt.check", b"hello")
        msg = await sub.next_msg(timeout=2)
        return OK if msg.data == b"hello" else f"got {msg.data!r}"
    finally:
        await nc.close()


def check_server(host: str, port: int, chain: Chain) -> dict[str, str]:
    """Every case of ``chain`` against the server at ``host:port``: case -> outcome."""
    results = {name: connect_case(host, port, case) for name, case in chain.cases.items()}
    for name, creds in chain.creds.items():
        try:
            results[f"nats-py:{name}"] = asyncio.run(_nats_py_round_trip(f"nats://{host}:{port}", creds))
        except Exception as e:  # noqa: BLE001 - the outcome is what we compare
            results[f"nats-py:{name}"] = f"{type(e).__name__}: {e}"
    return results


# --------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [T.NATS_SERVER, T.NATSD])
def test_operator_mode_chain(kind, tmp_path, server_factory):
    chain = build_chain(str(tmp_path / "chain"))
    with open(chain.conf_path) as f:
        conf = f.read()
    server = server_factory.server(kind, conf, fresh=True)  # nats-server missing: skip (CI: fail)
    try:
        results = check_server(*server.address, chain)
    finally:
        server.stop()
    wrong = {k: (results.get(k), v) for k, v in EXPECTED.items() if results.get(k) != v}
    assert not wrong, "case: (got, expected)\n" + "\n".join(f"{k}: {v}" for k, v in wrong.items()) \
        + f"\n--- {kind} log ---\n{server.log_tail()}"
    assert set(results) == set(EXPECTED)


def library_verdict(chain: Chain, case: Case, nonce: str = "bm9uY2Utbm9uY2U") -> str:
    """What natsd_jwt.claims decides for ``case``, in the server's words (no server involved)."""
    _, operator = read_operator_jwt(os.path.join(chain.dir, "operator.jwt"))
    accounts = {}
    for fname in os.listdir(os.path.join(chain.dir, "accounts")):
        token = _read(os.path.join(chain.dir, "accounts", fname))
        accounts[decode(token).subject] = token
    try:
        user = decode(case.jwt)
        if not isinstance(user, UserClaims) or account_of(user) not in accounts:
            return AUTH_VIOLATION
        account = verify_account(accounts[account_of(user)], operator, name=account_of(user))
        user = verify_user_chain(user, account)
    except (JWTError, NKeyError):
        return AUTH_VIOLATION
    if user.bearer_token:
        return OK
    if case.sign in ("none", "garbage") or not case.seed:
        return AUTH_VIOLATION
    key = KeyPair.from_seed(case.seed)
    signed = nonce if case.sign in ("url", "std") else nonce[::-1] + "x"
    sig = (base64.b64encode(key.sign(signed.encode())).decode() if case.sign == "std"
           else sign_nonce(key, signed))
    return OK if verify_nonce_signature(user.subject, nonce, sig) else AUTH_VIOLATION


def test_library_agrees_with_nats_server(tmp_path):
    """natsd_jwt.claims and nkeys reach nats-server's verdict (EXPECTED) on every case."""
    chain = build_chain(str(tmp_path))
    verdicts = {name: library_verdict(chain, case) for name, case in chain.cases.items()
                if isinstance(case.jwt, str)}  # a non-string jwt never reaches the library
    assert verdicts == {name: EXPECTED[name].split(" | ")[0] for name in verdicts}


def test_keytool_cli(tmp_path, capsys):
    """``python -m natsd_jwt.keytool`` end to end (the server run is in the test above)."""
    root = str(tmp_path / "ops")
    assert keytool.main(["init", root]) == 0
    assert keytool.main(["init", root]) == 1
    assert "already holds an operator" in capsys.readouterr().err
    assert keytool.main(["add-account", root, "TEAM", "--signing-key", "--expires", "30d"]) == 0
    team_pub = capsys.readouterr().out.strip()
    signing = os.path.join(root, "keys", "TEAM-signing.nk")
    assert keytool.main(["add-user", root, "TEAM", "carol", "--seed", signing, "--pub-allow", "a.>",
                         "--sub-allow", "b.*", "--sub-allow", "_INBOX.>", "--expires", "1h", "--bearer"]) == 0
    carol = decode(_creds(capsys.readouterr().out.strip())[0])
    assert isinstance(carol, UserClaims) and carol.issuer_account == team_pub
    assert carol.permissions.pub.allow == ["a.>"] and carol.permissions.sub.allow == ["b.*", "_INBOX.>"]
    assert carol.bearer_token and 3500 < carol.expires - time.time() <= 3600
    app_seed = os.path.join(root, "keys", "APP.nk")
    assert keytool.main(["add-user", root, "TEAM", "dave", "--seed", app_seed]) == 1
    assert "neither account TEAM nor one of its signing keys" in capsys.readouterr().err
    assert keytool.main(["revoke", root, "TEAM", carol.subject, "--at", "123"]) == 0
    team = decode(_read(os.path.join(root, "accounts", "TEAM.jwt")))
    assert isinstance(team, AccountClaims) and team.revocations == {carol.subject: 123}
    assert keytool.main(["revoke", root, "TEAM", "AXYZ"]) == 1
    capsys.readouterr()
    assert keytool.main(["show", os.path.join(root, "users", "alice.creds")]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == "alice"
    assert keytool.main(["show", os.path.join(root, "users", "missing.creds")]) == 1
    assert "missing.creds is neither a file nor a JWT" in capsys.readouterr().err
    conf = _read(os.path.join(root, "resolver.conf"))
    assert f'operator: "{os.path.join(root, "operator.jwt")}"' in conf
    assert f'{team_pub}: "{_read(os.path.join(root, "accounts", "TEAM.jwt"))}"' in conf
    assert "resolver: MEMORY" in conf and "system_account: A" in conf
    assert oct(os.stat(os.path.join(root, "keys", "operator.nk")).st_mode & 0o777) == "0o600"
    with pytest.raises(SystemExit):
        keytool.main(["add-account", root, "X", "--expires", "soon"])
