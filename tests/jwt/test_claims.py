"""NATS JWTs: encode/decode, every refusal reason of the trust chain, creds files."""

from __future__ import annotations

import base64
import dataclasses
import json
import time

import jwt as pyjwt
import pytest

from natsd_jwt.claims import (
    AccountClaims, AccountLimits, GenericClaims, JWTError, OperatorClaims, Permission, Permissions,
    ResponsePermission, TimeRange, UserClaims, _jti, account_of, connect_times_allowed, decode,
    encode, format_creds, is_revoked, parse_creds, read_operator_jwt, register_pyjwt, src_allowed,
    validate, verify_account, verify_user_chain,
)
from natsd.security.nkeys import KeyPair, NKeyError, Prefix

# nats-io/nkeys creds_utils_test.go: a decorated creds file. Its JWT says version 2
# but is signed over the payload only (v1 style), so jwt/v2's Decode refuses it.
VECTOR_SEED = "SUAOTBNEUHZDFJT3EUMELT7MQTP24JF3XVCXQNDSCU74G5IU6VAJBKH5LI"
VECTOR_JWT = (
    "eyJ0eXAiOiJqd3QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJHVDROVU5NRUY3Wk1XQ1JCWFZWVURLUVQ2WllQWj"
    "c3VzRKUlFYRDNMMjRIS1VKRUNRSDdRIiwiaWF0IjoxNTkwNzgxNTkzLCJpc3MiOiJBQURXTFRISUNWNFNVQUdGNkVLTlZFVzVC"
    "QlA3WVJESUJHV0dHSFo1SkJET1FZQTdHVUZNNkFRVSIsIm5hbWUiOiJPUEVSQVRPUiIsInN1YiI6IlVERTZXVEdMVFRQQ1JKUk"
    "pDS0JKUkdWTlpUTElWUjdMRUVFTFI0Q1lXV1dCS0pTN1hZSUtYRFVVIiwibmF0cyI6eyJwdWIiOnt9LCJzdWIiOnt9LCJ0eXBl"
    "IjoidXNlciIsInZlcnNpb24iOjJ9fQ.c_XQT04wEoVVNDRjPHeKwe17BOrSpQTcftwIbB7KoNEIz6peZCJDc4-J3emVepHofUOW"
    "y7IAo9TlLwYhuGHWAQ")
VECTOR_CREDS = f"""-----BEGIN NATS USER JWT-----
{VECTOR_JWT}
------END NATS USER JWT------

************************* IMPORTANT *************************
NKEY Seed printed below can be used to sign and prove identity.
NKEYs are sensitive and should be treated as secrets.

-----BEGIN USER NKEY SEED-----
{VECTOR_SEED}
------END USER NKEY SEED------

*************************************************************
"""

NOW = 1_700_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def raw_token(signer: KeyPair, payload: dict, header: dict | None = None, v1: bool = False) -> str:
    h = b64(json.dumps(header or {"typ": "JWT", "alg": "ed25519-nkey"}).encode())
    p = b64(json.dumps(payload).encode())
    signed = p if v1 else f"{h}.{p}"
    return f"{h}.{p}.{b64(signer.sign(signed.encode()))}"


@dataclasses.dataclass
class World:
    operator: KeyPair
    op_signing: KeyPair
    account: KeyPair
    signing: KeyPair
    operator_claims: OperatorClaims
    account_claims: AccountClaims

    def user(self, signer: KeyPair | None = None, key: KeyPair | None = None, issued_at: int = NOW,
             **kw) -> tuple[str, KeyPair]:
        key = key or KeyPair.create(Prefix.USER)
        token = encode(UserClaims(subject=key.public_key, **kw), signer or self.account, issued_at=issued_at)
        return token, key

    def chain(self, token: str, account: AccountClaims | None = None, **kw) -> UserClaims:
        return verify_user_chain(token, account or self.account_claims, now=NOW, **kw)


@pytest.fixture
def world() -> World:
    op, op_sk = KeyPair.create("O"), KeyPair.create("O")
    acc, sk = KeyPair.create("A"), KeyPair.create("A")
    opc = OperatorClaims(subject=op.public_key, name="OP", signing_keys=[op_sk.public_key])
    accc = AccountClaims(subject=acc.public_key, name="APP", signing_keys={sk.public_key: None})
    account_claims = verify_account(encode(accc, op, issued_at=NOW), opc, now=NOW)
    return World(op, op_sk, acc, sk, opc, account_claims)


def refused(reason: str, call, match: str | None = None) -> JWTError:
    with pytest.raises(JWTError, match=match) as info:
        call()
    assert info.value.reason == reason, str(info.value)
    return info.value


# --------------------------------------------------------------------------
# Encoding and decoding
# --------------------------------------------------------------------------


def test_encode_writes_what_nats_tools_write(world):
    token, user = world.user(name="alice")
    header, payload, sig = token.split(".")
    assert unb64(header) == b'{"typ":"JWT","alg":"ed25519-nkey"}'
    body = json.loads(unb64(payload))
    assert list(body) == ["jti", "iat", "iss", "name", "sub", "nats"]
    assert body["iss"] == world.account.public_key and body["sub"] == user.public_key
    assert body["iat"] == NOW
    assert body["nats"] == {"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1,
                            "type": "user", "version": 2}
    assert world.account.verify(f"{header}.{payload}".encode(), unb64(sig))


def test_jti_is_the_go_hash_of_the_registered_claims():
    body = json.loads(unb64(VECTOR_JWT.split(".")[1]))
    claims = UserClaims(subject=body["sub"], name=body["name"], issuer=body["iss"], issued_at=body["iat"])
    assert _jti(claims) == body["jti"] == "GT4NUNMEF7ZMWCRBXVVUDKQT6ZYPZ77W4JRQXD3L24HKUJECQH7Q"


def test_round_trip_of_every_claim_type(world):
    user_key = KeyPair.create("U")
    user = UserClaims(
        subject=user_key.public_key, name="bob", expires=NOW + 60, not_before=NOW - 60, tags=["t1"],
        permissions=Permissions(Permission(["a.>"], ["a.b"]), Permission(["c", "q.* grp"], []),
                                resp=ResponsePermission(max_msgs=1, ttl_ns=5_000_000_000)),
        src=["10.0.0.0/8"], times=[TimeRange("08:00:00", "17:00:00")], times_location="UTC",
        subs=10, data=1000, payload=100, bearer_token=True, allowed_connection_types=["STANDARD"],
        issuer_account=world.account.public_key)
    got = decode(encode(user, world.signing, issued_at=NOW))
    assert got == dataclasses.replace(user, issuer=world.signing.public_key, issued_at=NOW, jti=got.jti)
    acc = dataclasses.replace(world.account_claims, revocations={"*": NOW}, description="d",
                              limits=AccountLimits(conn=5, jetstream={"mem_storage": -1}),
                              signing_keys={world.signing.public_key: {
                                  "kind": "user_scope", "key": world.signing.public_key, "role": "r",
                                  "template": {}}},
                              extra={"authorization": {"auth_users": ["U"]}})
    got_acc = decode(encode(acc, world.operator, issued_at=NOW))
    assert got_acc == dataclasses.replace(acc, jti=got_acc.jti)
    assert got_acc.raw["nats"]["authorization"] == {"auth_users": ["U"]}
    got_op = decode(encode(world.operator_claims, world.operator, issued_at=NOW))
    assert got_op == dataclasses.replace(world.operator_claims, issuer=world.operator.public_key,
                                         issued_at=NOW, jti=got_op.jti)


def test_decoded_token_without_limits_has_zero_limits(world):
    """Go leaves omitted limits at 0 (nats-server then allows no subscriptions)."""
    u = KeyPair.create("U")
    token = raw_token(world.account, {"iat": NOW, "iss": world.account.public_key, "sub": u.public_key,
                                      "nats": {"type": "user", "version": 2}})
    claims = decode(token)
    assert (claims.subs, claims.data, claims.payload) == (0, 0, 0)
    acc = raw_token(world.operator, {"iat": NOW, "iss": world.operator.public_key,
                                     "sub": world.account.public_key,
                                     "nats": {"type": "account", "version": 2}})
    assert decode(acc).limits.conn == 0


def test_header_variants_nats_server_accepts(world):
    token, _ = world.user()
    for header in ({"typ": "JWT", "alg": "ed25519"}, {"typ": "jwt", "alg": "ED25519-NKEY"}):
        h = b64(json.dumps(header).encode())
        p = token.split(".")[1]
        assert decode(f"{h}.{p}.{b64(world.account.sign(f'{h}.{p}'.encode()))}").subject
    legacy = encode(UserClaims(subject=KeyPair.create("U").public_key), world.account, algorithm="ed25519")
    assert json.loads(unb64(legacy.split(".")[0]))["alg"] == "ed25519"
    assert decode(legacy)


def test_v1_tokens_sign_the_payload_only(world):
    u = KeyPair.create("U")
    body = {"iat": NOW, "iss": world.account.public_key, "sub": u.public_key, "type": "user",
            "issuer_account": "", "tags": ["x"], "nats": {"pub": {"allow": ["a"]}, "sub": {}}}
    claims = decode(raw_token(world.account, body, {"typ": "JWT", "alg": "ed25519"}, v1=True))
    assert isinstance(claims, UserClaims) and claims.version == 1
    assert claims.permissions.pub.allow == ["a"] and claims.tags == ["x"]
    # jwt v2 reads a v1 user's absent limits as unlimited (nats.py's foo-user.creds has none) ...
    assert (claims.subs, claims.data, claims.payload) == (-1, -1, -1)
    body["nats"]["subs"] = 3
    assert decode(raw_token(world.account, body, v1=True)).subs == 3
    del body["nats"]["subs"]
    # ... and a v2 user's as 0, as Go's zero values
    v2 = {k: v for k, v in body.items() if k not in ("type", "tags", "issuer_account")}
    v2["nats"] = {**body["nats"], "type": "user", "version": 2}
    assert (decode(raw_token(world.account, v2)).subs, decode(raw_token(world.account, v2)).payload) == (0, 0)
    refused("bad-signature", lambda: decode(raw_token(world.account, body)), "V1 signature")
    body["nats"]["max"] = 5
    refused("malformed", lambda: decode(raw_token(world.account, body, v1=True)), "deprecated Max")


def test_known_vector_refused_like_jwt_v2():
    refused("bad-signature", lambda: decode(VECTOR_JWT), "claim failed V2 signature verification")


def test_generic_and_unsupported_types(world):
    token = raw_token(world.account, {"iss": world.account.public_key, "sub": "x",
                                      "nats": {"type": "future-kind", "version": 2}}, v1=True)
    claims = decode(token)  # unknown kinds are verified v1-style, as jwt's DecodeGeneric
    assert isinstance(claims, GenericClaims) and claims.kind == "future-kind"
    activation = {"iss": world.account.public_key, "sub": "x", "nats": {"type": "activation", "version": 2}}
    assert decode(raw_token(world.account, activation)).kind == "activation"  # v2 rules
    refused("bad-signature", lambda: decode(raw_token(world.account, activation, v1=True)), "V2")
    server = raw_token(world.account, {"iss": world.account.public_key, "sub": "x",
                                       "nats": {"type": "server", "version": 2}})
    refused("wrong-type", lambda: decode(server), "ServerClaims are not supported")


@pytest.mark.parametrize("mangle,reason,match", [
    (lambda t: t.rsplit(".", 1)[0], "malformed", "expected 3 chunks"),
    (lambda t: t + ".x", "malformed", "expected 3 chunks"),
    (lambda t: t.replace(".", "!.", 1), "malformed", "header is not unpadded base64url"),
    (lambda t: t.split(".")[0] + ".!!." + t.split(".")[2], "malformed", "payload is not"),
    (lambda t: t + "=", "malformed", "signature is not"),
    (lambda t: b64(b"[1]") + "." + t.split(".", 1)[1], "malformed", "not a JSON object"),
    (lambda t: b64(b'{"typ":"JWT","alg":"HS256"}') + "." + t.split(".", 1)[1], "bad-header",
     "unexpected 'HS256' algorithm"),
    (lambda t: b64(b'{"typ":"JWS","alg":"ed25519-nkey"}') + "." + t.split(".", 1)[1], "bad-header",
     "not supported type"),
    (lambda t: b64(b'{"typ":"JWT","alg":"ed25519-nkeyx"}') + "." + t.split(".", 1)[1], "bad-header",
     "unexpected"),
])
def test_malformed_tokens(world, mangle, reason, match):
    token, _ = world.user()
    refused(reason, lambda: decode(mangle(token)), match)


def test_tampered_payload_fails_the_signature(world):
    token, _ = world.user()
    h, p, s = token.split(".")
    body = json.loads(unb64(p))
    body["nats"]["pub"] = {"allow": [">"]}
    refused("bad-signature", lambda: decode(f"{h}.{b64(json.dumps(body).encode())}.{s}"), "V2 signature")
    refused("bad-signature", lambda: decode(f"{h}.{p}.{s[:-4]}AAAA"))


def test_newer_version_and_bad_field_types(world):
    u = KeyPair.create("U").public_key
    base = {"iss": world.account.public_key, "sub": u}
    newer = raw_token(world.account, {**base, "nats": {"type": "user", "version": 3}})
    refused("malformed", lambda: decode(newer), "newer version")
    refused("malformed", lambda: decode(raw_token(world.account, {**base, "iat": "now",
                                                                   "nats": {"type": "user", "version": 2}})),
            "'iat' must be an integer")


def test_issuer_kind_is_checked_on_decode_and_encode(world):
    u = KeyPair.create("U")
    by_operator = raw_token(world.operator, {"iss": world.operator.public_key, "sub": u.public_key,
                                             "nats": {"type": "user", "version": 2}})
    refused("wrong-issuer", lambda: decode(by_operator), "issued by an account key")
    refused("wrong-issuer", lambda: encode(UserClaims(subject=u.public_key), world.operator))
    refused("wrong-issuer", lambda: encode(world.operator_claims, world.account))
    refused("malformed", lambda: encode(UserClaims(subject=world.account.public_key), world.account),
            "expected subject to be user public key")
    assert decode(encode(AccountClaims(subject=world.account.public_key), world.account))  # self-signed


# --------------------------------------------------------------------------
# Accounts
# --------------------------------------------------------------------------


def test_verify_account_trust(world):
    claims = AccountClaims(subject=world.account.public_key, name="APP")
    assert verify_account(encode(claims, world.op_signing), world.operator_claims, now=NOW)
    assert verify_account(encode(claims, world.operator), [world.operator.public_key], now=NOW)
    refused("untrusted", lambda: verify_account(encode(claims, KeyPair.create("O")),
                                                world.operator_claims, now=NOW), "not a trusted operator key")
    strict = dataclasses.replace(world.operator_claims, strict_signing_key_usage=True)
    refused("untrusted", lambda: verify_account(encode(claims, world.operator), strict, now=NOW))
    assert verify_account(encode(claims, world.op_signing), strict, now=NOW)
    refused("wrong-account", lambda: verify_account(encode(claims, world.operator), world.operator_claims,
                                                    now=NOW, name=KeyPair.create("A").public_key))
    user_token, _ = world.user()
    refused("wrong-type", lambda: verify_account(user_token, world.operator_claims, now=NOW),
            "not account claim")


def test_verify_account_times(world):
    claims = AccountClaims(subject=world.account.public_key, expires=NOW - 1)
    refused("expired", lambda: verify_account(encode(claims, world.operator), world.operator_claims, now=NOW),
            "claim is expired")
    claims = AccountClaims(subject=world.account.public_key, expires=NOW)
    assert verify_account(encode(claims, world.operator), world.operator_claims, now=NOW)  # now > exp only
    claims = AccountClaims(subject=world.account.public_key, not_before=NOW + 1)
    refused("not-yet-valid", lambda: verify_account(encode(claims, world.operator), world.operator_claims,
                                                    now=NOW), "not yet valid")


def test_bad_signing_key_in_account_is_invalid(world):
    claims = AccountClaims(subject=world.account.public_key,
                           signing_keys={KeyPair.create("U").public_key: None})
    refused("invalid-claims", lambda: verify_account(encode(claims, world.operator), world.operator_claims,
                                                     now=NOW), "not a valid account signing key")


# --------------------------------------------------------------------------
# Users: every refusal of the chain
# --------------------------------------------------------------------------


def test_good_users(world):
    token, key = world.user(name="alice")
    assert world.chain(token).subject == key.public_key
    token, key = world.user(world.signing, issuer_account=world.account.public_key)
    claims = world.chain(token)
    assert claims.issuer == world.signing.public_key and account_of(claims) == world.account.public_key
    assert world.chain(claims).subject == key.public_key  # decoded claims are accepted too


def test_wrong_signer(world):
    token, _ = world.user(KeyPair.create("A"))
    refused("wrong-account", lambda: world.chain(token))


def test_unknown_signing_key_with_issuer_account(world):
    token, _ = world.user(KeyPair.create("A"), issuer_account=world.account.public_key)
    refused("unknown-issuer", lambda: world.chain(token), "not the account key or one of its signing keys")


def test_signing_key_user_needs_issuer_account(world):
    token, _ = world.user(world.signing)
    refused("wrong-account", lambda: world.chain(token), "needs issuer_account")


def test_strict_signing_keys_refuse_the_account_key(world):
    token, _ = world.user()
    refused("unknown-issuer", lambda: world.chain(token, strict_signing_keys=True))
    token, _ = world.user(world.signing, issuer_account=world.account.public_key)
    assert world.chain(token, strict_signing_keys=True)


def test_expired_and_not_yet_valid(world):
    token, _ = world.user(expires=NOW - 1)
    refused("expired", lambda: world.chain(token), "claim is expired")
    token, _ = world.user(expires=NOW)
    assert world.chain(token)  # expired only once now > exp
    token, _ = world.user(not_before=NOW + 1)
    refused("not-yet-valid", lambda: world.chain(token), "not yet valid")


def test_revocation_at_or_after_issue_time(world):
    key = KeyPair.create("U")
    account = dataclasses.replace(world.account_claims, revocations={key.public_key: NOW})
    token, _ = world.user(key=key, issued_at=NOW)
    refused("revoked", lambda: world.chain(token, account), "has been revoked")
    token, _ = world.user(key=key, issued_at=NOW - 10)
    refused("revoked", lambda: world.chain(token, account))
    token, _ = world.user(key=key, issued_at=NOW + 1)
    assert world.chain(token, account)
    other, _ = world.user(issued_at=NOW - 10)
    assert world.chain(other, account)


def test_revocation_of_every_key_with_star(world):
    account = dataclasses.replace(world.account_claims, revocations={"*": NOW})
    token, _ = world.user(issued_at=NOW)
    refused("revoked", lambda: world.chain(token, account))
    token, _ = world.user(issued_at=NOW + 1)
    assert world.chain(token, account)
    assert is_revoked({"*": 5, "U1": 1}, "U1", 5) and not is_revoked({"U1": 4}, "U1", 5)


def test_scoped_signing_key_users_carry_no_permissions(world):
    scope = {"kind": "user_scope", "key": world.signing.public_key, "role": "r", "template": {}}
    account = dataclasses.replace(world.account_claims, signing_keys={world.signing.public_key: scope})
    token, _ = world.user(world.signing, issuer_account=world.account.public_key)  # limits -1: not empty
    refused("scoped-signer", lambda: world.chain(token, account))
    token, _ = world.user(world.signing, issuer_account=world.account.public_key, subs=0, data=0, payload=0)
    assert world.chain(token, account)
    assert account.issuer_scope(world.signing.public_key) == (True, scope)


def test_account_expiry_and_bearer_policy(world):
    token, _ = world.user(bearer_token=True)
    expired = dataclasses.replace(world.account_claims, expires=NOW)
    refused("account-expired", lambda: world.chain(token, expired))  # nats-server: exp <= now
    no_bearer = dataclasses.replace(world.account_claims, limits=AccountLimits(disallow_bearer=True))
    refused("bearer-disallowed", lambda: world.chain(token, no_bearer))
    plain, _ = world.user()
    assert world.chain(plain, no_bearer)


def test_not_a_user_token(world):
    account_token = encode(AccountClaims(subject=world.account.public_key), world.operator)
    refused("wrong-type", lambda: world.chain(account_token), "not user claim")


def test_invalid_user_claims(world):
    for kw, match in [({"src": ["10.0.0.1"]}, "invalid cidr"),
                      ({"times": [TimeRange("8:00", "17:00:00")]}, "start in time range is invalid"),
                      ({"times_location": "Mars/Olympus"}, "time zone"),
                      ({"permissions": Permissions(pub=Permission(["a q"]))}, "not allowed to contain queue"),
                      ({"permissions": Permissions(sub=Permission(["a..b"]))}, "consecutive"),
                      ({"issuer_account": "nope"}, "account_id is not an account public key")]:
        token, _ = world.user(**kw)
        refused("invalid-claims", lambda: world.chain(token), match)
    token, _ = world.user(permissions=Permissions(sub=Permission(["q.* workers"])))
    assert world.chain(token)
    assert validate(decode(token), NOW) == []


def test_src_and_connect_times(world):
    user = UserClaims(subject="U", src=["10.0.0.0/8", "::1/128"])
    assert src_allowed(user, "10.1.2.3") and src_allowed(user, "::1")
    assert not src_allowed(user, "192.168.0.1") and not src_allowed(user, "localhost")
    token, _ = world.user(src=["10.0.0.0/8"])
    refused("bad-src", lambda: world.chain(token, host="127.0.0.1"))
    assert world.chain(token, host="10.0.0.7")
    noon = 1_700_049_600  # 2023-11-15 12:00:00 UTC
    day = UserClaims(subject="U", times=[TimeRange("09:00:00", "17:00:00")], times_location="UTC")
    assert connect_times_allowed(day, noon) == (True, 5 * 3600)
    afternoon = dataclasses.replace(day, times=[TimeRange("13:00:00", "14:00:00")])
    assert not connect_times_allowed(afternoon, noon)[0]
    overnight = dataclasses.replace(day, times=[TimeRange("22:00:00", "02:00:00")])
    assert connect_times_allowed(overnight, noon - 12 * 3600 + 23 * 3600)[0]  # 23:00
    assert not connect_times_allowed(overnight, noon - 11 * 3600)[0]  # 01:00: as nats-server, refused
    token, _ = world.user(times=[TimeRange("13:00:00", "14:00:00")], times_location="UTC")
    refused("outside-times", lambda: verify_user_chain(token, world.account_claims, now=noon))


# --------------------------------------------------------------------------
# Operator files, creds files, pyjwt
# --------------------------------------------------------------------------


def test_read_operator_jwt(world, tmp_path):
    token = encode(world.operator_claims, world.operator)
    path = tmp_path / "op.jwt"
    path.write_text(f"-----BEGIN NATS OPERATOR JWT-----\n{token}\n------END NATS OPERATOR JWT------\n")
    assert read_operator_jwt(str(path))[0] == token
    assert read_operator_jwt(token)[1].subject == world.operator.public_key
    with pytest.raises(OSError):
        read_operator_jwt(str(tmp_path / "missing.jwt"))
    account_token = encode(AccountClaims(subject=world.account.public_key), world.operator)
    refused("wrong-type", lambda: read_operator_jwt(account_token), "not operator claim")


def test_parse_creds_vector():
    assert parse_creds(VECTOR_CREDS) == (VECTOR_JWT, VECTOR_SEED)
    assert parse_creds(VECTOR_CREDS.replace("\n", "\r\n")) == (VECTOR_JWT, VECTOR_SEED)
    assert parse_creds(f"{VECTOR_JWT}\n  {VECTOR_SEED}\n") == (f"{VECTOR_JWT}\n  {VECTOR_SEED}", VECTOR_SEED)
    refused("malformed", lambda: parse_creds("foo"), "no nkey seed found")
    with pytest.raises(NKeyError):
        parse_creds(VECTOR_CREDS.replace(VECTOR_SEED, "SU" + "A" * 56))


def test_format_creds_is_byte_exact(world):
    token, key = world.user()
    text = format_creds(token, key.seed)
    assert text == VECTOR_CREDS.replace(VECTOR_JWT, token).replace(VECTOR_SEED, key.seed)
    assert parse_creds(text) == (token, key.seed)
    refused("malformed", lambda: format_creds(token, world.account.seed), "not an user seed")
    account_token = encode(AccountClaims(subject=world.account.public_key), world.operator)
    refused("wrong-type", lambda: format_creds(account_token, key.seed))


def test_pyjwt_with_nkey_algorithm(world):
    register_pyjwt()
    register_pyjwt()  # idempotent
    token, _ = world.user()
    body = pyjwt.decode(token, world.account.public_key, algorithms=["ed25519-nkey"],
                        options={"verify_iat": False})
    assert body["iss"] == world.account.public_key
    with pytest.raises(pyjwt.InvalidSignatureError):
        pyjwt.decode(token, KeyPair.create("A").public_key, algorithms=["ed25519-nkey"])
    u = KeyPair.create("U")
    body = {"iat": int(time.time()), "iss": world.account.public_key, "sub": u.public_key,
            "nats": {"type": "user", "version": 2}}
    made = pyjwt.encode(body, world.account.seed, algorithm="ed25519-nkey")
    assert decode(made).subject == u.public_key
