"""Authentication: a static token list that also assigns accounts."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from natsd.plugin.contracts import AuthRequest, AuthResult

from .observer import Stats


class TokenAuthenticator:
    """Accepts a CONNECT whose ``auth_token`` is listed; puts the client in that token's account.

    Called once per CONNECT, never per message. Because an authenticator is
    configured, natsd announces ``auth_required`` in INFO and refuses clients
    that do not authenticate within ``auth_timeout``.
    """

    def __init__(self, tokens: Mapping[str, str], stats: Stats) -> None:
        self.tokens = dict(tokens)
        self.stats = stats

    def authenticate(self, request: AuthRequest) -> AuthResult | None:
        token = request.options.get("auth_token")
        if token is None:
            return None  # not ours: another authenticator (user/password, nkeys ...) may decide
        for known, account in self.tokens.items():
            if hmac.compare_digest(str(token).encode(), known.encode()):  # constant time
                return AuthResult(ok=True, account=account, user=f"token:{_fingerprint(known)}")
        self.stats.refused += 1
        # The reason goes to the server log only; the client just sees
        # -ERR 'Authorization Violation'. Never log the token itself.
        where = request.remote[0] if request.remote else request.transport
        return AuthResult(ok=False, reason=f"audit: unknown auth_token {_fingerprint(str(token))} "
                                           f"from {where}")

    def __repr__(self) -> str:
        return f"<TokenAuthenticator {len(self.tokens)} tokens>"


def _fingerprint(token: str) -> str:
    """A short, non-reversible name for a token, safe to log."""
    return hashlib.sha256(token.encode()).hexdigest()[:8]

