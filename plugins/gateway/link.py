"""One gateway connection: outbound (this server dialed it) or inbound.

As nats-server's gateways: messages flow only from the dialer to the
acceptor, interest only the other way. The acceptor sends ``INFO`` at once;
the dialer answers ``CONNECT`` and its own ``INFO``. Then the acceptor sends
its whole cluster's interest, account by account, between the interest
commands 2 and 3 (interest-only mode from the first message, as nats-server
2.15 runs every gateway), and ``RS+``/``RS-`` as it changes. The dialer
keeps what it heard per account and sends a message only where the other
cluster has interest.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from natsd.conn.link import Link
from natsd.routing.account import Account
from natsd.routing.connection import Connection, Kind
from natsd.routing.sublist import Sublist, Subscription
from natsd.wire.errors import go_quote
from natsd.wire.routed import RouteParser, encode_json

if TYPE_CHECKING:
    from .gateways import Gateways
    from .settings import RemoteGateway

log = logging.getLogger("natsd.gateway")

FIRST_PING = 1.0
CMD_GOSSIP, CMD_ALL_SUBS_START, CMD_ALL_SUBS_COMPLETE = 1, 2, 3

# Close reasons, as nats-server's monitoring and logs name them.
AUTH_FAILURE = "Authentication Failure"
AUTH_TIMEOUT = "Authentication Timeout"
INCORRECT_PORT = "Incorrect Port"
WRONG_GATEWAY = "Wrong Gateway"
DUPLICATE_SERVER_NAME = "Duplicate Server Name"
PROTOCOL_VIOLATION = "Protocol Violation"
PARSE_ERROR = "Parse Error"
AUTH_VIOLATION = "Authorization Violation"


class AccountInterest:
    """What an outbound gateway heard of one account of the other cluster."""

    __slots__ = ("mode", "subs", "held", "queues")

    def __init__(self, mode: str) -> None:
        self.mode = mode  # "Transitioning" after command 2, "Interest-Only" after 3
        self.subs = Sublist()
        self.held: dict[tuple[bytes, bytes | None], Subscription] = {}
        self.queues = 0


class GatewayLink(Link):
    """A gateway connection (see the module docstring)."""

    __slots__ = ("gateways", "remote_cfg", "url", "remote_gateway", "registered", "connect_options",
                 "interest", "switched", "retry", "_timer")

    label = "Gateway"
    kind_name = "Gateway"

    def __init__(self, gateways: Gateways, *, solicited: bool, remote: RemoteGateway | None = None,
                 url: str | None = None) -> None:
        server = gateways.server
        super().__init__(server, server.global_account, kind=Kind.GATEWAY, transport="gateway",
                         solicited=solicited, log=log)
        self.gateways = gateways
        self.remote_cfg = remote
        self.url = url
        self.parser = RouteParser(self)
        self.headers = True
        self.remote_gateway = remote.name if remote is not None else ""
        self.registered = False
        self.connect_options: dict[str, Any] = {}
        self.interest: dict[str, AccountInterest] = {}  # outbound: per account, what they want
        self.switched: set[str] = set()  # inbound: accounts sent in full (commands 2 and 3)
        self.retry = solicited
        self._timer: asyncio.TimerHandle | None = None

    @property
    def ping_interval(self) -> float:
        return min(self.server_api.config.ping_interval, 15.0)

    @property
    def write_deadline(self) -> float:
        return self.gateways.settings.write_deadline or self.server_api.config.write_deadline

    def counted(self, what: str) -> None:
        self.gateways.counts[what] += 1

    # -- the handshake -----------------------------------------------------------------------

    def begin(self) -> None:
        gateways = self.gateways
        gateways.connections.add(self)
        tls = gateways.tls_for(self.remote_cfg)
        if tls is not None:  # TLS first, as nats-server's gateways
            context = gateways.dialing_context(self.remote_cfg) if self.solicited else tls.context
            host = gateways.url_host(self.url) if self.solicited else None
            self.start_tls(context, server_side=not self.solicited, server_hostname=host,
                           timeout=tls.timeout, pinned=tls.pinned_certs)
            return
        self._start_protocol()

    def tls_ready(self) -> None:
        self._start_protocol()

    def _start_protocol(self) -> None:
        loop = self.server_api.loop
        if self.solicited:
            log.info("%s - Creating outbound gateway connection to %s", self.describe(),
                     go_quote(self.remote_gateway))
            return  # the acceptor speaks first
        log.info("%s - Processing inbound gateway connection", self.describe())
        self.write_now(self.gateways.info_line())
        self._timer = loop.call_later(self.gateways.settings.auth_timeout, self._auth_expired)

    def _auth_expired(self) -> None:
        self._timer = None
        if not self.closed and not self.connect_options:
            self.close(AUTH_TIMEOUT, "Authentication Timeout")

    def data_received(self, data: bytes) -> None:
        if (not self.closed and not self.solicited and not self.connect_options
                and data[:1] not in (b"C", b"c", b"")):
            log.error("%s - authentication error", self.describe())
            self.close(AUTH_FAILURE, AUTH_VIOLATION)
            return
        super().data_received(data)

    def on_connect(self, options: dict[str, Any]) -> None:
        if self.solicited or self.connect_options:
            return
        settings = self.gateways.settings
        if settings.user is not None and (options.get("user") != settings.user
                                          or options.get("pass") != settings.password):
            log.error("%s - authentication error - User %s", self.describe(),
                      go_quote(str(options.get("user") or "")))
            self.close(AUTH_FAILURE, AUTH_VIOLATION)
            return
        gateway = str(options.get("gateway") or "")
        if not gateway:  # after authentication, as nats-server checks it
            log.error("%s - attempted to connect to gateway port", self.describe())
            self.close(INCORRECT_PORT, "attempted to connect to gateway port")
            return
        if settings.reject_unknown and not self.gateways.known(gateway):
            log.error("%s - Rejecting connection from gateway %s", self.describe(), go_quote(gateway))
            self.close(WRONG_GATEWAY, f"Connection to gateway {go_quote(gateway)} rejected")
            return
        self.connect_options = options
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.start_pings(FIRST_PING)

    def on_info(self, info: dict[str, Any]) -> None:
        gateway = str(info.get("gateway") or "")
        if self.solicited:
            if not self.registered:
                self._acceptor_info(info, gateway)
            elif gateway != self.remote_gateway:
                if info.get("gateway_cmd") == CMD_GOSSIP:
                    self.gateways.implicit(info)
                return
            else:
                self._command(info)
            return
        if self.registered or not self.connect_options:
            return  # later INFOs on an inbound connection are ignored, as nats-server does
        self.remote_gateway = gateway
        self.remote_id = str(info.get("server_id") or "")
        self.remote_name = str(info.get("server_name") or self.remote_id)
        if self.remote_name and self.remote_name == self.server_api.name:
            log.error("%s - Remote server has a duplicate name: %s", self.describe(),
                      go_quote(self.remote_name))
            self.close(DUPLICATE_SERVER_NAME)
            return
        self.registered = True
        self.gateways.inbound_registered(self, info)

    def _acceptor_info(self, info: dict[str, Any], gateway: str) -> None:
        if not gateway:
            text = f"Attempt to connect to gateway {go_quote(self.remote_gateway)} using wrong port"
            log.error("%s - %s", self.describe(), text)
            self.retry = True
            self.close(INCORRECT_PORT, text)
            return
        if gateway != self.remote_gateway:
            log.error("%s - Failing connection to gateway %s, remote gateway name is %s",
                      self.describe(), go_quote(self.remote_gateway), go_quote(gateway))
            text = (f"Connection from {go_quote(self.gateways.name)} rejected, wanted to connect to "
                    f"{go_quote(self.remote_gateway)}, this is {go_quote(gateway)}")
            self.close(WRONG_GATEWAY, text)
            return
        self.remote_id = str(info.get("server_id") or "")
        self.remote_name = str(info.get("server_name") or self.remote_id)
        if self.remote_name and self.remote_name == self.server_api.name:
            log.error("%s - Remote server has a duplicate name: %s", self.describe(),
                      go_quote(self.remote_name))
            self.retry = False
            self.close(DUPLICATE_SERVER_NAME)
            return
        self.remote_info = info
        self.headers = bool(info.get("headers"))
        self.gateways.learn_urls(self.remote_gateway, info)
        self.write_now(encode_json(b"CONNECT", self.gateways.connect_options(self), blank=False))
        self.write_now(self.gateways.info_line())
        if not self.gateways.outbound_registered(self):
            return
        self.registered = True
        self.start_pings(FIRST_PING)

    def _command(self, info: dict[str, Any]) -> None:
        cmd = info.get("gateway_cmd")
        if cmd in (CMD_ALL_SUBS_START, CMD_ALL_SUBS_COMPLETE):
            payload = info.get("gateway_cmd_payload")
            try:
                account = base64.b64decode(str(payload), validate=True).decode() if payload else ""
            except ValueError:
                account = ""
            if not account:
                which = "start" if cmd == CMD_ALL_SUBS_START else "complete"
                text = f"Account absent from receive-all-subscriptions-{which} command"
                log.error("%s - %s", self.describe(), text)
                self.close(PROTOCOL_VIOLATION, text)
                return
            entry = self.interest.get(account)
            if cmd == CMD_ALL_SUBS_START:
                if entry is None:
                    self.interest[account] = AccountInterest("Transitioning")
                else:
                    entry.mode = "Transitioning"
            elif entry is not None:
                entry.mode = "Interest-Only"
        elif cmd == CMD_GOSSIP:
            self.gateways.implicit(info)
        elif cmd:
            log.warning("Received unknown command %s from gateway %s", cmd, go_quote(self.remote_gateway))
        else:
            self.gateways.learn_urls(self.remote_gateway, info)

    # -- interest (outbound: what the other cluster wants) --------------------------------------

    def on_sub(self, origin: bytes | None, account: bytes, subject: bytes, queue: bytes | None,
               weight: int) -> None:
        if not self.solicited:
            log.error("%s - Received RS+ from gateway on inbound connection", self.describe())
            self.close(PROTOCOL_VIOLATION)
            return
        name = account.decode(errors="replace")
        entry = self.interest.get(name)
        if entry is None:
            if queue is None:
                return  # before command 2 a plain RS+ means nothing (interest-only mode)
            entry = self.interest[name] = AccountInterest("Interest-Only")
        key = (subject, queue)
        if key in entry.held:
            return
        sub = entry.held[key] = Subscription(None, subject, queue, b"G", 1)  # a private sublist
        entry.subs.insert(sub)
        if queue is not None:
            entry.queues += 1

    def on_unsub(self, origin: bytes | None, account: bytes, subject: bytes,
                 queue: bytes | None) -> None:
        if not self.solicited:
            log.error("%s - Received RS- from gateway on inbound connection", self.describe())
            self.close(PROTOCOL_VIOLATION)
            return
        entry = self.interest.get(account.decode(errors="replace"))
        if entry is None:
            return
        sub = entry.held.pop((subject, queue), None)
        if sub is not None:
            entry.subs.remove(sub)
            if queue is not None:
                entry.queues -= 1

    def on_account(self, account: bytes, interested: bool) -> None:
        if not self.solicited:
            return  # never sent to an acceptor
        name = account.decode(errors="replace")
        if interested:
            self.interest.pop(name, None)
        # A-: in interest-only mode nothing is sent for an account without interest anyway

    # -- messages (inbound: from the other cluster) -----------------------------------------------

    def on_msg(self, origin: bytes | None, account: bytes, subject: bytes, reply: bytes | None,
               queues: Sequence[bytes] | None, size: bytes, payload: bytes, hdr: int) -> None:
        if not self.registered or self.solicited:
            return
        acc = self.server_api.accounts.get(account.decode(errors="replace"))
        if acc is None:
            log.debug("%s - Unknown account %s for gateway message on subject: %s", self.describe(),
                      go_quote(account), go_quote(subject))
            return
        self.in_msgs += 1
        self.in_bytes += len(payload) - 2
        if subject.startswith(b"_GR_.") and len(subject) > 19:
            if subject[5:11] != self.gateways.cluster_hash:
                return  # a reply for another cluster
            subject = subject[19:]
        acc.deliver_from_server(self, subject, reply, size, payload, hdr, queues or ())

    def on_err(self, text: str) -> None:
        log.error("%s - Gateway Error %s", self.describe(), go_quote(text))
        self.close(PARSE_ERROR)

    def forward(self, sender: Connection, account: Account, subject: bytes, reply: bytes | None,
                size: bytes, payload: bytes, hdr: int, queues: Sequence[bytes]) -> None:
        """Gateways receive through the account's egress, never through the sublist."""

    # -- closing ------------------------------------------------------------------------------------

    def link_closed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.gateways.link_closed(self)
