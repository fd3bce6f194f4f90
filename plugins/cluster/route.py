"""One route: the connection to another server of the cluster.

A :class:`Route` is a connection of kind ``ROUTER``. The remote server's
interest (``RS+``) becomes subscriptions of the route in the accounts' sublists;
the router then hands the route each message that matches them, once, with
the queue groups it should serve (:meth:`Route.forward` writes one ``RMSG`` or
``HMSG``). Messages the remote sends are delivered locally with the queue
groups it named, and never to another route (the router's one-hop rule).

The handshake is nats-server's: the side that dials sends ``CONNECT`` first,
then ``INFO``; the side that accepts sends ``INFO`` at once and wants
``CONNECT`` before anything else. The route is registered when the remote's
``INFO`` arrives; then this side sends its whole interest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from natsd.plugin.contracts import ServerAPI
from natsd.routing.account import Account
from natsd.routing.connection import SLOW_CONSUMER_DEADLINE, SLOW_CONSUMER_PENDING, Connection, Kind
from natsd.routing.sublist import Subscription
from natsd.security.peercert import PeerCertificate
from natsd.wire.errors import ProtocolError, go_quote

from .protocol import PING, PONG, RouteParser, encode_json, msg_head

if TYPE_CHECKING:
    from natsd.config.tls import TLSSettings

    from .cluster import Cluster

log = logging.getLogger("natsd.cluster")

FIRST_PING = 1.0
"""Seconds before the first PING on a new route (nats-server: 1 s plus jitter)."""

# Close reasons, as nats-server's monitoring and logs name them.
DUPLICATE_ROUTE = "Duplicate Route"
CLUSTER_NAME_CONFLICT = "Cluster Name Conflict"
STALE = "Stale Connection"
PROTOCOL_VIOLATION = "Protocol Violation"
AUTH_FAILURE = "Authentication Failure"
AUTH_TIMEOUT = "Authentication Timeout"
INCORRECT_PORT = "Incorrect Port"
PARSE_ERROR = "Parse Error"
CLIENT_CLOSED = "Client Closed"
SERVER_SHUTDOWN = "Server Shutdown"
TLS_HANDSHAKE_FAILURE = "TLS Handshake Failure"


class Route(Connection, asyncio.Protocol):
    """A route connection (either side of it)."""

    __slots__ = ("cluster", "io", "parser", "solicited", "url", "implicit", "implicit_auth",
                 "remote_id", "remote_name", "remote_info", "remote_cluster", "registered",
                 "pings_out", "rtt", "_ping_sent", "_ping_timer", "_auth_timer", "_interest",
                 "retry", "gossip_mode", "handshake", "written", "slow", "_deadline_timer", "_stuck_at")

    def __init__(self, cluster: Cluster, *, solicited: bool, url: str | None = None,
                 implicit: bool = False, implicit_auth: bool = False, gossip_mode: int = 0) -> None:
        server = cluster.server
        super().__init__(server, server.global_account, kind=Kind.ROUTER, transport="route")
        self.cluster = cluster
        self.io: asyncio.Transport | None = None
        self.parser = RouteParser(self)
        self.solicited = solicited
        self.url = url
        self.implicit = implicit
        self.implicit_auth = implicit_auth
        self.gossip_mode = gossip_mode
        self.headers = True
        self.remote_id = ""
        self.remote_name = ""
        self.remote_cluster = ""
        self.remote_info: dict[str, Any] = {}
        self.registered = False
        self.retry = solicited
        self.pings_out = 0
        self.rtt = 0.0
        self._ping_sent = 0.0
        self._ping_timer: asyncio.TimerHandle | None = None
        self._auth_timer: asyncio.TimerHandle | None = None
        # the remote's interest: key -> (account, subscription)
        self._interest: dict[tuple[bytes, bytes, bytes | None], tuple[Account, Subscription]] = {}
        # Routes are not clients: no pending-bytes kill (nats-server keeps a route that is
        # behind), only a safety valve far above a client's limit.
        self.max_pending = max(server.config.max_pending * 4, 256 * 1024 * 1024)
        self.handshake: asyncio.Task[None] | None = None  # route TLS, while it runs
        self.written = 0  # bytes handed to the transport
        self.slow = False  # a write deadline passed and the peer has not caught up since
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._stuck_at = 0  # bytes drained when the current deadline was armed

    def __repr__(self) -> str:
        return f"<Route rid={self.cid} {self.remote_name or self.remote_id or '?'}>"

    def describe(self) -> str:
        where = f"{self.remote[0]}:{self.remote[1]}" if self.remote else "route"
        return f"{where} - rid:{self.cid}"

    @property
    def server_api(self) -> ServerAPI:
        return self.cluster.server

    # -- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.io is not None:  # the TLS layer, once start_tls has finished
            return
        self.io = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.remote = (peer[0], peer[1])
        server = self.server_api
        self.cid = server.next_cid()
        self.start = self.last = time.time()
        log.info("%s - Route connection created", self.describe())
        self.cluster.connections.add(self)
        if self.cluster.settings.tls is None:
            self._begin()
            return
        # TLS from the first byte, as nats-server's routes: no plaintext INFO.
        self.handshake = server.loop.create_task(self._start_tls(self.cluster.settings.tls))

    async def _start_tls(self, tls: TLSSettings) -> None:
        assert self.io is not None
        cluster = self.cluster
        host = urlsplit(self.url).hostname if self.solicited and self.url else None
        context = cluster.dialing_context if self.solicited else tls.context
        assert context is not None
        try:
            io = await self.server_api.loop.start_tls(
                self.io, self, context, server_side=not self.solicited,
                server_hostname=host, ssl_handshake_timeout=tls.timeout)
        except (TimeoutError, OSError, ValueError) as exc:
            if not self.closed:
                log.error("%s - TLS route handshake error: %s", self.describe(), exc)
                self.close(TLS_HANDSHAKE_FAILURE, abort=True)
            return
        finally:
            self.handshake = None
        if io is None or self.closed:
            return
        self.io = cast(asyncio.Transport, io)
        peer = PeerCertificate.from_ssl(io.get_extra_info("ssl_object"))
        if tls.pinned_certs and (peer is None or peer.spki_sha256() not in tls.pinned_certs):
            log.error("%s - TLS route handshake error: peer certificate not in pinned certs",
                      self.describe())
            self.close(TLS_HANDSHAKE_FAILURE, abort=True)
            return
        log.debug("%s - TLS handshake complete", self.describe())
        self._begin()

    def _begin(self) -> None:
        """Start the route protocol: CONNECT and INFO, the ping and authentication timers."""
        io = self.io
        assert io is not None
        server, cluster = self.server_api, self.cluster
        if self.solicited:
            io.write(encode_json(b"CONNECT", cluster.connect_options(self.url, self.implicit_auth)))
            io.write(encode_json(b"INFO", cluster.route_info(self)))
        else:
            io.write(encode_json(b"INFO", cluster.route_info(self)))
            self._auth_timer = server.loop.call_later(cluster.settings.auth_timeout, self._auth_expired)
        self._ping_timer = server.loop.call_later(FIRST_PING, self._ping_tick)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last = time.time()
        if not self.solicited and not self.remote_id and data[:1] not in (b"C", b"c", b""):
            # nats-server: the first operation on an accepted route must be CONNECT.
            log.error("%s - route sent %r before CONNECT", self.describe(), data[:16])
            self.close(AUTH_FAILURE, "Authorization Violation")
            return
        try:
            self.parser.feed(data)
        except ProtocolError as exc:
            log.error("%s - Router parser ERROR: %s", self.describe(), exc.detail)
            self.close(PROTOCOL_VIOLATION, exc.text)
        server = self.server_api
        if server.dirty:
            server.flush()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self._teardown(CLIENT_CLOSED)

    # -- output ---------------------------------------------------------------------

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

    # Write deadline, as nats-server treats routes: when the peer has not drained the
    # buffer for write_deadline, count a slow consumer once and keep the route if some
    # bytes went out meanwhile; close it only when nothing did.

    def _drained(self) -> int:
        return self.written - (self.io.get_write_buffer_size() if self.io is not None else 0)

    def pause_writing(self) -> None:
        deadline = self.server_api.config.write_deadline
        if self._deadline_timer is None and deadline > 0 and not self.closed:
            self._stuck_at = self._drained()
            self._deadline_timer = self.server_api.loop.call_later(deadline, self._deadline_passed)

    def resume_writing(self) -> None:
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        if self.slow:
            self.slow = False
            log.info("%s - Slow Consumer Recovered", self.describe())

    def _deadline_passed(self) -> None:
        self._deadline_timer = None
        if self.closed:
            return
        deadline = self.server_api.config.write_deadline
        pending = self.io.get_write_buffer_size() if self.io is not None else 0
        if not self.slow:
            self.slow = True
            self.server_api.slow_consumers += 1
            self.cluster.slow_consumers += 1
            log.warning("%s - Slow Consumer Detected: WriteDeadline of %ss exceeded with %d bytes "
                        "pending", self.describe(), deadline, pending)
        if self._drained() == self._stuck_at:
            self.close(SLOW_CONSUMER_DEADLINE, abort=True)
            return
        self._stuck_at = self._drained()
        self._deadline_timer = self.server_api.loop.call_later(deadline, self._deadline_passed)

    def forward(self, sender: Connection, account: Account, subject: bytes, reply: bytes | None,
                size: bytes, payload: bytes, hdr: int, queues: Sequence[bytes]) -> None:
        """One ``RMSG`` (or ``HMSG``) for the remote server, with the queue groups it serves."""
        if not self.registered:
            return
        name = account.name.encode()
        if hdr and not self.headers:  # a peer without headers gets the body only
            body = payload[hdr:]
            self.add_msg(msg_head(name, subject, reply, queues, 0, len(body) - 2), b"", body,
                         len(body) - 2)
            return
        self.add_msg(msg_head(name, subject, reply, queues, hdr, size), b"", payload, len(payload) - 2)

    def slow_consumer(self, reason: str) -> None:
        if self.closed:
            return
        pending = self.out_bytes + (self.io.get_write_buffer_size() if self.io is not None else 0)
        log.warning("%s - Route slow consumer: %d bytes pending, closing to resynchronise",
                    self.describe(), pending)
        if not self.slow:
            self.server_api.slow_consumers += 1
            self.cluster.slow_consumers += 1
        self.close(reason, abort=True)

    # -- closing --------------------------------------------------------------------

    def close(self, reason: str, err: str | None = None, *, abort: bool = False) -> None:
        if self.closed:
            return
        io = self.io
        if io is not None and not abort:
            if self.out:
                io.write(b"".join(self.out))
            if err is not None:
                io.write(b"-ERR '%s'\r\n" % err.encode())
        self._teardown(reason)
        if io is not None:
            if abort:
                io.abort()
            else:
                io.close()

    def _teardown(self, reason: str) -> None:
        self.closed = True
        self.close_reason = reason
        assert self.out is not None
        self.out.clear()
        for timer in (self._ping_timer, self._auth_timer, self._deadline_timer):
            if timer is not None:
                timer.cancel()
        if self.handshake is not None:
            self.handshake.cancel()
        self.drop_subs()
        remote = f" - Remote: {self.remote_name}" if self.remote_name else ""
        log.info("%s - Router connection closed: %s%s", self.describe(), reason, remote)
        self.cluster.route_closed(self)

    def drop_subs(self) -> None:
        """Forget the remote's interest (each subscription in its own account)."""
        for account, sub in self._interest.values():
            sub.closed = True
            account.remove_sub(sub)
        self._interest.clear()

    # -- timers -----------------------------------------------------------------------

    def _ping_tick(self) -> None:
        self._ping_timer = None
        if self.closed:
            return
        if self.pings_out + 1 > self.cluster.settings.ping_max:
            log.debug("%s - Stale Client Connection - Closing", self.describe())
            self.server_api.stale_connections += 1
            self.cluster.stale_connections += 1
            self.close(STALE)
            return
        self.pings_out += 1
        self._ping_sent = time.monotonic()
        self.send(PING)
        self._ping_timer = self.server_api.loop.call_later(self.cluster.ping_interval, self._ping_tick)

    def _auth_expired(self) -> None:
        self._auth_timer = None
        if not self.closed and not self.remote_id:
            self.close(AUTH_TIMEOUT, "Authentication Timeout")

    # -- the route protocol -------------------------------------------------------------

    def on_connect(self, options: dict[str, Any]) -> None:
        if self.solicited or self.remote_id:
            return  # nats-server ignores a CONNECT it does not expect
        if options.get("lang") is not None:
            self.close(INCORRECT_PORT, "attempted to connect to route port")
            return
        if options.get("gateway"):
            self.close("Wrong Gateway",
                       f"Rejecting connection from gateway {go_quote(str(options['gateway']))} on the Route port")
            return
        settings = self.cluster.settings
        if settings.user is not None and (options.get("user") != settings.user
                                          or options.get("pass") != settings.password):
            log.error("%s - authentication error - User %s", self.describe(),
                      go_quote(str(options.get("user") or "")))
            self.close(AUTH_FAILURE, "Authorization Violation")
            return
        cluster_name = options.get("cluster") or ""
        if not self.cluster.accept_cluster_name(str(cluster_name), bool(options.get("cluster_dynamic"))):
            ours = self.cluster.name
            text = f"Rejecting connection, cluster name {go_quote(cluster_name)} does not match {go_quote(ours)}"
            log.error("%s - %s", self.describe(), text)
            self.close(CLUSTER_NAME_CONFLICT, text)
            return
        self.remote_id = str(options.get("name") or "")
        self.headers = bool(options.get("headers"))
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None

    def on_info(self, info: dict[str, Any]) -> None:
        if self.registered:
            self.cluster.route_info_update(self, info)
            return
        if not self.solicited and not self.remote_id:
            # nats-server: the first operation on an accepted route must be CONNECT.
            self.close(AUTH_FAILURE, "Authorization Violation")
            return
        self.remote_info = info
        self.remote_id = str(info.get("server_id") or self.remote_id)
        self.remote_name = str(info.get("server_name") or self.remote_id)
        self.remote_cluster = str(info.get("cluster") or "")
        self.headers = bool(info.get("headers"))
        self.cluster.route_ready(self)

    def on_ping(self) -> None:
        self.queue(PONG)

    def on_pong(self) -> None:
        self.pings_out = 0
        if self._ping_sent:
            self.rtt = time.monotonic() - self._ping_sent

    def on_err(self, text: str) -> None:
        if text.startswith("Not possible to have a dedicated route for account"):
            # nats-server's extra connection for a pinned account ($SYS): natsd keeps one
            # route per server, and nats-server answers each attempt this way.
            log.debug("%s - %s (one route per server)", self.describe(), text)
        else:
            log.error("%s - Route Error %s", self.describe(), go_quote(text))
        self.close(PARSE_ERROR)

    def on_sub(self, origin: bytes | None, account: bytes, subject: bytes, queue: bytes | None,
               weight: int) -> None:
        if not self.registered:
            return
        acc = self.server_api.accounts.get(account.decode(errors="replace"))
        if acc is None:
            log.error("%s - Unknown account %s for remote subject %s", self.describe(),
                      go_quote(account), go_quote(subject))
            return
        key = (account, subject, queue)
        held = self._interest.get(key)
        if held is not None:
            if queue is not None and held[1].weight != weight:
                acc.reweigh(held[1], weight)
            return
        sid = b" ".join(p for p in (b"R", account, subject, queue) if p is not None)
        sub = Subscription(self, subject, queue, sid, weight)
        self._interest[key] = (acc, sub)
        acc.add_sub(sub)

    def on_unsub(self, origin: bytes | None, account: bytes, subject: bytes,
                 queue: bytes | None) -> None:
        held = self._interest.pop((account, subject, queue), None)
        if held is not None:
            held[1].closed = True
            held[0].remove_sub(held[1])

    def on_msg(self, origin: bytes | None, account: bytes, subject: bytes, reply: bytes | None,
               queues: Sequence[bytes] | None, size: bytes, payload: bytes, hdr: int) -> None:
        if not self.registered:
            return
        acc = self.server_api.accounts.get(account.decode(errors="replace"))
        if acc is None:
            log.debug("%s - Unknown account %s for routed message on subject: %s",
                      self.describe(), go_quote(account), go_quote(subject))
            return
        self.in_msgs += 1
        self.in_bytes += len(payload) - 2
        acc.deliver(self, subject, reply, size, payload, hdr, queues or ())

    # -- what monitoring shows ------------------------------------------------------------

    @property
    def interest_count(self) -> int:
        return len(self._interest)

    def interest_subjects(self) -> list[Subscription]:
        return [sub for _, sub in self._interest.values()]
