"""One leaf-node connection, either side of it.

A :class:`LeafLink` this server accepted (kind ``LEAF``) is a leaf of this
server, the hub: it sends ``INFO`` at once, wants ``CONNECT`` before anything
else, authenticates it, binds the link to an account and answers with the
``connect_info`` INFO and its interest. One this server dialed (kind
``HUB``) reads the hub's ``INFO``, upgrades to TLS if the hub requires it,
sends ``CONNECT`` and its interest once the ``connect_info`` INFO arrives.
Neither side ever sends ``INFO`` to negotiate compression: natsd declines it,
and nats-server then speaks plain text.

Both sides then exchange ``LS+``/``LS-`` (the interest of the bound account)
and ``LMSG``/``HMSG``. The other side's interest becomes subscriptions of
the link in the bound account; the router hands the link each matching
message once with the queue groups it should serve (:meth:`LeafLink.forward`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from natsd.conn.link import Link
from natsd.routing.account import Account
from natsd.routing.connection import Connection, Kind
from natsd.routing.subjects import has_wildcard
from natsd.routing.sublist import Subscription
from natsd.wire.errors import ProtocolError, go_quote

from .protocol import LeafParser, encode_json, msg_head

if TYPE_CHECKING:
    from .leafnodes import LeafNodes
    from .settings import Remote

log = logging.getLogger("natsd.leafnode")

FIRST_PING = 1.0
"""Seconds before the first PING (nats-server: 1 s plus jitter)."""
CONNECT_INFO_WAIT = 2.0
"""How long a leaf waits for the hub's ``connect_info`` INFO after its CONNECT."""
LOOP_DELAY = 30.0
"""Seconds before a leaf dials again after a loop (or the same cluster name)."""

# Close reasons, as nats-server's monitoring and logs name them.
AUTH_FAILURE = "Authentication Failure"
AUTH_TIMEOUT = "Authentication Timeout"
INCORRECT_PORT = "Incorrect Port"
CLUSTER_NAMES_IDENTICAL = "Cluster Names Identical"
DUPLICATE = "Duplicate Remote LeafNode Connection"
WRONG_GATEWAY = "Wrong Gateway"
STALE = "Stale Connection"
LOOP = "Protocol Violation"
MAX_PAYLOAD = "Maximum Message Payload Exceeded"

AUTH_VIOLATION = "Authorization Violation"

Key = tuple[bytes, "bytes | None"]


class LeafLink(Link):
    """A leaf-node connection (see the module docstring)."""

    __slots__ = ("leafnodes", "remote_cfg", "url", "remote_cluster", "remote_account", "nonce",
                 "registered", "connect_options", "remote_domain", "sent", "interest", "deny_pub",
                 "checker", "retry_delay", "carrier", "_timer", "_auth_task", "_info_seen")

    label = "Leafnode"
    kind_name = "Leafnode"

    def __init__(self, leafnodes: LeafNodes, *, solicited: bool, remote: Remote | None = None,
                 url: str | None = None, account: Account | None = None, carrier: str = "tcp") -> None:
        server = leafnodes.server
        super().__init__(server, account or server.global_account,
                         kind=Kind.HUB if solicited else Kind.LEAF, transport="leafnode",
                         solicited=solicited, log=log)
        self.leafnodes = leafnodes
        self.remote_cfg = remote
        self.url = url
        self.parser = LeafParser(self, server.config.max_payload)
        self.headers = True
        self.remote_cluster = ""
        self.remote_account = ""
        self.nonce = ""
        self.registered = False
        self.connect_options: dict[str, Any] = {}
        self.remote_domain = ""  # the other side's JetStream domain (its INFO or CONNECT)
        self.sent: dict[Key, int] = {}  # what this side announced to the other (LS+), by weight
        self.interest: dict[Key, Subscription] = {}  # the other side's interest, in our account
        self.deny_pub: Any = None  # subjects the other side does not want (CONNECT deny_pub)
        self.checker: Any = None  # the leaf user's permissions (a hub's link), as nats-server swaps them
        self.retry_delay = 0.0  # a pause the dialer keeps before the next attempt (a loop)
        self.carrier = carrier
        """``"websocket"`` when the link's bytes travel in WebSocket frames (TLS, if any, is the
        WebSocket connection's: the leaf protocol's own TLS upgrade is skipped, as nats-server does)."""
        self._timer: asyncio.TimerHandle | None = None
        self._auth_task: asyncio.Task[None] | None = None
        self._info_seen = False

    @property
    def is_hub_side(self) -> bool:
        """True when the other side is our leaf (we accepted the connection)."""
        return not self.solicited

    def counted(self, what: str) -> None:
        self.leafnodes.counts[what] += 1

    # -- the handshake ---------------------------------------------------------------------

    def begin(self) -> None:
        leafnodes = self.leafnodes
        leafnodes.connections.add(self)
        loop = self.server_api.loop
        if self.solicited:
            assert self.remote_cfg is not None
            self._timer = loop.call_later(self.remote_cfg.first_info_timeout, self._no_info)
            return
        self.nonce = leafnodes.new_nonce()
        self.write_now(encode_json(b"INFO", leafnodes.hub_info(self, first=True)))
        settings = leafnodes.settings
        timeout = settings.auth_timeout or 2.0
        if settings.tls is not None and self.carrier != "websocket":
            timeout = settings.auth_timeout or settings.tls.timeout + 1.0
            self.start_tls(settings.tls.context, server_side=True, server_hostname=None,
                           timeout=settings.tls.timeout, pinned=settings.tls.pinned_certs)
        self._timer = loop.call_later(timeout, self._auth_expired)

    def data_received(self, data: bytes) -> None:
        if (not self.closed and self.is_hub_side and not self.connect_options
                and data[:1] not in (b"C", b"c", b"")):
            # nats-server: the first operation on an accepted leaf connection must be CONNECT.
            log.error("%s - leafnode sent %r before CONNECT", self.describe(), data[:16])
            self.close(AUTH_FAILURE, AUTH_VIOLATION)
            return
        super().data_received(data)

    def _auth_expired(self) -> None:
        self._timer = None
        if not self.closed and not self.registered:
            log.error("%s - Authentication Timeout", self.describe())
            self.close(AUTH_TIMEOUT, "Authentication Timeout")

    def _no_info(self) -> None:
        self._timer = None
        if not self.closed and not self._info_seen:
            log.error("%s - no INFO from the remote within %ss", self.describe(),
                      self.remote_cfg.first_info_timeout if self.remote_cfg else "?")
            self.close(STALE)

    # hub side: CONNECT, authentication, registration

    def on_connect(self, options: dict[str, Any]) -> None:
        if self.solicited or self.connect_options:
            return  # a leaf never gets CONNECT; a second one is ignored
        self.connect_options = options
        if options.get("lang"):
            log.error("%s - attempted to connect to leaf node port", self.describe())
            self.close(INCORRECT_PORT, "attempted to connect to leaf node port")
            return
        gateway = options.get("gateway")
        if gateway:
            text = f"Rejecting connection from gateway {go_quote(str(gateway))} on the leafnode port"
            log.error("%s - %s", self.describe(), text)
            self.close(WRONG_GATEWAY, text)
            return
        if options.get("account") or options.get("new_account"):
            self.close(AUTH_FAILURE, AUTH_VIOLATION)
            return
        cluster = str(options.get("cluster") or "")
        if " " in cluster:
            self.close(INCORRECT_PORT, "cluster name cannot contain spaces")
            return
        if cluster and cluster == self.leafnodes.cluster_name():
            log.error("%s - remote leafnode has same cluster name", self.describe())
            self.close(CLUSTER_NAMES_IDENTICAL, "remote leafnode has same cluster name")
            return
        self.remote_cluster = cluster
        self.remote_name = str(options.get("name") or "")
        self.name = self.remote_name
        self.version = str(options.get("version") or "")
        self.remote_id = str(options.get("server_id") or self.remote_name)
        self.remote_account = str(options.get("remote_account") or "")
        self.remote_domain = str(options.get("domain") or "")
        self.headers = bool(options.get("headers"))
        deny = options.get("deny_pub")
        if isinstance(deny, list) and deny:
            self.deny_pub = self.leafnodes.subject_set([str(s) for s in deny])
        assert self.io is not None
        self.io.pause_reading()
        self.parser.paused = True  # what came with the CONNECT waits for the verdict
        self._auth_task = self.server_api.loop.create_task(self._authenticate(options))

    async def _authenticate(self, options: dict[str, Any]) -> None:
        try:
            verdict = await self.leafnodes.authenticate(self, options)
        finally:
            self._auth_task = None
        if self.closed:
            return
        if verdict is None or not verdict.ok:
            user = options.get("user")
            if user:
                log.error("%s - authentication error - User %s", self.describe(), go_quote(str(user)))
            else:
                log.error("%s - authentication error", self.describe())
            self.close(AUTH_FAILURE, AUTH_VIOLATION)
            return
        self.auth_result = verdict
        self.user = verdict.user
        if verdict.permissions is not None:
            self.checker = verdict.permissions.checker()
        account = self.server_api.lookup_account(verdict.account or "$G", create=True)
        self.account = account
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.leafnodes.register(self)
        if self.closed:
            return
        self.write_now(encode_json(b"INFO", self.leafnodes.hub_info(self, first=False)))
        self.registered = True
        self.leafnodes.send_burst(self)
        self.start_pings(FIRST_PING)
        if self.io is not None:
            self.io.resume_reading()
        try:
            self.parser.resume()
        except ProtocolError as exc:
            log.error("%s - %s parser ERROR: %s", self.describe(), self.kind_name, exc.detail)
            self.close("Protocol Violation", exc.text)
        self.server_api.flush()

    # leaf side: the hub's INFO, our CONNECT, the connect_info INFO

    def on_info(self, info: dict[str, Any]) -> None:
        if self.is_hub_side:
            return  # a leaf's INFO (compression negotiation): natsd does not compress
        if not self._info_seen:
            self._first_info(info)
        elif info.get("connect_info") and not self.registered:
            self._connect_info(info)
        else:
            self.leafnodes.hub_urls_update(self, info)

    def _first_info(self, info: dict[str, Any]) -> None:
        self._info_seen = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not info.get("client_id") or info.get("leafnode_urls") is None:
            log.error("%s - attempted to connect to wrong port", self.describe())
            self.close(INCORRECT_PORT)
            return
        self.remote_info = info
        self.remote_id = str(info.get("server_id") or "")
        self.remote_name = str(info.get("server_name") or self.remote_id)
        self.name = self.remote_name
        self.version = str(info.get("version") or "")
        self.remote_cluster = str(info.get("cluster") or "")
        self.nonce = str(info.get("nonce") or "")
        self.remote_domain = str(info.get("domain") or "")
        self.headers = bool(info.get("headers"))
        self.leafnodes.hub_urls_update(self, info)
        remote = self.remote_cfg
        assert remote is not None
        if info.get("tls_required") and self.carrier != "websocket":
            context = self.leafnodes.dialing_context(remote)
            host = self.leafnodes.url_host(self.url)
            timeout = remote.tls.timeout if remote.tls is not None else 2.0
            pinned = remote.tls.pinned_certs if remote.tls is not None else frozenset()
            self.start_tls(context, server_side=False, server_hostname=host, timeout=timeout,
                           pinned=pinned)
            return
        self._send_connect()

    def tls_ready(self) -> None:
        if self.solicited:
            self._send_connect()

    def _send_connect(self) -> None:
        self.write_now(encode_json(b"CONNECT", self.leafnodes.connect_options(self)))
        if self.remote_info.get("info_on_connect"):
            self._timer = self.server_api.loop.call_later(CONNECT_INFO_WAIT, self._no_connect_info)
        else:
            self._finish()

    def _no_connect_info(self) -> None:
        self._timer = None
        if not self.closed and not self.registered:
            log.error("%s - Stale Leaf Node Connection - Closing", self.describe())
            self.close(STALE, "Stale Leaf Node Connection - Closing")

    def _connect_info(self, info: dict[str, Any]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.remote_account = str(info.get("remote_account") or "")
        imports, exports = info.get("import"), info.get("export")
        if isinstance(imports, dict) or isinstance(exports, dict):
            self.checker = _permissions(imports, exports).checker()
        self.leafnodes.hub_urls_update(self, info)
        self._finish()

    def _finish(self) -> None:
        if self.leafnodes.is_loop(self):
            self.loop_detected()
            return
        self.leafnodes.register(self)
        if self.closed:
            return
        self.registered = True
        self.leafnodes.send_burst(self)
        self.start_pings(FIRST_PING)
        self.server_api.flush()

    def on_err(self, text: str) -> None:
        # nats-server does not close a leaf connection on -ERR: the sender closes it.
        log.error("%s - Leafnode Error %s", self.describe(), go_quote(text))
        if "Loop detected" in text:
            log.error("%s - %s", self.describe(), text)
            self.retry_delay = LOOP_DELAY
            self.close(LOOP)
        elif "remote leafnode has same cluster name" in text:
            log.error("%s - Leafnode connection dropped with same cluster name error. "
                      "Delaying attempt to reconnect for 30s", self.describe())
            self.retry_delay = LOOP_DELAY
            self.close(CLUSTER_NAMES_IDENTICAL)

    def loop_detected(self) -> None:
        text = (f'Loop detected for leafnode account="{self.account.name}". '
                f"Delaying attempt to reconnect for {int(LOOP_DELAY)}s")
        log.error("%s - %s", self.describe(), text)
        if self.solicited:
            self.retry_delay = LOOP_DELAY
        self.close(LOOP, text)

    # -- interest and messages ------------------------------------------------------------

    def on_sub(self, subject: bytes, queue: bytes | None, weight: int) -> None:
        if not self.registered:
            if self.is_hub_side:
                self.close(AUTH_FAILURE, AUTH_VIOLATION)
            return
        if subject == self.leafnodes.lds(self.account):
            self.loop_detected()
            return
        if self.leafnodes.js_denied(self, subject):
            return  # each side's JetStream API stays on its side (nats-server denies it both ways)
        if self.solicited and self.leafnodes.denied(self, "exports", subject):
            return  # deny_exports: nothing of ours goes there
        if self.checker is not None and not has_wildcard(subject):
            if self.solicited:
                if not self.checker.can_publish(subject):
                    return  # the hub's interest where its user may not receive: ignored
            elif not self.checker.can_subscribe(subject, queue):
                self._violation(f"Permissions Violation for Subscription to {go_quote(subject)}",
                                "Subscription", subject)
                return
        key = (subject, queue)
        held = self.interest.get(key)
        if held is not None:
            if queue is not None and held.weight != weight:
                self.account.reweigh(held, weight)
                self.leafnodes.leaf_changed(self, key)
            return
        sid = b"L " + subject if queue is None else b"L " + subject + b" " + queue
        sub = Subscription(self, subject, queue, sid, weight)
        self.interest[key] = sub
        self.account.add_sub(sub)
        self.leafnodes.leaf_changed(self, key)

    def on_unsub(self, subject: bytes, queue: bytes | None) -> None:
        sub = self.interest.pop((subject, queue), None)
        if sub is not None:
            sub.closed = True
            self.account.remove_sub(sub)
            self.leafnodes.leaf_changed(self, (subject, queue))

    def on_msg(self, subject: bytes, reply: bytes | None, queues: Sequence[bytes], size: bytes,
               payload: bytes, hdr: int) -> None:
        if not self.registered:
            return
        if self.checker is not None and not self.solicited \
                and not subject.startswith((b"_R_.", b"$JS.ACK.")) and not self.checker.can_publish(subject):
            self._violation(f"Permissions Violation for Publish to {go_quote(subject)}", "Publish", subject)
            return
        if self.solicited and self.leafnodes.denied(self, "imports", subject):
            return  # deny_imports: dropped, as nats-server's leaf does
        if self.leafnodes.js_denied(self, subject):
            return  # the other side's clients do not reach our JetStream API but by its domain
        self.in_msgs += 1
        self.in_bytes += len(payload) - 2
        self.account.deliver_from_server(self, subject, reply, size, payload, hdr, queues)

    def _violation(self, text: str, what: str, subject: bytes) -> None:
        log.error("%s - %s Violation on %s - Check other side configuration", self.describe(), what,
                  go_quote(subject))
        self.close("Protocol Violation", text)

    def forward(self, sender: Connection, account: Account, subject: bytes, reply: bytes | None,
                size: bytes, payload: bytes, hdr: int, queues: Sequence[bytes]) -> None:
        """One ``LMSG`` (or ``HMSG``) for the other side, with the queue groups it serves."""
        if not self.registered:
            return
        if sender.kind in (Kind.LEAF, Kind.HUB) and self.remote_cluster and \
                getattr(sender, "remote_cluster", "") == self.remote_cluster:
            return  # never back into the cluster the message came from
        if self.deny_pub is not None and self.deny_pub.match(subject):
            return
        if self.solicited and (self.leafnodes.denied(self, "exports", subject)
                               or self.leafnodes.denied(self, "imports", subject)):
            return
        if self.checker is not None:
            # a hub: what the leaf user may not receive; a leaf: what the hub's user may not
            # receive or publish (the hub's connect_info "import" and "export")
            if not self.checker.can_subscribe(subject):
                return
            if self.solicited and not self.checker.can_publish(subject):
                return
        if self.leafnodes.js_denied_out(self, subject):
            return
        if hdr and not self.headers:  # a peer without headers gets the body only
            body = payload[hdr:]
            self.add_msg(msg_head(subject, reply, queues, 0, len(body) - 2), b"", body, len(body) - 2)
            return
        self.add_msg(msg_head(subject, reply, queues, hdr, size), b"", payload, len(payload) - 2)

    # -- closing --------------------------------------------------------------------------

    def link_closed(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._auth_task is not None:
            self._auth_task.cancel()
        for sub in self.interest.values():
            sub.closed = True
            self.account.remove_sub(sub)
        keys = list(self.interest)
        self.interest.clear()
        self.leafnodes.link_closed(self, keys)

    # -- what monitoring shows ------------------------------------------------------------

    def leafz(self, with_subs: bool) -> dict[str, Any]:
        """This link's entry in ``/leafz``."""
        entry: dict[str, Any] = {
            "id": self.cid, "name": self.remote_name, "is_spoke": self.solicited,
            "account": self.account.name, "ip": self.remote[0] if self.remote else "",
            "port": self.remote[1] if self.remote else 0,
            "rtt": f"{self.rtt * 1e6:.0f}µs" if self.rtt else "0s",
            "in_msgs": self.in_msgs, "out_msgs": self.out_msgs, "in_bytes": self.in_bytes,
            "out_bytes": self.out_bytes_total, "subscriptions": len(self.interest),
        }
        if with_subs and self.interest:
            entry["subscriptions_list"] = [s.subject.decode(errors="replace") for s in self.interest.values()]
        entry["compression"] = "off"
        return entry


def _permissions(imports: Any, exports: Any) -> Any:
    """The hub user's permissions from its ``connect_info`` INFO (``import``: subscribe,
    ``export``: publish, each nats-server's ``{"allow": [...], "deny": [...]}``)."""
    from natsd.security.permissions import Permissions

    def part(obj: Any, key: str) -> tuple[str, ...] | None:
        if not isinstance(obj, dict) or not isinstance(obj.get(key), list):
            return None
        return tuple(str(s) for s in obj[key])

    return Permissions(publish_allow=part(exports, "allow"), publish_deny=part(exports, "deny") or (),
                       subscribe_allow=part(imports, "allow"), subscribe_deny=part(imports, "deny") or ())
