"""The authentication chain: the authenticators plugins returned, asked in order.

For each CONNECT (and for connections that plugins accept themselves: leaf
nodes, MQTT), every authenticator is asked in turn; the first that does not
answer ``None`` decides. An answer may be an awaitable (an authenticator
doing I/O); :meth:`AuthChain.settle` awaits it and, on ``None``, asks the
ones after it. An authenticator that raises refuses the client (logged).

An authenticator with a ``transports`` attribute (a set of transport names,
``{"websocket"}``) is asked only about connections of those transports, and
makes authentication required only for them: a ``websocket {}`` block's own
credentials do not ask TCP clients for any.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Sequence
from typing import Any

from .contracts import Authenticator, AuthRequest, AuthResult

log = logging.getLogger("natsd.auth")

NOBODY_ACCEPTED = "no authenticator accepted the client"


class AuthChain:
    """The authenticators of the running configuration."""

    __slots__ = ("authenticators", "required", "nonce", "_scoped", "_required_by")

    def __init__(self, authenticators: Sequence[Authenticator] = ()) -> None:
        self.authenticators = list(authenticators)
        scopes = [getattr(a, "transports", None) for a in self.authenticators]
        self._scoped = any(scope is not None for scope in scopes)
        self.required = any(scope is None for scope in scopes)
        """Clients of every transport must authenticate (INFO ``auth_required``, the auth timeout)."""
        self._required_by = {t for scope in scopes if scope is not None for t in scope}
        self.nonce = any(getattr(a, "wants_nonce", False) for a in self.authenticators)
        """Some authenticator verifies NKey signatures: INFO carries a nonce."""

    def required_for(self, transport: str) -> bool:
        """Clients of ``transport`` must authenticate (some authenticator applies to them)."""
        return self.required or transport in self._required_by

    def first(self, request: AuthRequest, start: int = 0) -> tuple[int, Any]:
        """``(index, answer)`` of the first authenticator from ``start`` not answering ``None``.

        The answer is an :class:`AuthResult`, ``None`` (nobody answered) or an
        awaitable of either (pass it to :meth:`settle`).
        """
        authenticators = self.authenticators
        for i in range(start, len(authenticators)):
            if self._scoped:
                scope = getattr(authenticators[i], "transports", None)
                if scope is not None and request.transport not in scope:
                    continue
            result = _ask(authenticators[i], request)
            if result is not None:
                return i, result
        return len(authenticators), None

    async def settle(self, request: AuthRequest, index: int,
                     pending: Awaitable[AuthResult | None]) -> AuthResult | None:
        """Await authenticator ``index``'s answer; on ``None`` ask the ones after it."""
        result: Any = pending
        while inspect.isawaitable(result):
            try:
                result = await result
            except Exception:
                log.exception("authenticator %r failed", self.authenticators[index])
                return AuthResult(ok=False, reason=f"authenticator {self.authenticators[index]!r} raised")
            if result is None:
                index, result = self.first(request, index + 1)
        return result

    async def authenticate(self, request: AuthRequest) -> AuthResult:
        """The chain's verdict for ``request``, never ``None``.

        Without authenticators everybody is accepted (into the default
        account); when nobody accepts, the verdict is a refusal.
        """
        if not self.required_for(request.transport):
            return AuthResult(ok=True)
        index, result = self.first(request)
        if inspect.isawaitable(result):
            result = await self.settle(request, index, result)
        return result if result is not None else AuthResult(ok=False, reason=NOBODY_ACCEPTED)


def _ask(authenticator: Authenticator, request: AuthRequest) -> Any:
    try:
        return authenticator.authenticate(request)
    except Exception:
        log.exception("authenticator %r failed", authenticator)
        return AuthResult(ok=False, reason=f"authenticator {authenticator!r} raised")
