"""Operator mode at run time: verified accounts, and users checked against them.

:class:`OperatorMode` loads an account JWT from the resolver the first time a
user of that account connects, verifies it against the trusted operator
keys, and applies it to the server's :class:`~natsd.routing.account.Account` (its
limits, subject mappings and imports). Its :meth:`OperatorMode.authenticate`
is the plugin's authenticator: the whole chain of
:func:`natsd_jwt.claims.verify_user_chain`, then the nonce signature unless
the user is a bearer token, then permissions and limits from the claims (or
from the scope of the signing key that issued the user).
"""

from __future__ import annotations

import logging
from typing import Any

from natsd.plugin.contracts import AuthRequest, AuthResult, ServerAPI
from natsd.routing.connection import NO_LIMIT
from natsd.routing.mappings import MapDest, Mapping, MappingError, Mappings
from natsd.security.nkeys import is_valid_public_key, verify_nonce_signature
from natsd.security.permissions import Permissions
from natsd_jwt.claims import (
    AccountClaims,
    JWTError,
    UserClaims,
    account_of,
    decode,
    is_revoked,
    verify_account,
    verify_user_chain,
)

from .links import JWTLinks
from .resolver import Resolver
from .settings import OperatorSettings

log = logging.getLogger("natsd.operator")

REVOKED = "User Authentication Revoked"
CREDENTIALS_REVOKED = "Credentials Revoked"


def _account_mappings(claims: AccountClaims) -> Mappings | None:
    """The account JWT's ``mappings`` ({source: [{subject, weight, cluster}]})."""
    if not claims.mappings:
        return None
    out = Mappings()
    for source, dests in claims.mappings.items():
        try:
            items = [MapDest(str(d.get("subject", "")), int(d.get("weight", 100) or 0),
                             str(d.get("cluster", "") or "")) for d in dests]
            out.add(Mapping(source, items))
        except (MappingError, TypeError, ValueError, AttributeError) as e:
            log.warning("account %s: mapping %r ignored: %s", claims.subject, source, e)
    return out


class OperatorMode:
    """Trusted operators, a resolver, and the accounts loaded from it."""

    wants_nonce = True

    def __init__(self, server: ServerAPI, settings: OperatorSettings, resolver: Resolver) -> None:
        self.server = server
        self.settings = settings
        self.resolver = resolver
        self.trusted = settings.trusted()
        self.loaded: dict[str, tuple[str, AccountClaims]] = {}
        self.links = JWTLinks(server, self)

    # -- accounts -------------------------------------------------------------

    def account(self, pub: str) -> AccountClaims:
        """The verified claims of account ``pub``, loading it on first use (``JWTError``)."""
        entry = self.loaded.get(pub)
        if entry is not None:
            return entry[1]
        if not is_valid_public_key(pub, "A"):
            raise JWTError("unknown-account", f"{pub!r} is not an account public key")
        token = self.resolver.fetch(pub)
        if token is None:
            raise JWTError("unknown-account", f"account {pub} is not known to the resolver")
        claims = verify_account(token, self.trusted, name=pub)
        self.loaded[pub] = (token, claims)
        self._apply(claims)
        self.links.rewire()
        log.info("Loaded account %s (%s)", pub, claims.name or "unnamed")
        return claims

    def update(self, claims: AccountClaims, token: str) -> None:
        """Take a newer, verified JWT of an account that is in use."""
        self.loaded[claims.subject] = (token, claims)
        self._apply(claims)
        self.links.rewire()
        self._disconnect_revoked(claims)

    def remove(self, pub: str) -> None:
        """An account deleted from the resolver: lock it and close its clients."""
        if self.loaded.pop(pub, None) is None:
            return
        acc = self.server.lookup_account(pub, create=True)
        acc.max_connections = acc.max_subscriptions = acc.max_payload = 0
        self.server.plugins.hook.natsd_account_claims(server=self.server, account=pub, claims=None)
        for client in list(acc.clients):
            if hasattr(client, "close") and getattr(client, "transport", None) is not None:
                client.close("Account Removed", "Account Authentication Expired")
        self.links.rewire()

    def _apply(self, claims: AccountClaims) -> None:
        acc = self.server.lookup_account(claims.subject, create=True)
        acc.name_tag = claims.name
        limits = claims.limits
        acc.max_connections = limits.conn
        acc.max_subscriptions = limits.subs
        acc.max_payload = limits.payload
        acc.max_leafnodes = limits.leaf
        acc.set_mappings(_account_mappings(claims))
        self.server.plugins.hook.natsd_account_claims(server=self.server, account=claims.subject, claims=claims)

    def _disconnect_revoked(self, claims: AccountClaims) -> None:
        acc = self.server.lookup_account(claims.subject, create=True)
        for client in list(acc.clients):
            token = getattr(client, "connect_options", {}).get("jwt")
            if not token:
                continue
            try:
                user = decode(token)
            except JWTError:
                continue
            if is_revoked(claims.revocations, user.subject, user.issued_at):
                log.info("cid:%d - user %s revoked", client.cid, user.subject)
                client.close(CREDENTIALS_REVOKED, REVOKED)

    # -- authentication -----------------------------------------------------------

    def authenticate(self, request: AuthRequest) -> AuthResult | None:
        opts = request.options
        token = opts.get("jwt")
        if not token:
            if any(opts.get(k) for k in ("user", "auth_token", "nkey")):
                return None  # for a configured-users authenticator, if any
            return AuthResult(ok=False, reason="operator mode: CONNECT carries no user JWT")
        try:
            user = decode(token)
            if not isinstance(user, UserClaims):
                raise JWTError("wrong-type", f"expected a user JWT, got a {user.claim_type} JWT")
            account = self.account(account_of(user))
            host = request.remote[0] if request.remote else None
            user = verify_user_chain(user, account, host=host,
                                     strict_signing_keys=self.settings.strict_signing_keys)
        except JWTError as e:
            return AuthResult(ok=False, reason=str(e))
        _, scope = account.issuer_scope(user.issuer, self.settings.strict_signing_keys)
        template = None if scope is None else (scope.get("template") or {})
        bearer = bool(template.get("bearer_token")) if template is not None else user.bearer_token
        if not bearer:
            sig = opts.get("sig")
            if not isinstance(sig, str) or not request.nonce:
                return AuthResult(ok=False, reason=f"user {user.subject}: no nonce signature")
            if not verify_nonce_signature(user.subject, request.nonce, sig):
                return AuthResult(ok=False, reason=f"user {user.subject}: nonce signature does not verify")
        types = template.get("allowed_connection_types") if template is not None \
            else user.allowed_connection_types
        if types and request.connection_type not in {str(t).upper() for t in types}:
            return AuthResult(ok=False, reason=(
                f"user {user.subject} may not connect over {request.connection_type}"))
        try:
            perms = Permissions.from_jwt(template if template is not None else user.raw.get("nats", {}))
            if perms is None:
                perms = Permissions.from_jwt(account.default_permissions.to_json())
        except ValueError as e:
            return AuthResult(ok=False, reason=f"user {user.subject}: bad permissions: {e}")
        limits = template if template is not None else {"subs": user.subs, "payload": user.payload}
        return AuthResult(
            ok=True, account=account.subject, user=user.subject, permissions=perms,
            max_subscriptions=_limit(limits.get("subs")), max_payload=_limit(limits.get("payload")),
            expires=float(user.expires) if user.expires else None,
            extra={"name": user.name, "issuer": user.issuer})


def _limit(value: Any) -> int:
    """A JWT limit: absent is 0 as in Go's zero value; -1 is none."""
    if value is None:
        return 0
    return value if isinstance(value, int) and value >= NO_LIMIT else NO_LIMIT
