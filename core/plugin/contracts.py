"""The objects plugins and the core exchange, as typing protocols and data classes.

Hooks in :mod:`natsd.plugin.hookspecs` receive a :class:`ServerAPI` (what a
plugin may use of the server) and return the other objects described here.
They are structural: a plugin does not subclass anything, it provides the
methods listed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from natsd.routing.connection import Host

if TYPE_CHECKING:
    import asyncio
    from collections import deque

    from natsd.config.tls import TLSSettings
    from natsd.routing.account import Account
    from natsd.routing.connection import Connection, Kind
    from natsd.routing.interest import InterestRegistry
    from natsd.routing.internal import InternalClient
    from natsd.routing.stats import ClosedClient, Totals
    from natsd.routing.sublist import Subscription
    from natsd.routing.trace import Tracing
    from natsd.security.nkeys import CurveKeyPair, KeyPair
    from natsd.security.peercert import PeerCertificate

    from .auth import AuthChain
    from .manager import PluginManager
    from .stash import Stash


_CONNECTION_TYPES = {"tcp": "STANDARD", "unix": "STANDARD", "websocket": "WEBSOCKET",
                     "mqtt": "MQTT", "leafnode": "LEAFNODE"}


@runtime_checkable
class Listener(Protocol):
    """Accepts connections on some transport (see ``natsd_listeners``).

    ``start`` binds the port. A listener may also define ``async serving()``,
    which the server calls once every plugin's start-up is done (JetStream
    has recovered its streams): one that binds with ``start_serving=False``
    and serves from there refuses early clients, as the client port does,
    instead of letting them find the server half started. Without it, the
    listener serves from ``start``.
    """

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
    ``no_auth_user``, when not ``None``, is the user a connection without
    credentials becomes in place of the server's ``no_auth_user`` (the
    listener's own: a ``websocket {}`` block's).
    """

    options: Mapping[str, Any]
    client_id: int
    remote: tuple[str, int] | None
    transport: str = "tcp"
    nonce: str | None = None
    tls_peer: PeerCertificate | None = None
    no_auth_user: str | None = None

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
    :attr:`AuthRequest.nonce`. CPU-heavy checks (bcrypt) belong off the event
    loop: return an awaitable (``loop.run_in_executor``) with a bound on how
    many run at once. A reload asks again about every connected client; an
    authenticator whose answer costs a round trip sets
    ``recheck_on_reload = False`` to keep the verdicts it gave. An
    authenticator with a ``transports`` attribute (``{"websocket"}``) is asked
    only about, and requires authentication only of, clients of those
    transports (:attr:`AuthRequest.transport`).
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


class LocalStream(Protocol):
    """One stream this server keeps, as :class:`LocalStreams` hands it out."""

    def store_local(self, subject: str, payload: bytes, headers: bytes | None,
                    done: Callable[[int, str | None], None]) -> None:
        """Store a message published on ``subject``, one of the stream's subjects, checked as a
        publish with a reply is. ``done(seq, None)`` is called once it is durable, ``done(0,
        description)`` if it is refused or its write failed (the API error's description)."""

    def wants(self, subject: str) -> bool:
        """Whether a message published on ``subject`` would be kept: ``False`` when the stream
        keeps messages only while a consumer has to take them (interest retention) and none of
        its consumers takes ``subject``. A plugin may then skip :meth:`store_local`."""


class LocalStreams(Protocol):
    """The streams this server keeps, for plugins that store into them and acknowledge their
    deliveries in-process instead of through ``$JS.API`` requests and ``$JS.ACK`` messages (the
    MQTT plugin's QoS 1/2 messages): the service ``"jetstream"`` (``server.service("jetstream")``),
    which the jetstream plugin registers once it has started."""

    domain: str
    """The JetStream domain of these streams (``""``: none)."""

    def local_stream(self, account: str, name: str) -> LocalStream | None:
        """The stream ``name`` of ``account`` (``None``: not kept here)."""

    def ack_local(self, account: str, reply: bytes, payload: bytes = b"+ACK") -> bool:
        """Answer a delivery as publishing ``payload`` (``+ACK``, ``-NAK``, ``+WPI``, ``+TERM``) on
        its ack subject ``reply`` in ``account`` would; ``False``: its consumer is not kept here."""


class Bridge(Protocol):
    """Moves messages between natsd and another system (see ``natsd_bridges``)."""

    async def start(self, server: ServerAPI) -> None: ...
    async def stop(self) -> None: ...


class Observer(Protocol):
    """Any subset of these methods; each one defined is called synchronously."""

    def client_connected(self, client: Connection) -> None: ...
    def client_closed(self, client: Connection, reason: str) -> None: ...
    def client_dropped(self, client: Connection, reason: str) -> None: ...
    def auth_failed(self, client: Connection, reason: str) -> None: ...
    def subscribed(self, client: Connection, sub: Subscription) -> None: ...
    def unsubscribed(self, client: Connection, sub: Subscription) -> None: ...
    def message_published(
        self, client: Connection, account: Account, subject: bytes, reply: bytes | None,
        headers: bytes | None, payload: bytes,
    ) -> None: ...
    def link_connected(self, link: Connection) -> None:
        """A connection to another server (a leaf node, a route, a gateway) finished its
        handshake; plugins that own such links report them with
        ``natsd.routing.connection.notify(server.observers.link_connected, link)``."""

    def link_closed(self, link: Connection, reason: str) -> None:
        """Such a link closed (reported as ``link_connected``)."""


class MessageTracer(Protocol):
    """Decides which published messages to trace (see ``natsd_message_tracers``).

    ``triggers`` names header fields (bytes as written on the wire, such as
    ``b"Nats-Trace-Dest"``): ``begin`` is called for messages whose header
    block contains one of them, whoever publishes them (clients, links,
    plugins). A tracer with ``every = True`` is also asked about each
    message a client publishes, at the price of a call per message; messages
    without headers otherwise stay on the untraced path.

    ``begin`` gets the publishing connection, its account, the subject as
    published (before any mapping), the reply, the header block (``None``:
    none) and the message's size with its headers. It returns a
    :class:`MessageTrace` to follow the message, or ``None``. It is called
    synchronously on the event loop and must be quick.
    """

    triggers: tuple[bytes, ...]

    def begin(self, client: Connection, account: Account, subject: bytes, reply: bytes | None,
              headers: bytes | None, size: int) -> MessageTrace | None: ...


class MessageTrace(Protocol):
    """One traced message, told each step of its routing (see :class:`MessageTracer`).

    The router calls these synchronously while it routes the message, then
    ``end``. They must be quick and must not raise: an exception would end
    the routing of that message half way (``begin`` alone is guarded).
    ``only`` (nats-server's ``Nats-Trace-Only``) asks the router to go
    through every step without delivering: it still reports each receiver
    and forwards to links only what ``forwarded`` returns.
    """

    only: bool

    def mapped(self, subject: bytes) -> None:
        """The account's subject mapping turned the subject into ``subject``."""

    def refused(self, error: str) -> None:
        """The publish was refused (``error``: nats-server's text, such as a permissions violation)."""

    def stream_export(self, account: Account, subject: bytes) -> None:
        """A stream import carries the message into ``account`` as ``subject``."""

    def service_import(self, account: Account, subject: bytes, to: bytes) -> None:
        """A service import carries the request into the exporting ``account``, ``subject`` -> ``to``."""

    def delivered(self, sub: Subscription, subject: bytes, error: str | None) -> bool:
        """The message reaches ``sub`` on this server as ``subject`` (``error``: why it may not, such as the
        receiver's permissions; it is then not delivered whatever this returns). Return False
        to keep it from the subscriber (trace only). Subscriptions of in-process clients are
        reported too: kinds ``ACCOUNT`` and ``SERVICE_IMPORT`` are imports (their crossing is
        reported by ``stream_export``/``service_import``), ``JETSTREAM`` a stream."""

    def forwarded(self, link: Connection, subject: bytes, queues: Sequence[bytes],
                  headers: bytes) -> bytes | None:
        """The message goes to another server over ``link`` (a route, leaf node or gateway)
        as ``subject``, for the queue groups ``queues``. Return the header block to send (``headers``, or a
        new one with a hop header), or ``None`` not to send it."""

    def stored(self, stream: str, subject: bytes, error: str | None = None,
               no_interest: bool = False) -> None:
        """A persistence plugin (JetStream) stored the message in ``stream``, or refused it
        (``error``), or dropped it for want of interest (``no_interest``)."""

    def hold(self) -> Callable[[], None]:
        """Keep the trace open past the router's ``end`` until the returned callable is
        called: a plugin that finishes its part later (a stream's write) holds it."""

    def end(self) -> None:
        """The router is done with the message (the trace may still be held)."""


class InterestListener(Protocol):
    """Hears an account's interest change (see ``natsd_interest_listeners``).

    ``kinds`` are the connection kinds whose subscriptions count (a route
    counts clients, in-process clients and leaf nodes, not the subscriptions
    of service imports, which every server has: ``natsd.routing.connection.
    ANNOUNCED_KINDS | {Kind.LEAF}``). ``interest_changed`` is called
    for a plain subject when its first subscription arrives (``weight`` 1)
    and when its last one goes (0); for a queue group at every change of its
    total weight (0 when it is gone). Called synchronously during SUB, UNSUB,
    a connection's close, a reload: it must be quick and must not raise.
    """

    kinds: Iterable[Kind]

    def interest_changed(self, account: Account, subject: bytes, queue: bytes | None,
                         weight: int) -> None: ...


class ByteTransport(Protocol):
    """What a :class:`natsd.conn.client.Client` needs of the transport it speaks over.

    An asyncio transport has these methods. A plugin that frames the NATS
    protocol in something else (WebSocket) gives the client an adapter with
    them: ``write`` frames the bytes, the others pass through. The adapter
    calls the client's ``connection_made(adapter)``, ``data_received(bytes)``
    (de-framed, any split), ``connection_lost(exc)`` and, for flow control,
    ``pause_writing()`` / ``resume_writing()``.
    """

    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def is_closing(self) -> bool: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...
    def get_write_buffer_size(self) -> int: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


class ClientProtocol(Protocol):
    """A NATS client connection as :meth:`ServerAPI.client_protocol` returns it: the methods of
    an asyncio streaming protocol, which a listener's transport (or its adapter) calls.

    The core's client is a compiled class that does not derive from
    :class:`asyncio.Protocol`; asyncio takes it all the same (``cast`` it where
    a type checker wants an ``asyncio.Protocol``)."""

    def connection_made(self, transport: Any) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool | None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...


class ServerAPI(Host, Protocol):
    """What plugins (and the core's connection layer) may use of a server.

    :class:`natsd.Server` implements it; hooks receive it as ``server``.
    """

    # -- identity and settings --
    name: str
    server_id: str
    server_key: KeyPair
    """The server's NKey (its public key is ``server_id``); it signs the server's own JWTs."""
    curve_key: CurveKeyPair
    """The server's x25519 key pair (its public key is INFO's ``xkey``)."""
    host: str
    port: int
    start_time: float
    plugins: PluginManager
    stash: Stash
    """Per-server plugin state under typed keys (see :mod:`natsd.plugin.stash`)."""
    storage_backends: dict[str, StorageBackend]
    ports: dict[str, list[str]]
    """URLs per kind of port (``nats``, ``monitoring`` ...) for ``ports_file_dir``; plugins add theirs."""
    acceptors: dict[str, Callable[[str], asyncio.Protocol]]
    """Protocol factories for connections one plugin accepts and another plugin's listener
    receives: ``acceptors["leafnode"]("websocket")`` gives the protocol of one inbound leaf
    connection that arrived on the WebSocket port (it gets a transport adapter as
    ``connection_made``'s argument, as :meth:`client_protocol`'s client does). The plugin
    owning the kind registers its factory when it is ready to accept and removes it when it stops."""
    config_digest: str
    """nats-server's digest of the loaded config file ("" without one)."""

    @property
    def client_url(self) -> str: ...
    @property
    def running(self) -> bool: ...
    @property
    def in_lame_duck(self) -> bool: ...
    @property
    def auth_required(self) -> bool: ...
    tls: TLSSettings | None
    """The client port's TLS settings for new connections."""

    # -- accounts and connections --
    accounts: dict[str, Account]
    system_account: Account | None
    clients: dict[int, Connection]
    """Client connections by id (sockets and sessions of in-process clients)."""
    total_connections: int
    slow_consumers: int
    """Slow consumers cut off or flagged, of every kind (a plugin counts its links' too)."""
    stale_connections: int
    """Connections closed for not answering PINGs, of every kind."""
    closed_totals: Totals
    closed_clients: deque[ClosedClient]
    auth: AuthChain
    interest: InterestRegistry
    """Interest listeners and the current weights (``server.interest.weights(account, kinds)``)."""
    tracing: Tracing
    """The message tracers: a plugin whose own connections publish (a link, a device
    protocol) asks ``tracing.begin(...)`` for a message's trace and routes a traced message
    with ``natsd.routing.deliver.deliver_traced`` (see ``natsd_message_tracers``)."""

    def connect_internal(self, name: str, account: str = ..., *, echo: bool = False,
                         kind: Kind = ..., identity: AuthResult | None = None,
                         transport: str = "internal",
                         remote: tuple[str, int] | None = None) -> InternalClient: ...
    def client_protocol(self, transport: str = "tcp") -> ClientProtocol: ...
    async def authenticate(self, request: AuthRequest) -> AuthResult: ...
    def next_cid(self) -> int: ...
    def register(self, conn: Connection) -> bool: ...
    def connection_ready(self, conn: Connection) -> None: ...
    def add_egress(self, egress: Callable[..., bool]) -> None: ...
    def remove_egress(self, egress: Callable[..., bool]) -> None: ...

    # -- INFO --
    def client_info(self, conn: Connection) -> dict[str, Any]: ...
    def async_info(self, conn: Connection, **extra: Any) -> dict[str, Any]: ...
    def update_info(self, **fields: Any) -> None: ...
    def info_field(self, name: str) -> Any: ...
    def broadcast_info(self, **extra: Any) -> None: ...
    def event_server_info(self) -> dict[str, Any]: ...

    # -- services of plugins --
    def register_service(self, name: str, service: object) -> None: ...
    def service(self, name: str) -> Any: ...

    # -- output and lifecycle --
    def flush(self) -> None: ...
    def reload_tls(self, settings: Any) -> None: ...
    def lame_duck(self) -> None: ...
    async def shutdown(self) -> None: ...


OBSERVER_EVENTS = (
    "client_connected", "client_closed", "client_dropped", "auth_failed", "subscribed", "unsubscribed",
    "message_published",
)
