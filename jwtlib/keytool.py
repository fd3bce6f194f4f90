"""``python -m natsd_jwt.keytool``: build an operator / account / user chain of NATS JWTs.

A small stand-in for nsc. ``init DIR`` makes an operator, a system account
``SYS``, an account ``APP`` (with one signing key) and a user ``alice``, and a
``resolver.conf`` that nats-server and natsd load as-is::

    DIR/operator.jwt            the operator JWT (self-signed)
    DIR/accounts/NAME.jwt       account JWTs, signed by the operator
    DIR/users/NAME.creds        user JWT + seed, what clients connect with
    DIR/keys/*.nk               seeds of the operator, accounts, signing keys
    DIR/resolver.conf           operator, system_account, resolver: MEMORY, resolver_preload

Other commands add accounts and users, revoke users and regenerate
``resolver.conf``; ``show`` prints a token's claims. Seeds in ``keys/`` are
secrets: the files are written with mode 0600.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Sequence

from natsd.security.nkeys import KeyPair, NKeyError, Prefix

from .claims import (
    ALL_KEYS,
    AccountClaims,
    JWTError,
    OperatorClaims,
    Permission,
    Permissions,
    UserClaims,
    decode,
    encode,
    format_creds,
    parse_creds,
    read_operator_jwt,
)

SYSTEM_ACCOUNT = "SYS"
_DURATION = re.compile(r"(-?\d+)([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class KeytoolError(Exception):
    """A refusal with a message for the operator."""


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------


def _write(path: str, text: str, secret: bool = False) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        raise KeytoolError(f"{path} does not exist") from None


def _key_path(root: str, name: str) -> str:
    return os.path.join(root, "keys", f"{name}.nk")


def _account_path(root: str, name: str) -> str:
    return os.path.join(root, "accounts", f"{name}.jwt")


def _load_seed(value: str) -> KeyPair:
    """A seed given inline or as a file holding it (a .nk or .creds file)."""
    text = value
    if os.path.isfile(value):
        text = _read(value)
        if "-----BEGIN" in text:
            text = parse_creds(text)[1]
    return KeyPair.from_seed(text.strip())


def _operator_key(root: str) -> KeyPair:
    return KeyPair.from_seed(_read(_key_path(root, "operator")))


def _load_account(root: str, name: str) -> AccountClaims:
    claims = decode(_read(_account_path(root, name)))
    if not isinstance(claims, AccountClaims):
        raise KeytoolError(f"{_account_path(root, name)} is not an account JWT")
    return claims


def parse_duration(text: str) -> int:
    """Seconds in ``"90"``, ``"90s"``, ``"15m"``, ``"2h"``, ``"7d"``, ``"1w"`` (may be negative)."""
    m = _DURATION.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 90s, 15m, 2h, 7d)")
    return int(m[1]) * _UNITS[m[2]]


# --------------------------------------------------------------------------
# Building the chain
# --------------------------------------------------------------------------


def _issue_account(root: str, name: str, operator: KeyPair, *, signing_key: bool,
                   expires_in: int | None = None) -> AccountClaims:
    path = _account_path(root, name)
    if os.path.exists(path):
        raise KeytoolError(f"account {name} already exists ({path})")
    key = KeyPair.create(Prefix.ACCOUNT)
    _write(_key_path(root, name), key.seed + "\n", secret=True)
    claims = AccountClaims(subject=key.public_key, name=name)
    if signing_key:
        sk = KeyPair.create(Prefix.ACCOUNT)
        _write(_key_path(root, f"{name}-signing"), sk.seed + "\n", secret=True)
        claims.signing_keys[sk.public_key] = None
    if expires_in is not None:
        claims.expires = int(time.time()) + expires_in
    _write(path, encode(claims, operator) + "\n")
    return claims


def add_account(root: str, name: str, *, signing_key: bool = False,
                expires_in: int | None = None) -> AccountClaims:
    """Create account ``name`` signed by the operator of ``root``; refreshes resolver.conf."""
    claims = _issue_account(root, name, _operator_key(root), signing_key=signing_key,
                            expires_in=expires_in)
    write_resolver_conf(root)
    return claims


def add_user(root: str, account: str, name: str, *, signer: KeyPair | None = None,
             pub_allow: Sequence[str] = (), pub_deny: Sequence[str] = (),
             sub_allow: Sequence[str] = (), sub_deny: Sequence[str] = (),
             expires_in: int | None = None, bearer: bool = False) -> str:
    """Create user ``name`` of ``account``; returns the path of its .creds file.

    ``signer`` defaults to the account's own key; a signing key of the account
    is recorded in the token as ``issuer_account``.
    """
    path = os.path.join(root, "users", f"{name}.creds")
    if os.path.exists(path):
        raise KeytoolError(f"user {name} already exists ({path})")
    acc = _load_account(root, account)
    signer = signer or KeyPair.from_seed(_read(_key_path(root, account)))
    if signer.public_key != acc.subject and signer.public_key not in acc.signing_keys:
        raise KeytoolError(f"{signer.public_key} is neither account {account} nor one of its signing keys")
    user = KeyPair.create(Prefix.USER)
    claims = UserClaims(subject=user.public_key, name=name, bearer_token=bearer,
                        permissions=Permissions(Permission(list(pub_allow), list(pub_deny)),
                                                Permission(list(sub_allow), list(sub_deny))))
    if signer.public_key != acc.subject:
        claims.issuer_account = acc.subject
    if expires_in is not None:
        claims.expires = int(time.time()) + expires_in
    _write(path, format_creds(encode(claims, signer), user.seed), secret=True)
    return path


def revoke(root: str, account: str, user_key: str, at: int | None = None) -> AccountClaims:
    """Revoke ``user_key`` (or ``*``: every user) issued at or before ``at`` (default now)."""
    if user_key != ALL_KEYS and not user_key.startswith("U"):
        raise KeytoolError(f"{user_key!r} is not a user public key or '*'")
    claims = _load_account(root, account)
    claims.revocations[user_key] = int(time.time()) if at is None else at
    _write(_account_path(root, account), encode(claims, _operator_key(root)) + "\n")
    write_resolver_conf(root)
    return claims


def resolver_conf(root: str) -> str:
    """The nats-server config text for the chain in ``root`` (memory resolver, preloaded)."""
    root = os.path.abspath(root)
    _, operator = read_operator_jwt(os.path.join(root, "operator.jwt"))
    lines = ["# Operator mode, written by natsd_jwt.keytool: nats-server and natsd accept it as-is.",
             f'operator: "{os.path.join(root, "operator.jwt")}"']
    if operator.system_account:
        lines.append(f"system_account: {operator.system_account}")
    lines += ["resolver: MEMORY", "resolver_preload: {"]
    accounts_dir = os.path.join(root, "accounts")
    for fname in sorted(os.listdir(accounts_dir)) if os.path.isdir(accounts_dir) else []:
        if fname.endswith(".jwt"):
            token = _read(os.path.join(accounts_dir, fname))
            claims = decode(token)
            lines += [f"  # {fname[:-4]}", f'  {claims.subject}: "{token}"']
    lines.append("}")
    return "\n".join(lines) + "\n"


def write_resolver_conf(root: str) -> str:
    path = os.path.join(root, "resolver.conf")
    _write(path, resolver_conf(root))
    return path


def init(root: str, *, operator_name: str = "OP", user: str = "alice") -> None:
    """Operator, ``SYS``, ``APP`` (with a signing key), user ``user`` and resolver.conf."""
    if os.path.exists(os.path.join(root, "operator.jwt")):
        raise KeytoolError(f"{root} already holds an operator")
    operator = KeyPair.create(Prefix.OPERATOR)
    _write(_key_path(root, "operator"), operator.seed + "\n", secret=True)
    sys_account = _issue_account(root, SYSTEM_ACCOUNT, operator, signing_key=False)
    _issue_account(root, "APP", operator, signing_key=True)
    claims = OperatorClaims(subject=operator.public_key, name=operator_name,
                            system_account=sys_account.subject)
    _write(os.path.join(root, "operator.jwt"), encode(claims, operator) + "\n")
    write_resolver_conf(root)
    add_user(root, "APP", user)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m natsd_jwt.keytool",
                                description="Build NATS operator/account/user JWT chains.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("init", help="new operator, SYS and APP accounts, user alice, resolver.conf")
    c.add_argument("dir")
    c.add_argument("--operator", default="OP", help="operator name (default OP)")
    c.add_argument("--user", default="alice", help="first user of APP (default alice)")
    c = sub.add_parser("add-account", help="a new account signed by the operator")
    c.add_argument("dir")
    c.add_argument("name")
    c.add_argument("--signing-key", action="store_true",
                   help="also make a signing key (keys/NAME-signing.nk)")
    c.add_argument("--expires", type=parse_duration, metavar="DURATION", help="e.g. 30d")
    c = sub.add_parser("add-user", help="a new user of ACCOUNT (writes users/NAME.creds)")
    c.add_argument("dir")
    c.add_argument("account")
    c.add_argument("name")
    c.add_argument("--seed", metavar="SEED|FILE",
                   help="sign with this account or signing-key seed (default keys/ACCOUNT.nk)")
    for flag in ("pub-allow", "pub-deny", "sub-allow", "sub-deny"):
        c.add_argument(f"--{flag}", action="append", default=[], metavar="SUBJECT")
    c.add_argument("--expires", type=parse_duration, metavar="DURATION", help="e.g. 1h")
    c.add_argument("--bearer", action="store_true", help="bearer token: no nonce signature needed")
    c = sub.add_parser("revoke", help="revoke a user key (or '*') of ACCOUNT")
    c.add_argument("dir")
    c.add_argument("account")
    c.add_argument("user_key", help="user public key, or '*' for every user")
    c.add_argument("--at", type=int, help="revoke tokens issued at or before this unix time (default now)")
    c = sub.add_parser("resolver", help="rewrite DIR/resolver.conf from DIR/accounts")
    c.add_argument("dir")
    c = sub.add_parser("show", help="print the claims of a JWT, .jwt or .creds file")
    c.add_argument("token")
    return p


def _show(value: str) -> str:
    if os.path.exists(value):
        text = _read(value)
    elif value.startswith("eyJ"):
        text = value
    else:
        raise KeytoolError(f"{value} is neither a file nor a JWT")
    token = parse_creds(text)[0] if "-----BEGIN" in text else text.strip()
    return json.dumps(decode(token).raw, indent=2)


def _run(args: argparse.Namespace) -> str:
    if args.command == "init":
        init(args.dir, operator_name=args.operator, user=args.user)
        return f"wrote {os.path.join(args.dir, 'resolver.conf')}"
    if args.command == "add-account":
        claims = add_account(args.dir, args.name, signing_key=args.signing_key, expires_in=args.expires)
        return claims.subject
    if args.command == "add-user":
        signer = _load_seed(args.seed) if args.seed else None
        return add_user(args.dir, args.account, args.name, signer=signer, pub_allow=args.pub_allow,
                        pub_deny=args.pub_deny, sub_allow=args.sub_allow, sub_deny=args.sub_deny,
                        expires_in=args.expires, bearer=args.bearer)
    if args.command == "revoke":
        revoke(args.dir, args.account, args.user_key, args.at)
        return f"revoked {args.user_key} in {args.account}"
    if args.command == "resolver":
        return f"wrote {write_resolver_conf(args.dir)}"
    return _show(args.token)


def main(argv: Sequence[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    try:
        print(_run(args))
    except (KeytoolError, JWTError, NKeyError, OSError) as e:
        print(f"keytool: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
