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
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from natsd.conn.link import Link
from natsd.routing.account import Account
from natsd.routing.connection import Connection, Kind
from natsd.routing.sublist import Subscription
from natsd.wire.errors import go_quote
from natsd.wire.routed import RouteParser, encode_json, msg_head

if TYPE_CHECKING:
    from .cluster import Cluster

log = logging.getLogger("natsd.cluster")

FIRST_PING = 1.0
"""Seconds before the first PING on a new route (nats-server: 1 s plus jitter)."""

# Close reasons, as nats-server's monitoring and logs name them (more in natsd.conn.link).
DUPLICATE_ROUTE = "Duplicate Route"
CLUSTER_NAME_CONFLICT = "Cluster Name Conflict"
AUTH_FAILURE = "Authentication Failure"
AUTH_TIMEOUT = "Authentication Timeout"
INCORRECT_PORT = "Incorrect Port"
PARSE_ERROR = "Parse Error"


class Route(Link):
    """A route connection (either side of it)."""

    __slots__ = ("cluster", "url", "implicit", "implicit_auth", "remote_cluster", "registered",
                 "_auth_timer", "_interest", "retry", "gossip_mode")

    label = "Route"
    kind_name = "Router"

    def __init__(self, cluster: Cluster, *, solicited: bool, url: str | None = None,
                 implicit: bool = False, implicit_auth: bool = False, gossip_mode: int = 0) -> None:
        server = cluster.server
        super().__init__(server, server.global_account, kind=Kind.ROUTER, transport="route",
                         solicited=solicited, log=log)
        self.cluster = cluster
        self.parser = RouteParser(self)
        self.url = url
        self.implicit = implicit
        self.implicit_auth = implicit_auth
        self.gossip_mode = gossip_mode
        self.headers = True
        self.remote_cluster = ""
        self.registered = False
        self.retry = solicited
        self._auth_timer: asyncio.TimerHandle | None = None
        # the remote's interest: key -> (account, subscription)
        self._interest: dict[tuple[bytes, bytes, bytes | None], tuple[Account, Subscription]] = {}

    # -- the link's life ---------------------------------------------------------------

    @property
    def ping_interval(self) -> float:
        return self.cluster.ping_interval

    @property
    def ping_max(self) -> int:
        return self.cluster.settings.ping_max

    def counted(self, what: str) -> None:
        if what == "slow":
            self.cluster.slow_consumers += 1
        else:
            self.cluster.stale_connections += 1

    def begin(self) -> None:
        self.cluster.connections.add(self)
        tls = self.cluster.settings.tls
        if tls is None:
            self._start_protocol()
            return
        # TLS from the first byte, as nats-server's routes: no plaintext INFO.
        context = self.cluster.dialing_context if self.solicited else tls.context
        assert context is not None
        host = urlsplit(self.url).hostname if self.solicited and self.url else None
        self.start_tls(context, server_side=not self.solicited, server_hostname=host,
                       timeout=tls.timeout, pinned=tls.pinned_certs)

    def tls_ready(self) -> None:
        self._start_protocol()

    def _start_protocol(self) -> None:
        """CONNECT and INFO, the ping and authentication timers."""
        cluster = self.cluster
        if self.solicited:
            self.write_now(encode_json(b"CONNECT", cluster.connect_options(self.url, self.implicit_auth)))
            self.write_now(encode_json(b"INFO", cluster.route_info(self)))
        else:
            self.write_now(encode_json(b"INFO", cluster.route_info(self)))
            self._auth_timer = self.server_api.loop.call_later(cluster.settings.auth_timeout,
                                                               self._auth_expired)
        self.start_pings(FIRST_PING)

    def data_received(self, data: bytes) -> None:
        if not self.closed and not self.solicited and not self.remote_id \
                and data[:1] not in (b"C", b"c", b""):
            # nats-server: the first operation on an accepted route must be CONNECT.
            log.error("%s - route sent %r before CONNECT", self.describe(), data[:16])
            self.close(AUTH_FAILURE, "Authorization Violation")
            return
        super().data_received(data)

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

    def link_closed(self) -> None:
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        self.drop_subs()
        self.cluster.route_closed(self)

    def drop_subs(self) -> None:
        """Forget the remote's interest (each subscription in its own account)."""
        for account, sub in self._interest.values():
            sub.closed = True
            account.remove_sub(sub)
        self._interest.clear()

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

    def on_err(self, text: str) -> None:
        if text.startswith("Not possible to have a dedicated route for account"):
            # nats-server's extra connection for a pinned account ($SYS): natsd keeps one
            # route per server, and nats-server answers each attempt this way.
            log.debug("%s - %s (one route per server)", self.describe(), text)
        else:
            log.error("%s - Route Error %s", self.describe(), go_quote(text))
        self.close(PARSE_ERROR)

    def on_account(self, account: bytes, interested: bool) -> None:
        pass  # a gateway's signal: nats-server ignores it on routes

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
        acc.deliver_from_server(self, subject, reply, size, payload, hdr, queues or ())

    # -- what monitoring shows ------------------------------------------------------------

    @property
    def interest_count(self) -> int:
        return len(self._interest)

    def interest_subjects(self) -> list[Subscription]:
        return [sub for _, sub in self._interest.values()]
