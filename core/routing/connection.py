"""Connections as the router sees them: who they are (their kind), what they may do, their output.

Every party that publishes or receives a message is a :class:`Connection`:
a client on a socket (:class:`natsd.conn.client.Client`), an in-process
client (:class:`natsd.routing.internal.InternalClient`), a forwarder of an
account import, or a plugin's link to another server (a route, a leaf node,
a gateway). Two fields say what a connection is, as in nats-server:

- ``kind`` (:class:`Kind`): *who* it is (a client, a route, a leaf node, the
  system ...). The router's rules are written in kinds: a message that came
  over a route is never sent over another route.
- ``transport``: *how* it speaks (``"tcp"``, ``"websocket"``, ``"mqtt"``,
  ``"internal"`` ...), for monitoring, events and authentication.

A connection that writes NATS frames has an output list (``out``): the router
appends frames to it with :meth:`Connection.add_msg` and puts the connection
on the host's ``dirty`` list, which is flushed once per read. A connection
with ``out = None`` receives messages through :meth:`Connection.deliver`
(in-process callbacks); a connection of a remote kind receives them through
:meth:`Connection.forward`, once per message with the queue groups it should
serve (the shape of ``RMSG`` and ``LMSG``).
"""

from __future__ import annotations

import logging
import time
from enum import IntEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from mypy_extensions import mypyc_attr

from .sublist import Subscription

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Sequence

    from natsd.config import ServerConfig

    from .account import Account

log = logging.getLogger("natsd.client")


class Kind(IntEnum):
    """Who a connection is (nats-server's ``client.kind``, same numbers)."""

    CLIENT = 0
    ROUTER = 1
    GATEWAY = 2
    SYSTEM = 3
    LEAF = 4
    JETSTREAM = 5
    ACCOUNT = 6
    HUB = 7
    """natsd's own: a leaf-node connection this server solicited, its link to a hub
    (nats-server's ``LEAF`` with ``isSpokeLeafNode()``); ``LEAF`` is one it accepted."""
    SERVICE_IMPORT = 8
    """natsd's own: the subscription a service import holds in the importing account. It is
    delivered here but never announced to routes or gateways: every server of a cluster has
    the same imports, and the request crosses in the exporting account."""

    @property
    def label(self) -> str:
        """nats-server's name of the kind in monitoring and events (``Client``, ``Router`` ...)."""
        return _LABELS[self]


_LABELS = {Kind.CLIENT: "Client", Kind.ROUTER: "Router", Kind.GATEWAY: "Gateway",
           Kind.SYSTEM: "System", Kind.LEAF: "Leafnode", Kind.JETSTREAM: "JetStream",
           Kind.ACCOUNT: "Account", Kind.HUB: "Leafnode", Kind.SERVICE_IMPORT: "Account"}

NO_LIMIT = -1
"""A limit that is not set (nats-server's ``jwt.NoLimit``)."""


def min_limit(*limits: int) -> int:
    """The tightest of several limits where ``-1`` (or any negative) means none."""
    real = [x for x in limits if x >= 0]
    return min(real) if real else NO_LIMIT


REMOTE_KINDS = frozenset({Kind.ROUTER, Kind.GATEWAY, Kind.LEAF, Kind.HUB})
"""Kinds whose subscriptions stand for interest on another server."""

LOCAL_KINDS = frozenset({Kind.CLIENT, Kind.SYSTEM, Kind.JETSTREAM, Kind.ACCOUNT, Kind.SERVICE_IMPORT})
"""Kinds whose subscriptions are served on this server."""

ANNOUNCED_KINDS = LOCAL_KINDS - {Kind.SERVICE_IMPORT}
"""Local kinds whose interest a server announces to its routes and gateways (a service
import's subscription stays home: the other servers have the same import)."""

# Close reasons, worded as nats-server's monitoring shows them.
CLIENT_CLOSED = "Client Closed"
SERVER_SHUTDOWN = "Server Shutdown"
SLOW_CONSUMER_PENDING = "Slow Consumer (Pending Bytes)"
SLOW_CONSUMER_DEADLINE = "Slow Consumer (Write Deadline)"


class Permits(Protocol):
    """What the router and connections ask of a user's permissions
    (:class:`natsd.security.permissions.PermissionChecker` provides it)."""

    def can_publish(self, subject: bytes) -> bool: ...
    def can_subscribe(self, subject: bytes, queue: bytes | None = None) -> bool: ...
    def deny_delivery(self, subject: bytes, queue: bytes | None = None) -> bool: ...
    def note_request(self, reply: bytes) -> None: ...


class Identity(Protocol):
    """An accepted authentication verdict (:class:`natsd.plugin.contracts.AuthResult`)."""

    @property
    def user(self) -> str | None: ...
    @property
    def permissions(self) -> Any: ...
    @property
    def max_subscriptions(self) -> int: ...
    @property
    def max_payload(self) -> int: ...
    @property
    def expires(self) -> float | None: ...


class Observers:
    """The bound methods of every observer (``natsd_observers``), by event.

    A list is empty when no observer defines the event, so an unobserved
    event costs one truth test.
    """

    __slots__ = ("connected", "closed", "dropped", "auth_failed", "subscribed", "unsubscribed", "published",
                 "link_connected", "link_closed")

    def __init__(self) -> None:
        self.connected: list[Any] = []
        self.closed: list[Any] = []
        self.link_connected: list[Any] = []
        self.link_closed: list[Any] = []
        self.dropped: list[Any] = []
        self.auth_failed: list[Any] = []
        self.subscribed: list[Any] = []
        self.unsubscribed: list[Any] = []
        self.published: list[Any] = []


def notify(observers: list[Any], *args: Any) -> None:
    """Call each observer; an observer that raises is logged and keeps its place."""
    for observe in observers:
        try:
            observe(*args)
        except Exception:
            log.exception("observer %r failed", observe)


class Host(Protocol):
    """What connections and the router need of the server they live in."""

    config: ServerConfig
    loop: asyncio.AbstractEventLoop
    dirty: list[Connection]
    """Connections written to during the current read; flushed once at its end."""
    observers: Observers
    slow_consumers: int
    global_account: Account
    links: Any
    """What ``accounts {}`` exports and imports wired (:class:`natsd.routing.imports.Links`)."""
    tracing: Any
    """The message tracers (:class:`natsd.routing.trace.Tracing`)."""

    def schedule_flush(self) -> None: ...
    def connection_closed(self, conn: Connection, reason: str) -> None: ...
    def lookup_account(self, name: str, create: bool = False) -> Account: ...


@mypyc_attr(allow_interpreted_subclasses=True)
class Connection:
    """State every connection shares: identity, account, subscriptions, output and counters.

    Subclasses provide ``close`` and, depending on what they are, ``out``
    (frames), ``deliver`` (in-process) or ``forward`` (remote kinds).
    """

    __slots__ = (
        "server", "kind", "transport", "cid", "account", "subs", "out", "out_bytes", "dirty",
        "closed", "connected", "authorized", "echo", "headers", "perms", "max_subs", "max_pending", "name",
        "lang", "version", "user", "remote", "start", "last", "in_msgs", "in_bytes", "out_msgs",
        "out_bytes_total", "close_reason", "connect_options", "auth_result", "tls", "rtt",
        "_expiry_timer", "trace",
    )

    router_appends: ClassVar[bool] = True
    """Whether the router's hot loop may append this connection's message frames to ``out``
    itself. A subclass that watches its output (a traced client) says False: then every frame
    goes through :meth:`queue` or :meth:`add_msg`, which it overrides."""

    def __init__(self, server: Host, account: Account, *, kind: Kind = Kind.CLIENT,
                 transport: str = "tcp") -> None:
        self.server = server
        self.kind = kind
        self.transport = transport
        self.cid = 0
        self.account = account
        self.subs: dict[bytes, Subscription] = {}
        self.out: list[bytes] | None = []
        self.out_bytes = 0
        self.dirty = False
        self.closed = False
        self.connected = False  # accepted and announced to observers
        self.authorized = True  # a client socket is not until its CONNECT is accepted
        self.echo = True
        self.headers = False
        self.perms: Permits | None = None
        self.max_subs = server.config.max_subscriptions or NO_LIMIT
        self.max_pending = server.config.max_pending
        self.name = self.lang = self.version = ""
        self.user: str | None = None
        self.remote: tuple[str, int] | None = None
        self.start = self.last = 0.0  # connected at, last read at (Unix time)
        self.rtt = 0.0
        """Round-trip time in seconds (0: not measured): a client's is estimated at CONNECT (the time
        since it was accepted, as nats-server does) and measured by each PING the server sends."""
        self.in_msgs = self.in_bytes = self.out_msgs = self.out_bytes_total = 0
        self.close_reason = ""
        self.connect_options: dict[str, Any] = {}
        self.auth_result: Any = None
        self.tls: Any = None  # a natsd.security.peercert.TLSConnection after a TLS handshake
        self._expiry_timer: asyncio.TimerHandle | None = None
        self.trace: Any = None
        """The :class:`natsd.plugin.contracts.MessageTrace` of the message this connection
        is publishing, while the router routes it (see :mod:`natsd.routing.trace`)."""

    def describe(self) -> str:
        """``ip:port - cid:N`` (or the transport for connections without an address), for logs."""
        where = f"{self.remote[0]}:{self.remote[1]}" if self.remote else self.transport
        return f"{where} - cid:{self.cid}"

    # -- output -------------------------------------------------------------

    def queue(self, data: bytes) -> None:
        """Append ``data`` to the output flushed at the end of the current read."""
        out = self.out
        if self.closed or out is None:
            return
        out.append(data)
        self.out_bytes += len(data)
        if not self.dirty:
            self.dirty = True
            self.server.dirty.append(self)

    def send(self, data: bytes) -> None:
        """Queue ``data`` from outside a read (timers, internal clients) and flush soon."""
        self.queue(data)
        self.server.schedule_flush()

    def add_msg(self, head: bytes, tail: bytes, payload: bytes, size: int, count: int = 1) -> None:
        """Queue a message frame (``head``, ``tail``, ``payload``) and count it.

        ``size`` is the message size for the counters (payload without its
        CRLF); a run of ``count`` frames already joined is queued as ``head``
        with ``size`` their total. This is the router's per-delivery
        bookkeeping: the output list, the counters, the dirty list and the
        slow-consumer check.
        """
        out = self.out
        if self.closed or out is None:
            return
        out.append(head)
        out.append(tail)
        out.append(payload)
        self.out_msgs += count
        self.out_bytes_total += size
        self.out_bytes += len(head) + len(tail) + len(payload)
        if not self.dirty:
            self.dirty = True
            self.server.dirty.append(self)
        if self.out_bytes > self.max_pending:
            self.slow_consumer(SLOW_CONSUMER_PENDING)

    def flush(self) -> None:
        """Write what was queued (connections that write frames override this)."""
        self.dirty = False

    def slow_consumer(self, reason: str) -> None:
        """Cut a connection that cannot keep up (nats-server sends it no ``-ERR``)."""
        if self.closed:
            return
        log.warning("%s - Slow Consumer Detected: %s", self.describe(), reason)
        self.server.slow_consumers += 1
        self.close(reason, abort=True)

    def deliver(self, sub: Subscription, subject: bytes, reply: bytes | None,
                headers: bytes | None, payload: bytes, sender: Connection) -> None:
        """Receive one message (connections with ``out = None``)."""
        raise NotImplementedError

    def forward(self, sender: Connection, account: Account, subject: bytes, reply: bytes | None,
                size: bytes, payload: bytes, hdr: int, queues: Sequence[bytes]) -> None:
        """Carry one message to the server behind this connection (remote kinds).

        Called once per message, whatever number of this connection's
        subscriptions matched. ``queues`` names the queue groups this
        connection should serve (empty: plain interest only); ``size`` is the
        total size as published, ``payload`` ends with CRLF and starts with
        ``hdr`` bytes of headers.
        """
        raise NotImplementedError

    # -- subscriptions ---------------------------------------------------------

    def add_sub(self, sub: Subscription) -> None:
        """Register ``sub`` (already checked) in the connection and its account."""
        self.subs[sub.sid] = sub
        self.account.add_sub(sub)
        if self.server.observers.subscribed:
            notify(self.server.observers.subscribed, self, sub)

    def remove_sub(self, sub: Subscription) -> None:
        """Remove ``sub`` (UNSUB, auto-unsubscribe, permissions taken away)."""
        if self.subs.pop(sub.sid, None) is None:
            return
        sub.closed = True
        self.account.remove_sub(sub)
        if self.server.observers.unsubscribed:
            notify(self.server.observers.unsubscribed, self, sub)

    def drop_subs(self) -> None:
        """Remove every subscription at close (observers are not told one by one)."""
        account = self.account
        for sub in self.subs.values():
            sub.closed = True
            account.remove_sub(sub)
        self.subs.clear()

    # -- identity ---------------------------------------------------------------

    def take_auth_result(self, result: Identity) -> None:
        """Apply an accepted verdict's identity, permissions, limits and expiry (also on reload).

        New permissions apply at once to what this connection already has:
        delivery checks read ``perms`` at every message.
        """
        self.auth_result = result
        self.user = result.user
        permissions = result.permissions
        self.perms = permissions.checker() if permissions is not None else None
        self.apply_limits()
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        if result.expires is not None:
            self._expiry_timer = self.server.loop.call_later(
                max(0.0, result.expires - time.time()), self.auth_expired)

    def reauthenticate(self) -> None:
        """Check the credentials again after a reload (client sockets do; a plugin's
        sessions keep the identity their plugin gave them)."""

    def forget_identity(self) -> None:
        """Back to an anonymous connection (authentication turned off by a reload)."""
        self.auth_result = None
        self.user = None
        self.perms = None
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None
        self.apply_limits()

    def apply_limits(self) -> None:
        """The tightest of the user's, the account's and the server's limits."""
        result, account, cfg = self.auth_result, self.account, self.server.config
        self.max_subs = min_limit(result.max_subscriptions if result else NO_LIMIT,
                                  account.max_subscriptions, cfg.max_subscriptions or NO_LIMIT)
        self.max_pending = cfg.max_pending

    def auth_expired(self) -> None:
        """The user's credentials expired (``AuthResult.expires``)."""
        self._expiry_timer = None

    def cancel_timers(self) -> None:
        if self._expiry_timer is not None:
            self._expiry_timer.cancel()
            self._expiry_timer = None

    def close(self, reason: str, err: str | None = None, *, abort: bool = False) -> None:
        raise NotImplementedError
