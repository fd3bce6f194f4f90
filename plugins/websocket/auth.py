"""The ``websocket { authorization {} }`` override, as nats-server 2.15 applies it.

A ``user``/``password`` or ``token`` in the block replaces the server's own
simple credentials for WebSocket clients only, and makes them authenticate
even when TCP clients need not. nats-server allows it only when no
``users`` (or NKeys) are configured; a block's ``no_auth_user`` is instead
handed to the server's users list through
:attr:`natsd.plugin.contracts.AuthRequest.no_auth_user`.

A client that presents a JWT is left to the server's authenticators
(operator mode, auth callout), as nats-server checks JWTs before simple
credentials.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable
from concurrent.futures import ThreadPoolExecutor

from natsd.plugin.contracts import AuthRequest, AuthResult

from .settings import WebSocketSettings


class WebSocketAuthenticator:
    """Checks WebSocket clients against the block's ``user``/``password`` or ``token``."""

    transports = frozenset({"websocket"})

    def __init__(self, settings: WebSocketSettings) -> None:
        self.user = settings.user
        self.password = settings.password or ""
        self.token = settings.token
        self._pool: ThreadPoolExecutor | None = None

    def authenticate(self, request: AuthRequest) -> AuthResult | None | Awaitable[AuthResult]:
        opts = request.options
        if opts.get("jwt"):
            return None
        if self.token is not None:
            return self._verdict(self.token, opts.get("auth_token"), AuthResult(ok=True),
                                 "bad or missing websocket token")
        if opts.get("user") != self.user:
            return AuthResult(ok=False, reason=f"unknown websocket user {opts.get('user')!r}")
        return self._verdict(self.password, opts.get("pass"), AuthResult(ok=True, user=self.user),
                             f"wrong password for websocket user {self.user!r}")

    def _verdict(self, configured: str, given: object, accepted: AuthResult,
                 refusal: str) -> AuthResult | Awaitable[AuthResult]:
        if not isinstance(given, str):
            return AuthResult(ok=False, reason=refusal)
        if configured.startswith("$2"):  # a bcrypt hash: checked off the event loop, one at a time
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="natsd-ws-bcrypt")
            pending = asyncio.get_running_loop().run_in_executor(self._pool, _bcrypt_ok, configured, given)
            return _settle(pending, accepted, refusal)
        if hmac.compare_digest(configured.encode(), given.encode()):
            return accepted
        return AuthResult(ok=False, reason=refusal)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _bcrypt_ok(configured: str, given: str) -> bool:
    import bcrypt

    try:
        return bool(bcrypt.checkpw(given.encode(), configured.encode()))
    except ValueError:
        return False


async def _settle(pending: Awaitable[bool], accepted: AuthResult, refusal: str) -> AuthResult:
    return accepted if await pending else AuthResult(ok=False, reason=refusal)
