"""NATS JWTs: decoding, verifying and issuing operator, account and user claims.

In operator mode ("decentralized security") nats-server trusts an operator
key; the operator signs account JWTs, an account (or one of its signing keys)
signs user JWTs, and a client proves it holds the user key by signing the
nonce of INFO. This module does what nats-server does with those tokens
(github.com/nats-io/jwt/v2 plus server/auth.go, accounts.go and jwt.go):
:func:`decode` checks the header and the issuer's signature,
:func:`verify_account` and :func:`verify_user_chain` apply the trust, time,
signing-key, bearer and revocation rules, and :class:`JWTError` says which
rule failed (for the log; clients only ever see 'Authorization Violation').
:func:`encode` issues tokens (for tests and ``natsd_jwt.keytool``), and
:func:`parse_creds` / :func:`format_creds` handle ``.creds`` files.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jwt as pyjwt
from jwt.algorithms import Algorithm

from natsd.security.nkeys import KeyPair, NKeyError, Prefix, is_valid_public_key

__all__ = [
    "JWTError", "Permission", "ResponsePermission", "Permissions", "TimeRange", "AccountLimits",
    "Claims", "OperatorClaims", "AccountClaims", "UserClaims", "GenericClaims",
    "decode", "encode", "validate", "verify_account", "verify_user_chain", "account_of", "is_revoked",
    "src_allowed", "connect_times_allowed", "read_operator_jwt", "parse_creds", "format_creds",
    "NKeyAlgorithm", "register_pyjwt", "ALGORITHM", "ALGORITHM_V1", "NO_LIMIT", "ALL_KEYS",
]

ALGORITHM = "ed25519-nkey"
ALGORITHM_V1 = "ed25519"  # accepted in headers (any case), never written by nats tooling for v2
LIB_VERSION = 2
NO_LIMIT = -1
ALL_KEYS = "*"  # revocation entry that revokes every user issued at or before its time


class JWTError(ValueError):
    """A token that nats-server would refuse; ``reason`` is a short code, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------
# Claim models
# --------------------------------------------------------------------------


def _int(d: dict, key: str, default: int = 0) -> int:
    v = d.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int):
        raise JWTError("malformed", f"claim {key!r} must be an integer, got {v!r}")
    return v


def _str(d: dict, key: str) -> str:
    v = d.get(key, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise JWTError("malformed", f"claim {key!r} must be a string, got {v!r}")
    return v


def _strs(d: dict, key: str) -> list[str]:
    v = d.get(key) or []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise JWTError("malformed", f"claim {key!r} must be a list of strings, got {v!r}")
    return list(v)


def _obj(d: dict, key: str) -> dict:
    v = d.get(key) or {}
    if not isinstance(v, dict):
        raise JWTError("malformed", f"claim {key!r} must be an object, got {v!r}")
    return v


def _put(out: dict, key: str, value: Any) -> None:
    """Go's ``omitempty``: leave zero values out."""
    if value not in (None, "", 0, False, [], {}):
        out[key] = value


@dataclass
class Permission:
    """Subjects a user may (``allow``) or may not (``deny``) publish or subscribe to."""

    allow: list[str] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out: dict = {}
        _put(out, "allow", list(self.allow))
        _put(out, "deny", list(self.deny))
        return out

    @classmethod
    def from_json(cls, d: dict) -> Permission:
        return cls(_strs(d, "allow"), _strs(d, "deny"))

    def empty(self) -> bool:
        return not self.allow and not self.deny


@dataclass
class ResponsePermission:
    """``resp``: reply to ``max_msgs`` messages within ``ttl_ns`` nanoseconds (Go duration)."""

    max_msgs: int = 0
    ttl_ns: int = 0

    def to_json(self) -> dict:
        return {"max": self.max_msgs, "ttl": self.ttl_ns}

    @classmethod
    def from_json(cls, d: dict) -> ResponsePermission:
        return cls(_int(d, "max"), _int(d, "ttl"))


@dataclass
class Permissions:
    pub: Permission = field(default_factory=Permission)
    sub: Permission = field(default_factory=Permission)
    resp: ResponsePermission | None = None

    def to_json(self) -> dict:
        out = {"pub": self.pub.to_json(), "sub": self.sub.to_json()}  # Go never omits these
        if self.resp is not None:
            out["resp"] = self.resp.to_json()
        return out

    @classmethod
    def from_json(cls, d: dict) -> Permissions:
        resp = d.get("resp")
        return cls(Permission.from_json(_obj(d, "pub")), Permission.from_json(_obj(d, "sub")),
                   ResponsePermission.from_json(_obj(d, "resp")) if resp is not None else None)

    def empty(self) -> bool:
        return self.pub.empty() and self.sub.empty() and self.resp is None


@dataclass
class TimeRange:
    """A daily connect window, ``"HH:MM:SS"`` to ``"HH:MM:SS"``."""

    start: str
    end: str


@dataclass
class AccountLimits:
    """An account's ``limits`` (-1 is unlimited); JetStream limits are kept as given."""

    subs: int = NO_LIMIT
    data: int = NO_LIMIT
    payload: int = NO_LIMIT
    imports: int = NO_LIMIT
    exports: int = NO_LIMIT
    wildcards: bool = True
    disallow_bearer: bool = False
    conn: int = NO_LIMIT
    leaf: int = NO_LIMIT
    jetstream: dict = field(default_factory=dict)

    _INTS: ClassVar = ("subs", "data", "payload", "imports", "exports")

    def to_json(self) -> dict:
        out: dict = {}
        for key in self._INTS:
            _put(out, key, getattr(self, key))
        _put(out, "wildcards", self.wildcards)
        _put(out, "disallow_bearer", self.disallow_bearer)
        _put(out, "conn", self.conn)
        _put(out, "leaf", self.leaf)
        out.update(self.jetstream)
        return out

    @classmethod
    def from_json(cls, d: dict) -> AccountLimits:
        known = {*cls._INTS, "wildcards", "disallow_bearer", "conn", "leaf"}
        return cls(**{k: _int(d, k) for k in cls._INTS}, wildcards=bool(d.get("wildcards")),
                   disallow_bearer=bool(d.get("disallow_bearer")), conn=_int(d, "conn"),
                   leaf=_int(d, "leaf"), jetstream={k: v for k, v in d.items() if k not in known})


@dataclass
class Claims:
    """The registered claims every NATS JWT has, and the generic ``nats`` fields.

    ``issuer``, ``issued_at`` and ``jti`` are set by :func:`encode`. ``extra``
    holds ``nats`` fields this module does not model, so they survive a
    decode/encode round trip; ``raw`` is the decoded payload.
    """

    subject: str
    name: str = ""
    issuer: str = ""
    issued_at: int = 0
    expires: int = 0
    not_before: int = 0
    jti: str = ""
    audience: str = ""
    tags: list[str] = field(default_factory=list)
    version: int = LIB_VERSION
    extra: dict = field(default_factory=dict, repr=False)
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    claim_type: ClassVar[str] = "generic"
    subject_prefix: ClassVar[Prefix | None] = None
    issuer_prefixes: ClassVar[tuple[Prefix, ...]] = ()
    _NATS_KEYS: ClassVar[frozenset[str]] = frozenset()

    def claims_data(self) -> dict:
        """The registered claims in Go's field order (also the input of the ``jti`` hash)."""
        out: dict = {}
        for key, value in (("aud", self.audience), ("exp", self.expires), ("jti", self.jti),
                           ("iat", self.issued_at), ("iss", self.issuer), ("name", self.name),
                           ("nbf", self.not_before), ("sub", self.subject)):
            _put(out, key, value)
        return out

    def nats_json(self) -> dict:
        return {}

    def to_payload(self) -> dict:
        nats = self.nats_json()
        nats.update(self.extra)
        _put(nats, "tags", list(self.tags))
        nats["type"] = self.claim_type
        nats["version"] = LIB_VERSION
        return {**self.claims_data(), "nats": nats}

    @classmethod
    def _base_kwargs(cls, payload: dict, nats: dict) -> dict:
        return dict(subject=_str(payload, "sub"), name=_str(payload, "name"), issuer=_str(payload, "iss"),
                    issued_at=_int(payload, "iat"), expires=_int(payload, "exp"),
                    not_before=_int(payload, "nbf"), jti=_str(payload, "jti"),
                    audience=_str(payload, "aud"),
                    tags=_strs(nats, "tags") or _strs(payload, "tags"),
                    extra={k: v for k, v in nats.items()
                           if k not in cls._NATS_KEYS | {"tags", "type", "version"}},
                    raw=payload)

    @classmethod
    def from_payload(cls, payload: dict, nats: dict, version: int) -> Claims:
        return cls(**cls._base_kwargs(payload, nats), version=version)


@dataclass
class GenericClaims(Claims):
    """A token of a kind this module does not model (activation, authorization ...)."""

    kind: str = ""

    @classmethod
    def from_payload(cls, payload: dict, nats: dict, version: int) -> GenericClaims:
        kwargs = cls._base_kwargs(payload, nats)
        return cls(**kwargs, version=version, kind=_str(nats, "type") or _str(payload, "type"))


@dataclass
class OperatorClaims(Claims):
    signing_keys: list[str] = field(default_factory=list)
    account_server_url: str = ""
    operator_service_urls: list[str] = field(default_factory=list)
    system_account: str = ""
    assert_server_version: str = ""
    strict_signing_key_usage: bool = False

    claim_type: ClassVar[str] = "operator"
    subject_prefix: ClassVar[Prefix | None] = Prefix.OPERATOR
    issuer_prefixes: ClassVar[tuple[Prefix, ...]] = (Prefix.OPERATOR,)
    _NATS_KEYS: ClassVar[frozenset[str]] = frozenset({
        "signing_keys", "account_server_url", "operator_service_urls", "system_account",
        "assert_server_version", "strict_signing_key_usage"})

    def nats_json(self) -> dict:
        out: dict = {}
        _put(out, "signing_keys", list(self.signing_keys))
        _put(out, "account_server_url", self.account_server_url)
        _put(out, "operator_service_urls", list(self.operator_service_urls))
        _put(out, "system_account", self.system_account)
        _put(out, "assert_server_version", self.assert_server_version)
        _put(out, "strict_signing_key_usage", self.strict_signing_key_usage)
        return out

    @classmethod
    def from_payload(cls, payload: dict, nats: dict, version: int) -> OperatorClaims:
        return cls(**cls._base_kwargs(payload, nats), version=version,
                   signing_keys=_strs(nats, "signing_keys"),
                   account_server_url=_str(nats, "account_server_url"),
                   operator_service_urls=_strs(nats, "operator_service_urls"),
                   system_account=_str(nats, "system_account"),
                   assert_server_version=_str(nats, "assert_server_version"),
                   strict_signing_key_usage=bool(nats.get("strict_signing_key_usage")))

    def trusted_keys(self) -> set[str]:
        """Keys whose account JWTs nats-server trusts (``validateTrustedOperators``)."""
        keys = set(self.signing_keys)
        if not self.strict_signing_key_usage:
            keys.add(self.subject)
        return keys


@dataclass
class AccountClaims(Claims):
    """An account. ``signing_keys`` maps each key to None (a plain key) or its scope object."""

    imports: list[dict] = field(default_factory=list)
    exports: list[dict] = field(default_factory=list)
    limits: AccountLimits = field(default_factory=AccountLimits)
    signing_keys: dict[str, dict | None] = field(default_factory=dict)
    revocations: dict[str, int] = field(default_factory=dict)
    default_permissions: Permissions = field(default_factory=Permissions)
    mappings: dict = field(default_factory=dict)
    description: str = ""
    info_url: str = ""

    claim_type: ClassVar[str] = "account"
    subject_prefix: ClassVar[Prefix | None] = Prefix.ACCOUNT
    issuer_prefixes: ClassVar[tuple[Prefix, ...]] = (Prefix.ACCOUNT, Prefix.OPERATOR)
    _NATS_KEYS: ClassVar[frozenset[str]] = frozenset({
        "imports", "exports", "limits", "signing_keys", "revocations", "default_permissions",
        "mappings", "description", "info_url"})

    def nats_json(self) -> dict:
        out: dict = {}
        _put(out, "imports", list(self.imports))
        _put(out, "exports", list(self.exports))
        out["limits"] = self.limits.to_json()
        _put(out, "signing_keys", [k if v is None else v for k, v in self.signing_keys.items()])
        _put(out, "revocations", dict(self.revocations))
        out["default_permissions"] = self.default_permissions.to_json()
        _put(out, "mappings", dict(self.mappings))
        _put(out, "description", self.description)
        _put(out, "info_url", self.info_url)
        return out

    @classmethod
    def from_payload(cls, payload: dict, nats: dict, version: int) -> AccountClaims:
        revocations = _obj(nats, "revocations")
        return cls(**cls._base_kwargs(payload, nats), version=version,
                   imports=list(nats.get("imports") or []), exports=list(nats.get("exports") or []),
                   limits=AccountLimits.from_json(_obj(nats, "limits")),
                   signing_keys=_signing_keys(nats.get("signing_keys") or []),
                   revocations={k: _int(revocations, k) for k in revocations},
                   default_permissions=Permissions.from_json(_obj(nats, "default_permissions")),
                   mappings=_obj(nats, "mappings"), description=_str(nats, "description"),
                   info_url=_str(nats, "info_url"))

    def issuer_scope(self, key: str, strict: bool = False) -> tuple[bool, dict | None]:
        """``(known, scope)`` for a user JWT issuer: the account key or a signing key.

        With ``strict`` (the operator's ``strict_signing_key_usage``) the account
        key itself may not issue users.
        """
        if key in self.signing_keys:
            return True, self.signing_keys[key]
        return (key == self.subject and not strict), None


def _signing_keys(items: Any) -> dict[str, dict | None]:
    if not isinstance(items, list):
        raise JWTError("malformed", f"signing_keys must be a list, got {items!r}")
    keys: dict[str, dict | None] = {}
    for item in items:
        if isinstance(item, str):
            keys[item] = None
        elif isinstance(item, dict) and item.get("kind") == "user_scope":
            keys[_str(item, "key")] = item
        else:
            kind = item.get("kind") if isinstance(item, dict) else item
            raise JWTError("malformed", f"unknown signing key scope {kind!r}")
    return keys


@dataclass
class UserClaims(Claims):
    """A user. Limits default to -1 (unlimited) as nsc writes them. A decoded v2 token
    that omits them has 0, as in Go; a v1 token (which had no such fields) has -1,
    as jwt v2's v1 migration gives them."""

    permissions: Permissions = field(default_factory=Permissions)
    src: list[str] = field(default_factory=list)
    times: list[TimeRange] = field(default_factory=list)
    times_location: str = ""
    subs: int = NO_LIMIT
    data: int = NO_LIMIT
    payload: int = NO_LIMIT
    bearer_token: bool = False
    allowed_connection_types: list[str] = field(default_factory=list)
    issuer_account: str = ""

    claim_type: ClassVar[str] = "user"
    subject_prefix: ClassVar[Prefix | None] = Prefix.USER
    issuer_prefixes: ClassVar[tuple[Prefix, ...]] = (Prefix.ACCOUNT,)
    _NATS_KEYS: ClassVar[frozenset[str]] = frozenset({
        "pub", "sub", "resp", "src", "times", "times_location", "subs", "data", "payload",
        "bearer_token", "allowed_connection_types", "issuer_account"})

    def nats_json(self) -> dict:
        out = self.permissions.to_json()
        _put(out, "src", list(self.src))
        _put(out, "times", [{"start": t.start, "end": t.end} for t in self.times])
        _put(out, "times_location", self.times_location)
        for key in ("subs", "data", "payload"):
            _put(out, key, getattr(self, key))
        _put(out, "bearer_token", self.bearer_token)
        _put(out, "allowed_connection_types", list(self.allowed_connection_types))
        _put(out, "issuer_account", self.issuer_account)
        return out

    @classmethod
    def from_payload(cls, payload: dict, nats: dict, version: int) -> UserClaims:
        src = nats.get("src") or []
        if isinstance(src, str):  # older tokens: one comma-separated string
            src = [s.strip().lower() for s in src.split(",") if s.strip()]
        if version == 1 and nats.get("max", NO_LIMIT) != NO_LIMIT:
            raise JWTError("malformed", "jwtV1 user: deprecated Max/Times in jwtV2")
        absent = NO_LIMIT if version == 1 else 0  # jwt v2's loadUser presets v1's NatsLimits to -1
        times = nats.get("times") or []
        if not isinstance(times, list) or not all(isinstance(t, dict) for t in times):
            raise JWTError("malformed", f"claim 'times' must be a list of objects, got {times!r}")
        return cls(**cls._base_kwargs(payload, nats), version=version,
                   permissions=Permissions.from_json(nats),
                   src=_strs({"src": src}, "src"),
                   times=[TimeRange(_str(t, "start"), _str(t, "end")) for t in times],
                   times_location=_str(nats, "times_location"),
                   subs=_int(nats, "subs", absent), data=_int(nats, "data", absent),
                   payload=_int(nats, "payload", absent),
                   bearer_token=bool(nats.get("bearer_token")),
                   allowed_connection_types=_strs(nats, "allowed_connection_types"),
                   issuer_account=_str(nats, "issuer_account") or _str(payload, "issuer_account"))

    def permission_limits_empty(self) -> bool:
        """True when no permission or limit is set (required of scoped-signer users)."""
        return (self.permissions.empty() and not self.src and not self.times
                and not self.times_location and self.subs == 0 and self.data == 0
                and self.payload == 0 and not self.bearer_token
                and not self.allowed_connection_types)


GENERIC_V2_TYPES = frozenset({"activation", "authorization_request", "authorization_response"})
"""Claim types jwt v2 decodes with their own version rules; others decode as GenericClaims (v1)."""

_CLAIM_TYPES: dict[str, type[Claims]] = {
    "operator": OperatorClaims, "account": AccountClaims, "user": UserClaims}


# --------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _b64url_decode(text: str, what: str) -> bytes:
    """Unpadded base64url, as Go's ``base64.RawURLEncoding``."""
    text = text.replace("\r", "").replace("\n", "")
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise JWTError("malformed", f"{what} is not unpadded base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json_object(data: bytes, what: str) -> dict:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise JWTError("malformed", f"{what} is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise JWTError("malformed", f"{what} is not a JSON object")
    return value


def _check_header(header: dict) -> None:
    """As jwt's ``Header.Valid``: typ "JWT" and alg "ed25519"/"ed25519-nkey", any case."""
    typ, alg = header.get("typ", ""), header.get("alg", "")
    if not isinstance(typ, str) or typ.upper() != "JWT":
        raise JWTError("bad-header", f"not supported type {typ!r}")
    if not isinstance(alg, str) or alg.lower() not in (ALGORITHM, ALGORITHM_V1):
        raise JWTError("bad-header", f"unexpected {alg!r} algorithm")


def _kind_and_version(payload: dict) -> tuple[str, int, dict]:
    """v1 tokens put ``type`` at the top level; v2 in ``nats`` with a ``version``."""
    nats = payload.get("nats") or {}
    if not isinstance(nats, dict):
        raise JWTError("malformed", "claim 'nats' must be an object")
    if payload.get("type"):
        return _str(payload, "type"), 1, nats
    return _str(nats, "type"), _int(nats, "version"), nats


def decode(token: str) -> Claims:
    """Decode ``token`` and verify it is signed by the key in its ``iss`` claim.

    Like jwt's ``Decode``, this does not check times or trust; see
    :func:`validate`, :func:`verify_account` and :func:`verify_user_chain`.

    pyjwt is not used here: the key to verify with comes from the unverified
    payload, v1 tokens sign only the payload segment, and nats matches ``typ``
    and ``alg`` case-insensitively; pyjwt does none of these.
    """
    if not isinstance(token, str):
        raise JWTError("malformed", "token is not a string")
    chunks = token.split(".")
    if len(chunks) != 3:
        raise JWTError("malformed", "expected 3 chunks")
    _check_header(_json_object(_b64url_decode(chunks[0], "header"), "header"))
    payload = _json_object(_b64url_decode(chunks[1], "payload"), "payload")
    kind, version, nats = _kind_and_version(payload)
    if version > LIB_VERSION:
        raise JWTError("malformed", "JWT was generated by a newer version")
    if kind in ("cluster", "server"):
        raise JWTError("wrong-type", f"{kind.capitalize()}Claims are not supported")
    cls = _CLAIM_TYPES.get(kind, GenericClaims)
    if cls is GenericClaims and kind not in GENERIC_V2_TYPES:
        version = -1  # jwt's DecodeGeneric: verified v1-style
    claims = cls.from_payload(payload, nats, version)
    signature = _b64url_decode(chunks[2], "signature")
    signed = chunks[1] if version <= 1 else f"{chunks[0]}.{chunks[1]}"
    if not _issuer_signed(claims.issuer, signed.encode("ascii"), signature):
        raise JWTError("bad-signature", f"claim failed V{max(version, 1)} signature verification")
    if cls.issuer_prefixes and not any(is_valid_public_key(claims.issuer, p) for p in cls.issuer_prefixes):
        wanted = ", ".join(p.name.lower() for p in cls.issuer_prefixes)
        raise JWTError("wrong-issuer", f"{kind} JWT must be issued by an {wanted} key, not {claims.issuer!r}")
    return claims


def _issuer_signed(issuer: str, data: bytes, signature: bytes) -> bool:
    try:
        key = KeyPair.from_public_key(issuer)
    except NKeyError:
        return False
    return key.verify(data, signature)


def _decode_as(token: str, cls: type[Claims]) -> Any:
    claims = decode(token)
    if not isinstance(claims, cls):
        raise JWTError("wrong-type", f"not {cls.claim_type} claim")
    return claims


# --------------------------------------------------------------------------
# Validation (jwt's Validate with IsBlocking(true))
# --------------------------------------------------------------------------


def _now(now: float | None) -> int:
    return int(time.time() if now is None else now)


def _time_issues(claims: Claims, now: int) -> list[tuple[str, str]]:
    issues = []
    if claims.expires > 0 and now > claims.expires:
        issues.append(("expired", "claim is expired"))
    if claims.not_before > 0 and claims.not_before > now:
        issues.append(("not-yet-valid", "claim is not yet valid"))
    return issues


def _subject_issues(subject: str) -> list[str]:
    if subject == "":
        return ["subject cannot be empty"]
    issues = []
    if " " in subject:
        issues.append(f"subject {subject!r} cannot have spaces")
    if subject[0] == "." or subject[-1] == ".":
        issues.append(f"subject {subject!r} cannot start or end with a `.`")
    if ".." in subject:
        issues.append(f"subject {subject!r} cannot contain consecutive `.`")
    return issues


def _permission_issues(perm: Permission, permit_queue: bool) -> list[str]:
    issues = []
    for subject in perm.allow + perm.deny:
        tokens = subject.split(" ")
        if len(tokens) > 2:
            issues.append(f"Permission Subject {subject!r} contains too many spaces")
            continue
        for tok in tokens:
            issues += _subject_issues(tok)
        if len(tokens) == 2 and not permit_queue:
            issues.append(f"Permission Subject {subject!r} is not allowed to contain queue")
    return issues


def _permissions_issues(p: Permissions) -> list[str]:
    return _permission_issues(p.sub, True) + _permission_issues(p.pub, False)


_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d):([0-5]\d)")


def _user_issues(user: UserClaims) -> list[str]:
    issues = _permissions_issues(user.permissions)
    for cidr in user.src:
        if "/" not in cidr or not _parse_cidr(cidr):
            issues.append(f"invalid cidr {cidr!r} in user src limits")
    for tr in user.times:
        for what, value in (("start", tr.start), ("end", tr.end)):
            if not value:
                issues.append(f"time ranges {what} must contain a{'n' if what == 'end' else ''} {what}")
            elif not _CLOCK.fullmatch(value):
                issues.append(f"{what} in time range is invalid {value!r}")
    if user.times_location and _zone(user.times_location) is None:
        issues.append(f"could not parse iana time zone by name: {user.times_location!r}")
    if user.issuer_account and not is_valid_public_key(user.issuer_account, Prefix.ACCOUNT):
        issues.append("account_id is not an account public key")
    return issues


def _account_issues(account: AccountClaims) -> list[str]:
    issues = _permissions_issues(account.default_permissions)
    for key, scope in account.signing_keys.items():
        if not is_valid_public_key(key, Prefix.ACCOUNT):
            what = "is not an account public key" if scope else "is not a valid account signing key"
            issues.append(f"{key!r} {what}")
    return issues


def _operator_issues(op: OperatorClaims) -> list[str]:
    issues = [f"{k} is not an operator public key" for k in op.signing_keys
              if not is_valid_public_key(k, Prefix.OPERATOR)]
    if op.system_account and not is_valid_public_key(op.system_account, Prefix.ACCOUNT):
        issues.append(f"{op.system_account} is not an account public key")
    if op.account_server_url and "://" not in op.account_server_url:
        issues.append(f"account server url {op.account_server_url!r} requires a protocol")
    for url in op.operator_service_urls:
        if url and url.split("://", 1)[0].lower() not in ("nats", "tls"):
            issues.append(f"operator service url {url!r} - protocol not supported "
                          "(only 'nats' or 'tls' only)")
    return issues


def validate(claims: Claims, now: float | None = None) -> list[tuple[str, str]]:
    """The blocking issues of ``claims`` as ``(reason, message)`` pairs; empty when valid.

    Covers what jwt's ``Validate`` checks for these tokens: times, subjects
    in permissions, CIDRs, connect windows, key kinds. Imports, exports and
    mappings are kept raw and not validated here.
    """
    issues = _time_issues(claims, _now(now))
    if isinstance(claims, UserClaims):
        issues += [("invalid-claims", m) for m in _user_issues(claims)]
    elif isinstance(claims, AccountClaims):
        issues += [("invalid-claims", m) for m in _account_issues(claims)]
    elif isinstance(claims, OperatorClaims):
        issues += [("invalid-claims", m) for m in _operator_issues(claims)]
    return issues


def _raise_issues(what: str, claims: Claims, now: float | None) -> None:
    issues = validate(claims, now)
    if issues:
        reason, _ = issues[0]
        text = "; ".join(m for _, m in issues)
        raise JWTError(reason, f"{what} JWT {claims.subject} is not valid: {text}")


# --------------------------------------------------------------------------
# Trust chain
# --------------------------------------------------------------------------


def verify_account(account_jwt: str, operator: OperatorClaims | Iterable[str],
                   now: float | None = None, *, name: str | None = None) -> AccountClaims:
    """Decode an account JWT and check it as nats-server's ``verifyAccountClaims``.

    ``operator`` is the operator's claims or the trusted keys themselves. The
    issuer must be the operator key (unless it uses strict signing keys) or
    one of its signing keys; the account must not be expired or not yet
    valid. ``name``, when given, must be the account's subject.
    """
    account = _decode_as(account_jwt, AccountClaims)
    trusted = operator.trusted_keys() if isinstance(operator, OperatorClaims) else set(operator)
    if account.issuer not in trusted:
        raise JWTError("untrusted", f"account JWT {account.subject} is issued by {account.issuer}, "
                       "which is not a trusted operator key")
    _raise_issues("account", account, now)
    if name is not None and account.subject != name:
        raise JWTError("wrong-account", f"account JWT subject {account.subject} does not match {name}")
    return account


def is_revoked(revocations: dict[str, int], key: str, issued_at: int) -> bool:
    """nats-server's rule: revoked when an entry for ``key`` or ``*`` is at or after ``issued_at``."""
    for entry in (key, ALL_KEYS):
        ts = revocations.get(entry)
        if ts is not None and ts >= issued_at:
            return True
    return False


def account_of(user: UserClaims) -> str:
    """The account a user JWT belongs to: ``issuer_account`` if set, else its issuer."""
    return user.issuer_account or user.issuer


def verify_user_chain(user_jwt: str | UserClaims, account: AccountClaims, now: float | None = None, *,
                      host: str | None = None, strict_signing_keys: bool = False) -> UserClaims:
    """Decode a user JWT and check it against its (already verified) account.

    The checks and their order follow nats-server's client authentication:
    validity (times, permissions), the account it claims (``issuer_account``
    when a signing key issued it, else the issuer), the issuer being the
    account key or one of its signing keys (a scoped key's users may carry no
    permissions or limits of their own), the account's expiry, bearer tokens
    the account disallows, revocations, and, when ``host`` is given, the
    ``src`` CIDRs; then the connect time windows. The nonce signature is
    checked separately (:func:`natsd.security.nkeys.verify_nonce_signature`) unless the
    user is a bearer token. ``user_jwt`` may be the token or its decoded claims
    (to look the account up by :func:`account_of` first without decoding twice).
    """
    now_s = _now(now)
    user = user_jwt if isinstance(user_jwt, UserClaims) else _decode_as(user_jwt, UserClaims)
    _raise_issues("user", user, now_s)
    claimed = account_of(user)
    if claimed != account.subject:
        hint = "" if user.issuer_account else " (a user issued by a signing key needs issuer_account)"
        raise JWTError("wrong-account", f"user JWT {user.subject} is for account {claimed}, "
                       f"not {account.subject}{hint}")
    known, scope = account.issuer_scope(user.issuer, strict_signing_keys)
    if not known:
        raise JWTError("unknown-issuer", f"user JWT {user.subject} issuer {user.issuer} is not "
                       f"the account key or one of its signing keys")
    if scope is not None and not user.permission_limits_empty():
        raise JWTError("scoped-signer", f"user JWT {user.subject} is issued by a scoped signing key "
                       "and so may not set permissions or limits")
    if 0 < account.expires <= now_s:
        raise JWTError("account-expired", f"account JWT {account.subject} has expired")
    if user.bearer_token and account.limits.disallow_bearer:
        raise JWTError("bearer-disallowed", f"account {account.subject} does not allow bearer tokens")
    if is_revoked(account.revocations, user.subject, user.issued_at):
        raise JWTError("revoked", f"user JWT {user.subject} has been revoked")
    if host is not None and not src_allowed(user, host):
        raise JWTError("bad-src", f"user JWT {user.subject} does not allow source address {host}")
    if not connect_times_allowed(user, now_s)[0]:
        raise JWTError("outside-times", f"user JWT {user.subject} is outside its connect times")
    return user


def _parse_cidr(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None


def src_allowed(user: UserClaims, host: str) -> bool:
    """nats-server's ``validateSrc``: no ``src`` allows all, else ``host`` must be in one."""
    if not user.src:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    for cidr in user.src:
        net = _parse_cidr(cidr) if "/" in cidr else None
        if net is None:
            return False
        if ip.version == net.version and ip in net:
            return True
    return False


def _zone(name: str) -> dt.tzinfo | None:
    """The zone of ``times_location`` ("" and "Local" are the local zone); None if unknown."""
    if name in ("", "Local"):
        return dt.datetime.now().astimezone().tzinfo
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def connect_times_allowed(user: UserClaims, now: float | None = None) -> tuple[bool, float]:
    """nats-server's ``validateTimes``: ``(allowed now, seconds until the window ends)``.

    A window whose end is before its start ends on the next day; like
    nats-server, its start is always today, so early-morning connects to an
    overnight window are refused.
    """
    if not user.times:
        return True, 0.0
    zone = _zone(user.times_location)
    if zone is None:
        return False, 0.0
    moment = dt.datetime.fromtimestamp(time.time() if now is None else now, tz=zone)
    for tr in user.times:
        start_m, end_m = _CLOCK.fullmatch(tr.start), _CLOCK.fullmatch(tr.end)
        if not start_m or not end_m:
            return False, 0.0
        start = moment.replace(hour=int(start_m[1]), minute=int(start_m[2]),
                               second=int(start_m[3]), microsecond=0)
        end = moment.replace(hour=int(end_m[1]), minute=int(end_m[2]),
                             second=int(end_m[3]), microsecond=0)
        if start > end:
            end += dt.timedelta(days=1)
        if start < moment < end:
            return True, (end - moment).total_seconds()
    return False, 0.0


def read_operator_jwt(value: str) -> tuple[str, OperatorClaims]:
    """The ``operator:`` setting: a file (plain or decorated JWT) or an inline JWT."""
    try:
        with open(value, encoding="utf-8") as f:
            contents = f.read()
    except OSError:
        if not value.startswith("eyJ"):
            raise
        contents = value
    blocks = _decorated_blocks(contents)
    token = blocks[0] if blocks else contents.strip()
    return token, _decode_as(token, OperatorClaims)


# --------------------------------------------------------------------------
# Encoding (through pyjwt, with an ed25519-nkey algorithm)
# --------------------------------------------------------------------------


class NKeyAlgorithm(Algorithm):
    """pyjwt algorithm ``ed25519-nkey``: Ed25519 with NKey key pairs.

    Keys may be a :class:`KeyPair`, an encoded seed (signs) or an encoded
    public key (verifies). After :func:`register_pyjwt`, ``jwt.encode(payload,
    kp, algorithm="ed25519-nkey")`` and ``jwt.decode(token, public_key,
    algorithms=["ed25519-nkey"])`` work with v2 NATS tokens.
    """

    def prepare_key(self, key: Any) -> KeyPair:
        if isinstance(key, KeyPair):
            return key
        text = key.decode("ascii") if isinstance(key, bytes) else str(key)
        return KeyPair.from_seed(text) if text.startswith("S") else KeyPair.from_public_key(text)

    def sign(self, msg: bytes, key: KeyPair) -> bytes:
        return key.sign(msg)

    def verify(self, msg: bytes, key: KeyPair, sig: bytes) -> bool:
        return key.verify(msg, sig)

    @staticmethod
    def to_jwk(key_obj: Any, as_dict: bool = False) -> Any:
        raise NotImplementedError("NKeys have no JWK form")

    @staticmethod
    def from_jwk(jwk: Any) -> Any:
        raise NotImplementedError("NKeys have no JWK form")


_JWS = pyjwt.PyJWS(algorithms=[])
_JWS.register_algorithm(ALGORITHM, NKeyAlgorithm())
_JWS.register_algorithm(ALGORITHM_V1, NKeyAlgorithm())


def register_pyjwt() -> None:
    """Make ``jwt.encode``/``jwt.decode`` (pyjwt's module functions) know ``ed25519-nkey``."""
    try:
        pyjwt.register_algorithm(ALGORITHM, NKeyAlgorithm())
    except ValueError:  # already registered
        pass


def _go_json(value: Any) -> bytes:
    """Compact JSON escaped as Go's ``encoding/json`` does (HTML characters, U+2028/9)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text.encode("utf-8")


def _jti(claims: Claims) -> str:
    """jwt's ``hash()``: SHA-512/256 of the registered claims (jti empty), base32 unpadded."""
    data = _go_json(dataclasses.replace(claims, jti="").claims_data())
    try:
        digest = hashlib.new("sha512_256", data).digest()
    except ValueError:  # OpenSSL without SHA-512/256: any unique id will do
        digest = os.urandom(32)
    return base64.b32encode(digest).decode("ascii").rstrip("=")


def encode(claims: Claims, signer: KeyPair, *, issued_at: int | None = None,
           algorithm: str = ALGORITHM) -> str:
    """Sign ``claims`` with ``signer`` as jwt's ``Encode`` does; returns the token.

    The issuer becomes the signer's public key, ``iat`` now (or ``issued_at``)
    and ``jti`` the hash of the registered claims. ``algorithm="ed25519"``
    writes the legacy header (nats tools refuse to; it exists for tests).
    """
    if type(claims) not in _CLAIM_TYPES.values():
        raise JWTError("wrong-type", f"cannot encode {type(claims).__name__}")
    if not is_valid_public_key(claims.subject, claims.subject_prefix):
        raise JWTError("malformed", f"expected subject to be {claims.claim_type} public key")
    if not any(signer.prefix == p for p in claims.issuer_prefixes):
        raise JWTError("wrong-issuer", f"a {claims.claim_type} JWT cannot be signed by a "
                       f"{signer.prefix.name.lower()} key")
    if algorithm not in (ALGORITHM, ALGORITHM_V1):
        raise JWTError("bad-header", f"unexpected {algorithm!r} algorithm")
    signed = dataclasses.replace(claims, issuer=signer.public_key,
                                 issued_at=int(time.time()) if issued_at is None else issued_at)
    signed = dataclasses.replace(signed, jti=_jti(signed))
    # The ed25519-nkey algorithm natsd registers signs with a KeyPair.
    return _JWS.encode(_go_json(signed.to_payload()), signer,  # type: ignore[arg-type]
                       algorithm=algorithm, sort_headers=False)


def encode_generic(kind: str, subject: str, nats: dict, signer: KeyPair, *,
                   audience: str = "", expires: int = 0) -> str:
    """Sign a v2 claim of a type not modelled here (activation, authorization request/response)."""
    payload: dict = {"jti": base64.b32encode(os.urandom(32)).decode("ascii").rstrip("="),
                     "iat": int(time.time()), "iss": signer.public_key, "sub": subject}
    if audience:
        payload["aud"] = audience
    if expires:
        payload["exp"] = expires
    payload["nats"] = {**nats, "type": kind, "version": 2}
    return _JWS.encode(_go_json(payload), signer,  # type: ignore[arg-type]
                       algorithm=ALGORITHM, sort_headers=False)


# --------------------------------------------------------------------------
# .creds files
# --------------------------------------------------------------------------

_DECORATED = re.compile(r"\s*(?:(?:-{3,}.*-{3,}\r?\n)([\w\-.=]+)(?:\r?\n-{3,}.*-{3,}(\r?\n|\Z)))")
_SEED_KINDS = ("SO", "SA", "SU")


def _decorated_blocks(text: str) -> list[str]:
    return [m.group(1) for m in _DECORATED.finditer(text)]


def parse_creds(text: str) -> tuple[str, str]:
    """``(jwt, seed)`` from a ``.creds`` file, as nats.go/jwt's ParseDecorated* read it."""
    blocks = _decorated_blocks(text)
    token = blocks[0] if blocks else text.strip()
    seed = blocks[1] if len(blocks) > 1 else None
    if seed is None:
        seed = next((ln.strip() for ln in text.splitlines() if ln.strip().startswith(_SEED_KINDS)), None)
    if seed is None:
        raise JWTError("malformed", "no nkey seed found")
    if not seed.startswith(_SEED_KINDS):
        raise JWTError("malformed", "doesn't contain a seed nkey")
    KeyPair.from_seed(seed)  # raises NKeyError if malformed
    return token, seed


def format_creds(token: str, seed: str) -> str:
    """A ``.creds`` file for a user JWT and its seed, byte for byte as nsc writes it."""
    claims = decode(token)
    if not isinstance(claims, UserClaims):
        raise JWTError("wrong-type", f"{claims.claim_type!r} cannot be serialized as a user config")
    seed = seed.strip()
    if not seed.startswith("SU"):
        raise JWTError("malformed", "nkey seed is not an user seed")
    return (f"-----BEGIN NATS USER JWT-----\n{token}\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n"
            "*************************************************************\n")
