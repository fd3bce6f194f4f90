"""Gateways of one server: the listener, an outbound connection per remote cluster, egress.

:class:`Gateways` listens on ``gateway { listen }`` for the other clusters'
servers and dials one server of every remote cluster (configured, or learned
from gossip and from inbound connections). It is:

- **an interest listener** counting the whole cluster's interest (local
  clients and in-process clients, route and leaf-node interest), which every
  inbound connection announces: in full per account between the interest
  commands when the connection registers (and for an account first seen
  later), then ``RS+``/``RS-`` for a subject's first and last subscription
  and a queue group's first and last member (weight 1, as nats-server);
- **the accounts' egress**: a message published here (by a client, an
  in-process client or a leaf node) goes to each remote cluster that has
  interest, once, over this server's outbound connection to it; each queue
  group not served in this cluster goes to the one gateway with the lowest
  round trip that has a member. A reply subject goes out as
  ``_GR_.<cluster hash>.<server hash>.<reply>`` so that the answer comes
  straight back whether or not the reply's interest has crossed yet; a
  message to such a subject goes straight to the cluster it names.

A message that arrives from a gateway is delivered in this cluster (one hop
over routes) and never sent on to another gateway.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from natsd import NATS_SERVER_VERSION
from natsd.config.tls import TLSSettings, dialing_context
from natsd.conn.link import LINK_PROTO, SERVER_SHUTDOWN
from natsd.plugin.contracts import ServerAPI
from natsd.routing.account import Account
from natsd.routing.connection import ANNOUNCED_KINDS, Kind
from natsd.routing.deliver import traced_frame
from natsd.routing.stats import rfc3339
from natsd.routing.sublist import SublistResult
from natsd.wire.routed import encode_json, encode_sub, encode_unsub, msg_head

from .link import CMD_ALL_SUBS_COMPLETE, CMD_ALL_SUBS_START, CMD_GOSSIP, GatewayLink
from .settings import GatewaySettings, RemoteGateway

log = logging.getLogger("natsd.gateway")

HASH_DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
SOLICIT_DELAY = 1.0
"""nats-server dials its gateways a second after start, so that its cluster forms first."""
RECONNECT_DELAY = 1.0
MAX_BACKOFF = 30.0
Key = tuple[bytes, "bytes | None"]


def hash6(text: str) -> bytes:
    """nats-server's ``getHashSize(text, 6)``: six of 62 digits from SHA-256."""
    digest = hashlib.sha256(text.encode()).digest()
    return bytes(HASH_DIGITS[b % 62] for b in digest[:6])


class Gateways:
    """The gateway connections of one server (see the module docstring)."""

    def __init__(self, server: ServerAPI, settings: GatewaySettings) -> None:
        self.server = server
        self.settings = settings
        self.name = settings.name
        self.cluster_hash = hash6(settings.name)
        self.kinds = ANNOUNCED_KINDS | {Kind.ROUTER, Kind.LEAF, Kind.HUB}
        self.connections: set[GatewayLink] = set()
        self.outbound: dict[str, GatewayLink] = {}
        self.inbound: set[GatewayLink] = set()
        self.remotes: dict[str, RemoteGateway] = {g.name: g for g in settings.gateways}
        self.learned: dict[str, list[str]] = {}
        self.counts = {"slow": 0, "stale": 0}
        self.closed_traffic = [0, 0, 0, 0]
        self.host = settings.host
        self.port = settings.port
        self._listener: asyncio.AbstractServer | None = None
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._stopping = False
        self._server_hash = b""
        self._prefix = b""
        self._groups: dict[str, set[Key]] = {}  # queue groups announced, per account

    # -- lifecycle (a Listener) ---------------------------------------------------------------

    async def start(self) -> None:
        loop = self.server.loop
        if "cluster" not in self.server.config.blocks:
            # nats-server names the cluster of a server with a gateway and no cluster after the
            # gateway: its INFO and events carry it
            self.server.update_info(cluster=self.name)
        port = self.settings.port if self.settings.port > 0 else 0
        try:
            self._listener = await loop.create_server(
                lambda: GatewayLink(self, solicited=False), host=self.settings.host or None,
                port=port, reuse_address=True)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen for gateway connections on "
                          f"{self.settings.host}:{port}: {exc.strerror}") from exc
        self.host, self.port = self._listener.sockets[0].getsockname()[:2]
        self._server_hash = hash6(self.server.server_id)
        self._prefix = b"_GR_." + self.cluster_hash + b"." + self._server_hash + b"."
        self.server.ports["gateway"] = [f"nats://{self.own_url()}"]
        log.info("Gateway name is %s", self.name)
        log.info("Listening for gateways connections on %s:%d", self.host, self.port)
        self.server.add_egress(self.egress)
        loop.call_later(SOLICIT_DELAY, self._solicit)

    def _solicit(self) -> None:
        for remote in list(self.remotes.values()):
            self._dial(remote)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._dialers.values():
            task.cancel()
        self.server.remove_egress(self.egress)
        if self._listener is not None:
            self._listener.close()
        for link in list(self.connections):
            link.close(SERVER_SHUTDOWN)
        if self._listener is not None:
            await self._listener.wait_closed()

    # -- handshake helpers ------------------------------------------------------------------------

    def own_url(self) -> str:
        if self.settings.advertise:
            return self.settings.advertise.split("://")[-1]
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def info_line(self) -> bytes:
        """This server's gateway INFO (nats-server's: no blank before CRLF)."""
        server, settings = self.server, self.settings
        host, _, port = self.own_url().rpartition(":")
        info: dict[str, Any] = {
            "server_id": server.server_id, "server_name": server.name,
            "version": NATS_SERVER_VERSION, "proto": LINK_PROTO, "go": "", "host": host.strip("[]"),
            "port": int(port), "headers": True,
        }
        if settings.user is not None:
            info["auth_required"] = True
        if settings.tls is not None:
            info["tls_required"] = info["tls_verify"] = True
        info.update({"max_payload": server.config.max_payload, "gateway": self.name,
                     "gateway_urls": [self.own_url()], "gateway_url": self.own_url(),
                     "gateway_nrp": True, "gateway_iom": True})
        return encode_json(b"INFO", info, blank=False)

    def command_line(self, cmd: int, account: str) -> bytes:
        info = {"server_id": "", "server_name": "", "version": "", "proto": 0, "go": "", "host": "",
                "port": 0, "headers": False, "max_payload": 0, "gateway": self.name, "gateway_cmd": cmd,
                "gateway_cmd_payload": base64.b64encode(account.encode()).decode()}
        return encode_json(b"INFO", info, blank=False)

    def connect_options(self, link: GatewayLink) -> dict[str, Any]:
        options: dict[str, Any] = {"echo": False, "verbose": False, "pedantic": False,
                                   "tls_required": self.tls_for(link.remote_cfg) is not None,
                                   "headers": False, "name": self.server.server_id, "cluster": "",
                                   "gateway": self.name}
        parts = urlsplit(link.url or "")
        if parts.username:
            options["user"], options["pass"] = parts.username, parts.password or ""
        elif self.settings.user is not None:
            options["user"], options["pass"] = self.settings.user, self.settings.password or ""
        return options

    def tls_for(self, remote: RemoteGateway | None) -> TLSSettings | None:
        if remote is not None and remote.tls is not None:
            return remote.tls
        return self.settings.tls

    def dialing_context(self, remote: RemoteGateway | None) -> ssl.SSLContext:
        tls = self.tls_for(remote)
        assert tls is not None
        key = remote.name if remote is not None else ""
        ctx = self._contexts.get(key)
        if ctx is None:
            ctx = self._contexts[key] = dialing_context(tls)
        return ctx

    @staticmethod
    def url_host(url: str | None) -> str | None:
        return urlsplit(url).hostname if url else None

    def known(self, name: str) -> bool:
        return name in self.remotes and not self.remotes[name].implicit

    # -- registration ---------------------------------------------------------------------------------

    def outbound_registered(self, link: GatewayLink) -> bool:
        existing = self.outbound.get(link.remote_gateway)
        if existing is not None and existing is not link and not existing.closed:
            link.retry = False
            link.close("Wrong Gateway")
            return False
        self.outbound[link.remote_gateway] = link
        log.info("%s - Outbound gateway connection to %s (%s) registered", link.describe(),
                 _q(link.remote_gateway), link.remote_id)
        return True

    def inbound_registered(self, link: GatewayLink, info: Mapping[str, Any]) -> None:
        self.inbound.add(link)
        log.info("%s - Inbound gateway connection from %s (%s) registered", link.describe(),
                 _q(link.remote_gateway), link.remote_id)
        # nats-server's order: every queue group, gossip of the other gateways, then each
        # account in full between the commands 2 and 3.
        accounts = list(self.server.accounts.values())
        for account in accounts:
            groups = self._groups.setdefault(account.name, set())
            for (subject, queue), weight in self._weights(account).items():
                if queue is not None and weight:
                    groups.add((subject, queue))
                    link.queue(encode_sub(account.name.encode(), subject, queue, 1))
        for name, remote in self.remotes.items():
            if name != link.remote_gateway:
                urls = self.learned.get(name) or [urlsplit(u).netloc.rpartition("@")[2] for u in remote.urls]
                link.queue(encode_json(b"INFO", {"server_id": self.server.server_id, "server_name": "",
                                                 "version": "", "proto": 0, "go": "", "host": "",
                                                 "port": 0, "headers": False, "max_payload": 0,
                                                 "gateway": name, "gateway_urls": urls,
                                                 "gateway_cmd": CMD_GOSSIP}, blank=False))
        for account in accounts:
            self._switch(link, account)
        self.implicit(info)
        link.flush()

    def _switch(self, link: GatewayLink, account: Account) -> None:
        """Send ``account``'s whole plain interest on ``link``, between the commands 2 and 3."""
        name = account.name
        link.switched.add(name)
        link.queue(self.command_line(CMD_ALL_SUBS_START, name))
        acc = name.encode()
        for (subject, queue), weight in self._weights(account).items():
            if queue is None and weight:
                link.queue(encode_sub(acc, subject, None, 1))
        link.queue(self.command_line(CMD_ALL_SUBS_COMPLETE, name))

    def _weights(self, account: Account) -> Mapping[Key, int]:
        try:
            return self.server.interest.weights(account, self.kinds)
        except KeyError:
            return {}

    def link_closed(self, link: GatewayLink) -> None:
        self.connections.discard(link)
        totals = self.closed_traffic
        totals[0] += link.in_msgs
        totals[1] += link.in_bytes
        totals[2] += link.out_msgs
        totals[3] += link.out_bytes_total
        self.inbound.discard(link)
        if self.outbound.get(link.remote_gateway) is link:
            del self.outbound[link.remote_gateway]

    # -- remotes: configured, learned, dialed ----------------------------------------------------------

    def learn_urls(self, name: str, info: Mapping[str, Any]) -> None:
        urls = info.get("gateway_urls")
        if isinstance(urls, list) and urls:
            self.learned[name] = [str(u) for u in urls]

    def implicit(self, info: Mapping[str, Any]) -> None:
        """A gateway heard of (an inbound connection, gossip): dial it if it is new."""
        name = str(info.get("gateway") or "")
        if not name or name == self.name:
            return
        self.learn_urls(name, info)
        if name in self.remotes:
            return
        if self.settings.reject_unknown:
            return
        urls = tuple("nats://" + u for u in self.learned.get(name, []))
        if not urls:
            return
        remote = RemoteGateway(name=name, urls=urls, implicit=True)
        self.remotes[name] = remote
        if not self._stopping:
            self._dial(remote)

    def _dial(self, remote: RemoteGateway) -> None:
        if self._stopping or remote.name in self._dialers:
            return
        task = self.server.loop.create_task(self._dialer(remote))
        self._dialers[remote.name] = task
        task.add_done_callback(lambda _: self._dialers.pop(remote.name, None))

    def _urls(self, remote: RemoteGateway) -> list[str]:
        scheme_user = urlsplit(remote.urls[0])
        userinfo = scheme_user.netloc.rpartition("@")[0]
        prefix = "nats://" + (userinfo + "@" if userinfo else "")
        configured = list(remote.urls)
        known = {urlsplit(u).netloc.rpartition("@")[2] for u in configured}
        extra = [prefix + u for u in self.learned.get(remote.name, []) if u not in known]
        urls = configured + extra
        random.shuffle(urls)
        return urls

    async def _dialer(self, remote: RemoteGateway) -> None:
        loop = self.server.loop
        attempts = 0
        delay = RECONNECT_DELAY
        while not self._stopping:
            link = self.outbound.get(remote.name)
            if link is not None and not link.closed:
                await _closed(link)
                if not link.retry or self._stopping:
                    return
                await asyncio.sleep(RECONNECT_DELAY + random.random() * 0.1)
                continue
            connected = None
            for url in self._urls(remote):
                parts = urlsplit(url)
                host, port = parts.hostname or "127.0.0.1", parts.port or 7222
                attempts += 1
                kind = "implicit" if remote.implicit else "explicit"
                log.info("Connecting to %s gateway %s (%s:%d) at %s:%d (attempt %d)", kind,
                         _q(remote.name), host, port, host, port, attempts)
                candidate = GatewayLink(self, solicited=True, remote=remote, url=url)
                try:
                    await asyncio.wait_for(loop.create_connection(_factory(candidate), host, port), 1.0)
                except (OSError, TimeoutError) as exc:
                    if attempts == 1 or attempts % 3600 == 0:
                        log.error("Error connecting to %s gateway %s (attempt %d): %s", kind,
                                  _q(remote.name), attempts, exc)
                    continue
                connected = candidate
                break
            if connected is None:
                if remote.implicit and attempts > self.settings.connect_retries:
                    self.remotes.pop(remote.name, None)
                    return
                await asyncio.sleep(delay)
                if self.settings.connect_backoff:
                    delay = min(delay * 2, MAX_BACKOFF)
                continue
            attempts, delay = 0, RECONNECT_DELAY
            await _closed(connected)
            if not connected.retry or self._stopping:
                if connected.close_reason == "Wrong Gateway" and self.outbound.get(remote.name):
                    continue  # another connection to that cluster serves: watch it instead
                return
            await asyncio.sleep(RECONNECT_DELAY + random.random() * 0.1)

    # -- interest (an interest listener) ------------------------------------------------------------

    def interest_changed(self, account: Account, subject: bytes, queue: bytes | None,
                         weight: int) -> None:
        """The cluster's interest changed: tell every inbound gateway."""
        if not self.inbound:
            return
        name = account.name
        acc = name.encode()
        if queue is None:
            line = encode_sub(acc, subject, None, 1) if weight else encode_unsub(acc, subject, None)
        else:
            groups = self._groups.setdefault(name, set())
            if not weight:
                groups.discard((subject, queue))
                line = encode_unsub(acc, subject, queue)
            elif (subject, queue) in groups:
                return  # another member of a group the other clusters already know of
            else:
                groups.add((subject, queue))
                line = encode_sub(acc, subject, queue, 1)  # nats-server: always weight 1
        for link in list(self.inbound):
            if not link.registered or link.closed:
                continue
            if queue is None and name not in link.switched:
                self._switch(link, account)  # an account first seen now: in full
                continue
            link.send(line)

    # -- egress ---------------------------------------------------------------------------------

    def egress(self, sender: Any, account: Account, subject: bytes, reply: bytes | None, size: bytes,
               payload: bytes, hdr: int, result: SublistResult, served: Sequence[bytes]) -> bool:
        """Send a message published here to the clusters that want it (see the module docstring)."""
        if not self.outbound:
            return False
        name = account.name
        acc = name.encode()
        if subject.startswith(b"_GR_.") and len(subject) > 19:
            target = subject[5:11]
            for link in self.outbound.values():
                if link.registered and hash6(link.remote_gateway) == target:
                    self._send(sender, link, acc, subject, reply, size, payload, hdr, ())
                    return True
            return False
        if reply is not None and not reply.startswith(b"_GR_."):
            reply = self._prefix + reply
        taken: set[bytes] = set(served)
        sent = False
        for link in sorted(self.outbound.values(), key=_rtt):
            if not link.registered or link.closed:
                continue
            entry = link.interest.get(name)
            if entry is None:
                continue
            match = entry.subs.match(subject)
            queues: list[bytes] = []
            for group in match.qsubs:
                qname = group[0].queue
                if qname is not None and qname not in taken:
                    taken.add(qname)
                    queues.append(qname)
            if match.psubs or queues:
                self._send(sender, link, acc, subject, reply, size, payload, hdr, queues)
                sent = True
        return sent

    def _send(self, sender: Any, link: GatewayLink, acc: bytes, subject: bytes, reply: bytes | None,
              size: bytes, payload: bytes, hdr: int, queues: Sequence[bytes]) -> None:
        if sender.trace is not None:  # a traced message: reported, and it may carry a hop header
            frame = traced_frame(sender.trace, link, subject, queues, size, payload, hdr)
            if frame is None:
                return
            size, payload, hdr = frame
        if hdr and not link.headers:
            body = payload[hdr:]
            link.add_msg(msg_head(acc, subject, reply, queues, 0, len(body) - 2), b"", body, len(body) - 2)
            return
        link.add_msg(msg_head(acc, subject, reply, queues, hdr, size), b"", payload, len(payload) - 2)

    # -- monitoring -------------------------------------------------------------------------------

    def gatewayz(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """nats-server's ``/gatewayz`` (``accs=1``, ``gw_name=``, ``acc_name=``, ``subs=1``)."""
        accs = str(params.get("accs", "")).lower() in ("1", "true") or bool(params.get("acc_name"))
        subs = str(params.get("subs", "")).lower() in ("1", "true", "detail")
        only = str(params.get("gw_name", "") or "")
        acc_name = str(params.get("acc_name", "") or "")
        host, _, port = self.own_url().rpartition(":")
        out: dict[str, Any] = {"server_id": self.server.server_id, "now": rfc3339(time.time()),
                               "name": self.name, "host": host.strip("[]"), "port": int(port)}
        outbound: dict[str, Any] = {}
        for name, link in sorted(self.outbound.items()):
            if only and name != only:
                continue
            remote = self.remotes.get(name)
            entry: dict[str, Any] = {"configured": bool(remote and not remote.implicit),
                                     "connection": _conn_info(link)}
            if accs:
                entry["accounts"] = [
                    _account_view(acc, interest, subs) for acc, interest in sorted(link.interest.items())
                    if not acc_name or acc == acc_name]
            outbound[name] = entry
        inbound: dict[str, list[Any]] = {}
        for link in sorted(self.inbound, key=lambda k: k.cid):
            if only and link.remote_gateway != only:
                continue
            view: dict[str, Any] = {"configured": False, "connection": _conn_info(link)}
            if accs:
                view["accounts"] = [{"name": acc, "interest_mode": "Interest-Only",
                                     "interest_only_threshold": 1000}
                                    for acc in sorted(link.switched) if not acc_name or acc == acc_name]
            inbound.setdefault(link.remote_gateway, []).append(view)
        out["outbound_gateways"] = outbound
        out["inbound_gateways"] = inbound
        return out

    def varz(self, varz: dict[str, Any]) -> None:
        """The gateways' part of ``/varz``: the ``gateway`` section and their traffic."""
        s = self.settings
        section: dict[str, Any] = {"name": self.name, "host": self.host, "port": self.port,
                                   "auth_timeout": _num(s.auth_timeout),
                                   "tls_timeout": _num(s.tls.timeout) if s.tls is not None else 2}
        if s.tls is not None:
            section["tls_required"] = section["tls_verify"] = True
        if s.advertise:
            section["advertise"] = s.advertise
        if s.connect_retries:
            section["connect_retries"] = s.connect_retries
        explicit = [{"name": r.name, "urls": sorted({urlsplit(u).netloc.rpartition("@")[2] for u in r.urls}
                                                      | set(self.learned.get(r.name, [])))}
                    for r in s.gateways]
        if explicit:
            section["gateways"] = explicit
        if s.reject_unknown:
            section["reject_unknown"] = True
        varz["gateway"] = section
        totals = list(self.closed_traffic)
        for link in self.connections:
            totals[0] += link.in_msgs
            totals[1] += link.in_bytes
            totals[2] += link.out_msgs
            totals[3] += link.out_bytes_total
        for key, extra in zip(("in_msgs", "in_bytes", "out_msgs", "out_bytes"), totals, strict=True):
            varz[key] += extra
        varz["slow_consumer_stats"]["gateways"] = self.counts["slow"]
        varz["stale_connection_stats"]["gateways"] = self.counts["stale"]


def _rtt(link: GatewayLink) -> float:
    return link.rtt if link.rtt else float("inf")


def _q(text: str) -> str:
    return '"' + text + '"'


def _num(seconds: float) -> int | float:
    return int(seconds) if float(seconds).is_integer() else seconds


def _factory(link: GatewayLink) -> Callable[[], GatewayLink]:
    return lambda: link


async def _closed(link: GatewayLink) -> None:
    while not link.closed:
        await asyncio.sleep(0.05)


def _conn_info(link: GatewayLink) -> dict[str, Any]:
    now = time.time()
    return {"cid": link.cid, "kind": "Gateway", "ip": link.remote[0] if link.remote else "",
            "port": link.remote[1] if link.remote else 0, "start": rfc3339(link.start),
            "last_activity": rfc3339(link.last), "rtt": f"{link.rtt * 1e6:.0f}µs" if link.rtt else "0s",
            "uptime": f"{int(now - link.start)}s", "idle": f"{int(now - link.last)}s",
            "pending_bytes": link.out_bytes, "in_msgs": link.in_msgs, "out_msgs": link.out_msgs,
            "in_bytes": link.in_bytes, "out_bytes": link.out_bytes_total,
            "subscriptions": sum(len(e.held) for e in link.interest.values()),
            "name": link.remote_id}


def _account_view(name: str, interest: Any, subs: bool) -> dict[str, Any]:
    view: dict[str, Any] = {"name": name, "interest_mode": interest.mode, "interest_only_threshold": 1000}
    if interest.held:
        view["num_subs"] = len(interest.held)
    if interest.queues:
        view["num_queue_subs"] = interest.queues
    if subs and interest.held:
        view["subscriptions_list"] = sorted({s.decode(errors="replace") for (s, _) in interest.held})
    return view
