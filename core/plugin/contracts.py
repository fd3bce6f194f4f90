"""The objects plugins hand to the core, as typing protocols.

Hooks in :mod:`natsd.plugin.hookspecs` return these. They are structural: a plugin
does not subclass anything, it provides the methods listed here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from natsd.routing.account import Account
    from natsd.server import Server
    from natsd.routing.sublist import Subscription
    from natsd.security.peercert import PeerCertificate


_CONNECTION_TYPES = {"tcp": "STANDARD", "unix": "STANDARD", "websocket": "WEBSOCKET",
                     "mqtt": "MQTT", "leafnode": "LEAFNODE"}


@runtime_checkable
class Listener(Protocol):
    """Accepts connections on some transport (see ``natsd_listeners``)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...


@dataclass(frozen=True)
class AuthRequest:
    """What an authenticator sees of a connecting client.

    ``options`` is the client's CONNECT object (``user``, ``pass``,
    ``auth_token``, ``nkey``, ``sig``, ``jwt`` ...). ``nonce`` is the nonce
    sent in INFO, if any. ``tls_peer`` is the client's verified certificate
    (a :class:`natsd.security.peercert.PeerCertificate`: subject DN, email/DNS/URI names)
    when it connected over TLS with ``verify``, else ``None``.
    """

    options: Mapping[str, Any]
    client_id: int
    remote: tuple[str, int] | None
    transport: str = "tcp"
    nonce: str | None = None
    tls_peer: PeerCertificate | None = None

    @property
    def connection_type(self) -> str:
        """nats-server's name for the transport: STANDARD, WEBSOCKET, MQTT or LEAFNODE."""
        return _CONNECTION_TYPES.get(self.transport, self.transport.upper())


@dataclass(frozen=True)
class AuthResult:
    """An authenticator's verdict.

    ``ok=False`` refuses the client; ``reason`` goes to the server log only.
    ``account`` names the account the client joins (default ``$G``).
    ``user`` is the identity shown in logs and monitoring. ``permissions``
    (a :class:`natsd.security.permissions.Permissions`) limits what the client may
    publish and subscribe to; ``None`` allows everything.
    ``max_subscriptions`` and ``max_payload`` are the user's own limits
    (``-1``: none; the account's and the server's still apply, the lowest
    wins). ``expires`` (Unix time) closes the connection with
    ``-ERR 'User Authentication Expired'`` when reached.
    """

    ok: bool
    account: str | None = None
    user: str | None = None
    reason: str = ""
    permissions: Any = None
    max_subscriptions: int = -1
    max_payload: int = -1
    expires: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Authenticator(Protocol):
    """Decides whether a CONNECT is allowed (see ``natsd_authenticators``).

    ``authenticate`` returns an :class:`AuthResult`, ``None`` to leave the
    client to the next authenticator, or an awaitable of either when the
    answer needs I/O (an HTTP call, a request to a NATS service): the core
    then stops reading from that one connection until it resolves, bounded
    by the ``authorization { timeout }``; other connections are unaffected.

    An authenticator that verifies NKey signatures sets ``wants_nonce = True``;
    the server then sends a fresh ``nonce`` in each INFO and passes it in
    :attr:`AuthRequest.nonce`.
    """

    def authenticate(
        self, request: AuthRequest
    ) -> AuthResult | None | Awaitable[AuthResult | None]: ...


class MessageStore(Protocol):
    """An append-only log of messages with sequence numbers starting at 1.

    ``store`` returns only once the message is as durable as the backend
    promises; it must never acknowledge what it has not kept.
    """

    def store(self, subject: bytes, headers: bytes | None, payload: bytes) -> int: ...
    def load(self, seq: int) -> tuple[bytes, bytes | None, bytes] | None: ...
    def last_seq(self) -> int: ...
    def close(self) -> None: ...


class StorageBackend(Protocol):
    """Opens named message stores (see ``natsd_storage_backends``)."""

    def open(self, name: str, options: Mapping[str, Any]) -> MessageStore: ...


class Bridge(Protocol):
    """Moves messages between natsd and another system (see ``natsd_bridges``)."""

    async def start(self, server: Server) -> None: ...
    async def stop(self) -> None: ...


class Observer(Protocol):
    """Any subset of these methods; each one defined is called synchronously."""

    def client_connected(self, client: Any) -> None: ...
    def client_closed(self, client: Any, reason: str) -> None: ...
    def auth_failed(self, client: Any, reason: str) -> None: ...
    def subscribed(self, client: Any, sub: Subscription) -> None: ...
    def unsubscribed(self, client: Any, sub: Subscription) -> None: ...
    def message_published(
        self, client: Any, account: Account, subject: bytes, reply: bytes | None,
        headers: bytes | None, payload: bytes,
    ) -> None: ...


OBSERVER_EVENTS = (
    "client_connected", "client_closed", "auth_failed", "subscribed", "unsubscribed",
    "message_published",
)
