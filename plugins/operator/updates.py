"""Account JWT updates on the system account, on nats-server's subjects.

``nsc push`` and ``nats`` send account JWTs to:

- ``$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE`` (and the older
  ``$SYS.ACCOUNT.<key>.CLAIMS.UPDATE``): the payload is the account JWT;
- ``$SYS.REQ.CLAIMS.UPDATE``: the same, the key taken from the JWT.

The directory resolver also answers ``$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP``
(the raw JWT), ``$SYS.REQ.CLAIMS.LIST`` (the keys it holds) and
``$SYS.REQ.CLAIMS.DELETE`` (an operator-signed ``{"accounts": [...]}``
token, when ``allow_delete`` is set). Replies have nats-server's shape:
``{"server": {...}, "data": {"account", "code": 200, "message"}}`` or
``{"server": {...}, "error": {"account", "code": 500, "description"}}``.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from natsd.routing.internal import SERVER_SENT
from natsd.security.nkeys import is_valid_public_key
from natsd_jwt.claims import JWTError, decode, verify_account

from .resolver import DirectoryResolver, decode_account

if TYPE_CHECKING:
    from .trust import OperatorMode

log = logging.getLogger("natsd.operator")

UPDATE_SUBJECTS = ("$SYS.REQ.ACCOUNT.*.CLAIMS.UPDATE", "$SYS.ACCOUNT.*.CLAIMS.UPDATE")
CLAIMS_UPDATE = "$SYS.REQ.CLAIMS.UPDATE"
LOOKUP = "$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP"
LIST = "$SYS.REQ.CLAIMS.LIST"
DELETE = "$SYS.REQ.CLAIMS.DELETE"


class ClaimUpdates:
    """The system-account subscriptions that keep the resolver and accounts current."""

    def __init__(self, mode: OperatorMode) -> None:
        self.mode = mode
        server = mode.server
        assert server.system_account is not None
        self.client = server.connect_internal("account-resolver", server.system_account.name)
        for subject in UPDATE_SUBJECTS:
            self.client.subscribe(subject, self._on_update)
        self.client.subscribe(CLAIMS_UPDATE, self._on_update)
        if isinstance(mode.resolver, DirectoryResolver):
            self.client.subscribe(LOOKUP, self._on_lookup)
            self.client.subscribe(LIST, self._on_list)
            self.client.subscribe(DELETE, self._on_delete)

    def close(self) -> None:
        self.client.close()

    # -- replies ------------------------------------------------------------

    def _respond(self, reply: bytes | None, account: str, message: str,
                 error: str | None = None) -> None:
        if error is None:
            log.debug("%s - %s", message, account)
        else:
            log.error("%s - %s - %s", message, account, error)
        if not reply:
            return
        body: dict[str, Any] = {"server": self.mode.server.event_server_info()}
        detail: dict[str, Any] = {"account": account} if account else {}
        if error is None:
            body["data"] = {**detail, "code": 200, "message": message}
        else:
            body["error"] = {**detail, "code": 500, "description": f"{message} - {error}"}
        self.client.publish(reply, json.dumps(body).encode(), reply=SERVER_SENT)

    # -- handlers -------------------------------------------------------------

    def _on_update(self, subject: bytes, reply: bytes | None, headers: bytes | None,
                   payload: bytes) -> None:
        tokens = subject.decode().split(".")
        key = tokens[3] if tokens[1] == "REQ" and len(tokens) == 6 else \
            tokens[2] if len(tokens) == 5 else None
        token = payload.decode("utf-8", "replace").strip()
        try:
            claims = decode_account(token)
        except JWTError as e:
            self._respond(reply, key or "n/a", "jwt update resulted in error", str(e))
            return
        key = key or claims.subject
        mode = self.mode
        if claims.subject != key:
            self._respond(reply, key, "jwt update resulted in error",
                          "subject does not match jwt content")
            return
        try:
            claims = verify_account(token, mode.trusted, name=key)
        except JWTError as e:
            self._respond(reply, key, "jwt validation failed", str(e))
            return
        if mode.settings.strict_signing_keys and claims.issuer in {op.subject for op in mode.settings.operators}:
            self._respond(reply, key, "jwt update resulted in error",
                          "operator requires issuer to be a signing key")
            return
        if mode.resolver.tracks_all:
            try:
                mode.resolver.store(key, token)
            except (OSError, ValueError) as e:
                self._respond(reply, key, "jwt update resulted in error", str(e))
                return
        elif key not in mode.loaded:
            self._respond(reply, key, "jwt update skipped")
            return
        else:
            mode.resolver.store(key, token)
        if key in mode.loaded:
            mode.update(claims, token)
        self._respond(reply, key, "jwt updated")

    def _on_lookup(self, subject: bytes, reply: bytes | None, headers: bytes | None,
                   payload: bytes) -> None:
        key = subject.decode().split(".")[3]
        token = self.mode.resolver.fetch(key) if reply else None
        if token is not None:
            self.client.publish(reply, token.encode(), reply=SERVER_SENT)  # type: ignore[arg-type]

    def _on_list(self, subject: bytes, reply: bytes | None, headers: bytes | None,
                 payload: bytes) -> None:
        if reply:
            body = {"server": self.mode.server.event_server_info(),
                    "data": self.mode.resolver.accounts()}
            self.client.publish(reply, json.dumps(body).encode(), reply=SERVER_SENT)

    def _on_delete(self, subject: bytes, reply: bytes | None, headers: bytes | None,
                   payload: bytes) -> None:
        mode = self.mode
        signer = ""
        try:
            claims = decode(payload.decode("utf-8", "replace").strip())
            signer = claims.subject
            accounts = _delete_request(claims, mode)
        except (JWTError, ValueError, PermissionError) as e:
            self._respond(reply, "", f"delete accounts request by {signer} failed", str(e))
            return
        failed = []
        for key in accounts:
            try:
                mode.resolver.delete(key)
            except OSError as e:
                failed.append(f"{key}: {e.strerror or e}")
                continue
            mode.remove(key)
        if failed:
            self._respond(reply, "", f"deleted {len(accounts) - len(failed)} accounts, "
                          f"failed for {len(failed)}", "\n".join(failed))
        else:
            self._respond(reply, "", f"deleted {len(accounts)} accounts")


def _delete_request(claims: Any, mode: OperatorMode) -> list[str]:
    """The accounts an operator-signed delete request names (errors as nats-server words them)."""
    if not mode.resolver.allow_delete:
        raise PermissionError("delete must be enabled in server config")
    if claims.subject != claims.issuer:
        raise ValueError("not self signed")
    if claims.issuer not in mode.trusted:
        raise ValueError("not trusted")
    accounts = claims.raw.get("nats", {}).get("accounts", claims.raw.get("accounts"))
    if not isinstance(accounts, list) or not all(
            isinstance(a, str) and is_valid_public_key(a, "A") for a in accounts):
        raise ValueError("malformed request")
    system = mode.server.system_account
    if system is not None and system.name in accounts:
        raise ValueError("not allowed to delete system account")
    return accounts

