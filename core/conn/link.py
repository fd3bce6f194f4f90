"""A connection to another server: the I/O that routes, leaf nodes and gateways share.

:class:`Link` is a :class:`~natsd.routing.connection.Connection` and an
``asyncio.Protocol``. A plugin subclasses it for its protocol (a route, a
leaf node, a gateway) and keeps the rest of nats-server's rules for links
between servers:

- **Output.** What the router queues during a read is written once at its end
  (:meth:`flush`). A link is not cut for pending bytes as a client is, only
  past a safety valve (:attr:`max_pending`, far above a client's limit).
- **Write deadline** (nats-server's ``write_timeout: retry`` for links): when
  the peer has not drained the transport's buffer for ``write_deadline``, the
  link counts once as a slow consumer and is logged; it stays while bytes
  still go out and is closed only when none did during a whole deadline.
- **PING/PONG.** :meth:`start_pings` sends a PING every ``ping_interval``;
  ``ping_max`` PINGs without a PONG close the link as stale. :attr:`rtt` is
  the last round trip.
- **TLS.** :meth:`start_tls` upgrades the transport (at once for routes and
  gateways, after the plaintext INFO for leaf nodes); the subclass hears
  :meth:`tls_ready` when the handshake is done, and a failure is logged
  (``TLS <label> handshake error``) and closes the link.

The subclass provides :attr:`label` (``"Route"``, ``"Leafnode"``, ...),
:attr:`parser` (an object with ``feed(data)`` that calls back the
subclass's ``on_*`` methods and raises
:class:`~natsd.wire.errors.ProtocolError`), :meth:`begin` (start the
protocol once the link is up), :meth:`forward` (the router's delivery) and
:meth:`link_closed` (forget it). Counters of its own kind are kept through
:meth:`counted`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any, cast

from natsd.routing.connection import SLOW_CONSUMER_DEADLINE, SLOW_CONSUMER_PENDING, Connection, Kind
from natsd.security.peercert import PeerCertificate
from natsd.wire.errors import ProtocolError

if TYPE_CHECKING:
    from natsd.plugin.contracts import ServerAPI
    from natsd.routing.account import Account

PING = b"PING\r\n"
PONG = b"PONG\r\n"

# Close reasons, as nats-server's monitoring and logs name them.
STALE = "Stale Connection"
PROTOCOL_VIOLATION = "Protocol Violation"
CLIENT_CLOSED = "Client Closed"
TLS_HANDSHAKE_FAILURE = "TLS Handshake Failure"
SERVER_SHUTDOWN = "Server Shutdown"
LINK_PROTO = 3
"""The ``proto`` of the INFO a server sends its routes, gateways and leaf nodes: nats-server's
current level (``MsgTraceProto``: accounts on routes, and message tracing, which tells the peer
that a trace-only message sent here is not delivered). A peer below it gets traced messages
without a trace of its own (see the msgtrace plugin)."""

LINK_MAX_PENDING = 256 * 1024 * 1024
"""Bytes queued for a link past which it is closed, whatever the write deadline says."""


class Link(Connection, asyncio.Protocol):
    """A connection to another server (either side of it); see the module docstring."""

    __slots__ = ("io", "parser", "solicited", "remote_id", "remote_name", "remote_info", "pings_out",
                 "written", "slow", "handshake", "log", "_ping_sent", "_ping_timer",
                 "_deadline_timer", "_stuck_at")

    label = "Link"
    """How logs name the link as it is made: ``"<label> connection created"``."""
    kind_name = "Link"
    """How logs name its kind otherwise (nats-server's ``kindString``): ``"Router"``, ``"Leafnode"``."""

    def __init__(self, server: ServerAPI, account: Account, *, kind: Kind, transport: str,
                 solicited: bool, log: logging.Logger) -> None:
        super().__init__(server, account, kind=kind, transport=transport)
        self.io: asyncio.Transport | None = None
        self.parser: Any = None
        self.solicited = solicited
        self.remote_id = ""
        self.remote_name = ""
        self.remote_info: dict[str, Any] = {}
        self.pings_out = 0
        self.rtt = 0.0
        self.written = 0  # bytes handed to the transport
        self.slow = False  # a write deadline passed and the peer has not caught up since
        self.handshake: asyncio.Task[None] | None = None  # TLS, while it runs
        self.log = log
        self.max_pending = max(server.config.max_pending * 4, LINK_MAX_PENDING)
        self._ping_sent = 0.0
        self._ping_timer: asyncio.TimerHandle | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._stuck_at = 0  # bytes drained when the current deadline was armed

    @property
    def server_api(self) -> ServerAPI:
        return cast("ServerAPI", self.server)

    def describe(self) -> str:
        where = f"{self.remote[0]}:{self.remote[1]}" if self.remote else self.label.lower()
        return f"{where} - {self.label[0].lower()}id:{self.cid}"

    def __repr__(self) -> str:
        return f"<{self.label} {self.cid} {self.remote_name or self.remote_id or '?'}>"

    # -- for the subclass ----------------------------------------------------------------

    def begin(self) -> None:
        """The transport is up (after TLS when it comes first): start the protocol."""

    def tls_ready(self) -> None:
        """A :meth:`start_tls` handshake finished (``self.io`` is the TLS transport)."""

    def link_closed(self) -> None:
        """The link closed (:attr:`close_reason` says why): forget it."""

    def counted(self, what: str) -> None:
        """A slow consumer (``"slow"``) or stale link (``"stale"``) was counted server-wide."""

    @property
    def ping_interval(self) -> float:
        return self.server_api.config.ping_interval

    @property
    def ping_max(self) -> int:
        return self.server_api.config.ping_max

    @property
    def write_deadline(self) -> float:
        return self.server_api.config.write_deadline

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.io is not None:  # the TLS layer, once start_tls has finished
            return
        self.io = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.remote = (peer[0], peer[1])
        self.cid = self.server_api.next_cid()
        self.start = self.last = time.time()
        self.log.info("%s - %s connection created", self.describe(), self.label)
        self.begin()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last = time.time()
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            self.log.error("%s - %s parser ERROR: %s", self.describe(), self.kind_name, exc.detail)
            self.close(PROTOCOL_VIOLATION, exc.text)
        server = self.server_api
        if server.dirty:
            server.flush()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.teardown(CLIENT_CLOSED)

    # -- TLS ---------------------------------------------------------------------------------

    def start_tls(self, context: ssl.SSLContext, *, server_side: bool, server_hostname: str | None,
                  timeout: float, pinned: frozenset[str] = frozenset()) -> None:
        """Upgrade the transport now; :meth:`tls_ready` follows, or the link closes."""
        self.handshake = self.server_api.loop.create_task(
            self._upgrade(context, server_side, server_hostname, timeout, pinned))

    async def _upgrade(self, context: ssl.SSLContext, server_side: bool, host: str | None,
                       timeout: float, pinned: frozenset[str]) -> None:
        assert self.io is not None
        try:
            io = await self.server_api.loop.start_tls(
                self.io, self, context, server_side=server_side,
                server_hostname=None if server_side else host, ssl_handshake_timeout=timeout)
        except (TimeoutError, OSError, ValueError) as exc:
            if not self.closed:
                self.log.error("%s - TLS %s handshake error: %s", self.describe(),
                               self.label.lower(), exc)
                self.close(TLS_HANDSHAKE_FAILURE, abort=True)
            return
        finally:
            self.handshake = None
        if io is None or self.closed:
            return
        self.io = cast(asyncio.Transport, io)
        peer = PeerCertificate.from_ssl(io.get_extra_info("ssl_object"))
        if pinned and (peer is None or peer.spki_sha256() not in pinned):
            self.log.error("%s - TLS %s handshake error: peer certificate not in pinned certs",
                           self.describe(), self.label.lower())
            self.close(TLS_HANDSHAKE_FAILURE, abort=True)
            return
        self.log.debug("%s - TLS handshake complete", self.describe())
        self.tls_ready()

    # -- output ------------------------------------------------------------------------------

    def write_now(self, data: bytes) -> None:
        """Write protocol bytes at once (handshake lines), ahead of anything queued later."""
        if self.io is not None and not self.closed:
            self.written += len(data)
            self.io.write(data)

    def flush(self) -> None:
        self.dirty = False
        out = self.out
        if not out:
            return
        io = self.io
        if self.closed or io is None:
            out.clear()
            return
        data = b"".join(out) if len(out) > 1 else out[0]
        out.clear()
        self.out_bytes = 0
        self.written += len(data)
        io.write(data)
        if io.get_write_buffer_size() > self.max_pending:
            self.slow_consumer(SLOW_CONSUMER_PENDING)

    def _drained(self) -> int:
        return self.written - (self.io.get_write_buffer_size() if self.io is not None else 0)

    def pause_writing(self) -> None:
        deadline = self.write_deadline
        if self._deadline_timer is None and deadline > 0 and not self.closed:
            self._stuck_at = self._drained()
            self._deadline_timer = self.server_api.loop.call_later(deadline, self._deadline_passed)

    def resume_writing(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        if self.slow:
            self.slow = False
            self.log.info("%s - Slow Consumer Recovered", self.describe())

    def _deadline_passed(self) -> None:
        self._deadline_timer = None
        if self.closed:
            return
        deadline = self.write_deadline
        pending = self.io.get_write_buffer_size() if self.io is not None else 0
        if not self.slow:
            self.slow = True
            self.server_api.slow_consumers += 1
            self.counted("slow")
            self.log.warning("%s - Slow Consumer Detected: WriteDeadline of %ss exceeded with %d "
                             "bytes pending", self.describe(), deadline, pending)
        if self._drained() == self._stuck_at:
            self.close(SLOW_CONSUMER_DEADLINE, abort=True)
            return
        self._stuck_at = self._drained()
        self._deadline_timer = self.server_api.loop.call_later(deadline, self._deadline_passed)

    def slow_consumer(self, reason: str) -> None:
        if self.closed:
            return
        pending = self.out_bytes + (self.io.get_write_buffer_size() if self.io is not None else 0)
        self.log.warning("%s - %s slow consumer: %d bytes pending, closing to resynchronise",
                         self.describe(), self.kind_name, pending)
        if not self.slow:
            self.server_api.slow_consumers += 1
            self.counted("slow")
        self.close(reason, abort=True)

    # -- PING/PONG ---------------------------------------------------------------------------

    def start_pings(self, first: float | None = None) -> None:
        """PING after ``first`` seconds (default: the interval), then every ``ping_interval``."""
        self._ping_timer = self.server_api.loop.call_later(
            self.ping_interval if first is None else first, self._ping_tick)

    def _ping_tick(self) -> None:
        self._ping_timer = None
        if self.closed:
            return
        if self.pings_out + 1 > self.ping_max:
            self.log.debug("%s - Stale Client Connection - Closing", self.describe())
            self.server_api.stale_connections += 1
            self.counted("stale")
            self.close(STALE)
            return
        self.pings_out += 1
        self._ping_sent = time.monotonic()
        self.send(PING)
        self._ping_timer = self.server_api.loop.call_later(self.ping_interval, self._ping_tick)

    def on_ping(self) -> None:
        self.queue(PONG)

    def on_pong(self) -> None:
        self.pings_out = 0
        if self._ping_sent:
            self.rtt = time.monotonic() - self._ping_sent

    # -- closing -----------------------------------------------------------------------------

    def close(self, reason: str, err: str | None = None, *, abort: bool = False) -> None:
        """Close the link, optionally after ``-ERR '<err>'``."""
        if self.closed:
            return
        io = self.io
        if io is not None and not abort and self.handshake is None:
            if self.out:
                io.write(b"".join(self.out))
            if err is not None:
                io.write(b"-ERR '%s'\r\n" % err.encode())
        self.teardown(reason)
        if io is not None:
            if abort:
                io.abort()
            else:
                io.close()

    def teardown(self, reason: str) -> None:
        """Mark closed, stop the timers, tell the subclass (:meth:`link_closed`)."""
        self.closed = True
        self.close_reason = reason
        assert self.out is not None
        self.out.clear()
        for timer in (self._ping_timer, self._deadline_timer):
            if timer is not None:
                timer.cancel()
        if self.handshake is not None:
            self.handshake.cancel()
        remote = f" - Remote: {self.remote_name}" if self.remote_name else ""
        self.log.info("%s - %s connection closed: %s%s", self.describe(), self.kind_name, reason, remote)
        self.link_closed()
