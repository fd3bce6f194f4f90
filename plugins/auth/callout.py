"""Auth callout (nats-server 2.10): a NATS service decides who may connect.

Configured as ``authorization { auth_callout { issuer, auth_users, account } }``.
Clients other than the ``auth_users`` (which the configured users authenticate,
so the service itself can connect) are not checked locally: the server sends a
JWT-encoded *authorization request*, signed by its own NKey, to
``$SYS.REQ.USER.AUTH`` in the callout ``account`` (default ``$G``). It holds
the client's CONNECT options, where it comes from, and a fresh ``user_nkey``.

The service answers with an *authorization response* JWT signed by ``issuer``
(an account NKey whose seed the service holds), whose ``aud`` is the server id
and ``sub`` the ``user_nkey``. It carries either ``error`` (refused; the text
goes to the server log) or ``jwt``: a user JWT, issued by ``issuer`` for the
``user_nkey``, whose ``aud`` names the account to join (default: the callout
account) and whose permissions and limits apply as in operator mode.

Only the connecting client waits for the answer (see the async
:class:`natsd.plugin.contracts.Authenticator` contract); no answer within 90 % of the
auth timeout refuses it with 'Authorization Violation'.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping
from typing import Any

from natsd import NATS_SERVER_VERSION
from natsd.config import config_error
from natsd.plugin.contracts import AuthRequest, AuthResult, ServerAPI
from natsd.security.nkeys import KeyPair, Prefix, is_valid_public_key
from natsd.security.permissions import Permissions
from natsd_jwt.claims import GenericClaims, JWTError, UserClaims, decode, encode_generic, validate

log = logging.getLogger("natsd.auth")

REQUEST_SUBJECT = "$SYS.REQ.USER.AUTH"
CONNECT_FIELDS = ("jwt", "nkey", "sig", "auth_token", "user", "pass", "name", "lang", "version",
                  "protocol")
_CLIENT_TYPES = {"tcp": "nats", "unix": "nats", "websocket": "websocket", "mqtt": "mqtt",
                 "leafnode": "leafnode"}


class CalloutSettings:
    """A validated ``auth_callout`` block."""

    def __init__(self, block: Any, parent: Mapping[str, Any], users: Mapping[str, Any],
                 accounts: Mapping[str, Any]) -> None:
        if not isinstance(block, Mapping):
            raise config_error(parent, "auth_callout", "expected a block { issuer: ..., auth_users: [...] }")
        for key in block:
            if key.lower() not in ("issuer", "auth_users", "account", "xkey"):
                raise config_error(block, key, "unknown key in auth_callout "
                                   "(known: issuer, auth_users, account, xkey)")
        issuer = block.get("issuer")
        if not isinstance(issuer, str) or not is_valid_public_key(issuer, Prefix.ACCOUNT):
            raise config_error(block if "issuer" in block else parent,
                               "issuer" if "issuer" in block else "auth_callout",
                               f"issuer must be an account public key, got {issuer!r}")
        auth_users = block.get("auth_users")
        auth_users = [auth_users] if isinstance(auth_users, str) else auth_users
        if not isinstance(auth_users, list) or not auth_users:
            raise config_error(block if "auth_users" in block else parent,
                               "auth_users" if "auth_users" in block else "auth_callout",
                               "auth_users must list the users the callout service connects as")
        for name in auth_users:
            if name not in users:
                raise config_error(block, "auth_users", f"auth user {name!r} is not a configured user")
        account = block.get("account", "$G")
        if account != "$G" and account not in accounts:
            raise config_error(block, "account", f"account {account!r} is not defined in accounts {{}}")
        if "xkey" in block:
            raise config_error(block, "xkey", "encrypted auth callout (xkey) is not supported; "
                               "leave it out to send signed, unencrypted requests")
        self.issuer: str = issuer
        self.auth_users = frozenset(str(u) for u in auth_users)
        self.account: str = str(account)


class AuthCallout:
    """The authenticator that asks the callout service (see the module docstring)."""

    recheck_on_reload = False
    """A reload does not send one callout request per connected client."""

    def __init__(self, settings: CalloutSettings, accounts: Mapping[str, Any]) -> None:
        self.settings = settings
        self.accounts = set(accounts) | {"$G"}
        self.server: ServerAPI | None = None
        self.client: Any = None
        self._inbox = ""
        self._seq = itertools.count(1)
        self._pending: dict[bytes, asyncio.Future[bytes]] = {}

    def start(self, server: ServerAPI) -> None:
        self.server = server
        self.client = server.connect_internal("auth-callout", self.settings.account)
        self._inbox = f"_INBOX.{server.server_id[-12:]}.callout"
        self.client.subscribe(self._inbox + ".*", self._on_reply)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        for fut in self._pending.values():
            fut.cancel()

    def _on_reply(self, subject: bytes, reply: bytes | None, headers: bytes | None,
                  payload: bytes) -> None:
        fut = self._pending.get(subject)
        if fut is not None and not fut.done():
            fut.set_result(payload)

    def authenticate(self, request: AuthRequest) -> Any:
        if request.options.get("user") in self.settings.auth_users:
            return None  # the configured users authenticate the service itself
        if self.server is None:
            return AuthResult(ok=False, reason="auth callout is not running")
        return self._ask(request)

    async def _ask(self, request: AuthRequest) -> AuthResult:
        server = self.server
        assert server is not None, "auth callout asked before start()"
        user_key = request.options.get("nkey")
        if not (isinstance(user_key, str) and is_valid_public_key(user_key, Prefix.USER)):
            user_key = KeyPair.create(Prefix.USER).public_key
        token = encode_generic("authorization_request", REQUEST_SUBJECT, {
            "server_id": {"name": server.name, "host": server.host, "id": server.server_id,
                          "version": NATS_SERVER_VERSION},
            "user_nkey": user_key,
            "client_info": _client_info(request),
            "connect_opts": {k: request.options[k] for k in CONNECT_FIELDS if k in request.options},
        }, server.server_key, audience=REQUEST_SUBJECT, expires=int(time.time()) + 2)
        reply = f"{self._inbox}.{next(self._seq)}".encode()
        fut: asyncio.Future[bytes] = server.loop.create_future()
        self._pending[reply] = fut
        try:
            if not self.client.publish(REQUEST_SUBJECT, token.encode(), reply=reply):
                return AuthResult(ok=False, reason=f"auth callout: no service listens on {REQUEST_SUBJECT} "
                                  f"in account {self.settings.account}")
            answer = await asyncio.wait_for(fut, server.config.auth_timeout * 0.9)
        except TimeoutError:
            return AuthResult(ok=False, reason="auth callout: the service did not answer in time")
        finally:
            self._pending.pop(reply, None)
        return self._verdict(answer, user_key, request)

    def _verdict(self, answer: bytes, user_key: str, request: AuthRequest) -> AuthResult:
        issuer = self.settings.issuer
        assert self.server is not None
        try:
            response = decode(answer.decode("utf-8", "replace").strip())
            if not isinstance(response, GenericClaims) or response.kind != "authorization_response":
                raise JWTError("wrong-type", "the answer is not an authorization response JWT")
            problems = _mismatches(response, issuer, user_key, self.server.server_id)
            if problems:
                raise JWTError("callout", problems)
            nats = response.raw.get("nats") or {}
            if nats.get("error"):
                return AuthResult(ok=False, reason=f"auth callout refused: {nats['error']}")
            user = decode(str(nats.get("jwt", "")))
            if not isinstance(user, UserClaims):
                raise JWTError("wrong-type", "the response carries no user JWT")
            if user.issuer != issuer or user.subject != user_key:
                raise JWTError("callout", "the user JWT is not issued by the issuer for the user_nkey")
            issues = validate(user)
            if issues:
                raise JWTError("callout", "user JWT: " + "; ".join(msg for _, msg in issues))
        except JWTError as e:
            return AuthResult(ok=False, reason=f"auth callout: {e}")
        account = user.audience or self.settings.account
        if account not in self.accounts:
            return AuthResult(ok=False, reason=f"auth callout: account {account!r} is not defined")
        try:
            perms = Permissions.from_jwt(user.raw.get("nats", {}))
        except ValueError as e:
            return AuthResult(ok=False, reason=f"auth callout: bad permissions: {e}")
        name = request.options.get("user") or user.name or user.subject
        return AuthResult(ok=True, account=account, user=str(name), permissions=perms,
                          max_subscriptions=user.subs, max_payload=user.payload,
                          expires=float(user.expires) if user.expires else None)


def _mismatches(response: GenericClaims, issuer: str, user_key: str, server_id: str) -> str:
    out = []
    if response.issuer != issuer:
        out.append(f"signed by {response.issuer}, not the issuer {issuer}")
    if response.subject != user_key:
        out.append("its subject is not the user_nkey of the request")
    if response.audience != server_id:
        out.append("its audience is not this server")
    if 0 < response.expires <= time.time():
        out.append("it has expired")
    return "; ".join(out)


def _client_info(request: AuthRequest) -> dict[str, Any]:
    info: dict[str, Any] = {"host": request.remote[0] if request.remote else "",
                            "id": request.client_id, "kind": "Client",
                            "type": _CLIENT_TYPES.get(request.transport, request.transport)}
    for key in ("user", "name", "lang", "version"):
        if request.options.get(key):
            info[key] = request.options[key]
    if request.nonce:
        info["nonce"] = request.nonce
    return info


def callout_payload(request_token: str) -> dict[str, Any]:
    """The ``nats`` object of an authorization request (for services written in Python)."""
    claims = decode(request_token)
    return dict(claims.raw.get("nats") or {})
