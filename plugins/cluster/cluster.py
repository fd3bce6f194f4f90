"""The cluster: this server's routes, the listener and dialers, interest, gossip and client URLs.

A :class:`Cluster` listens for routes, dials the configured ones (forever,
once a second) and the ones gossip tells it about (``1 + connect_retries``
times), keeps one registered route per remote server (the first registered
wins, as in nats-server), sends each new route this server's interest and
then every change of it (it is an interest listener counting clients,
in-process clients and leaf nodes, never other routes), forwards each new
server's INFO to the other routes so that a mesh forms from one seed, and
tells clients about the other servers (``connect_urls`` in INFO).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import string
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from natsd.config.tls import dialing_context
from natsd.conn.link import LINK_PROTO, SERVER_SHUTDOWN
from natsd.plugin.contracts import ServerAPI
from natsd.routing.account import Account
from natsd.routing.connection import ANNOUNCED_KINDS, Kind
from natsd.routing.stats import rfc3339
from natsd.server import NATS_SERVER_VERSION
from natsd.wire.routed import encode_json, encode_sub, encode_unsub

from .route import CLUSTER_NAME_CONFLICT, DUPLICATE_ROUTE, Route
from .settings import ClusterSettings

log = logging.getLogger("natsd.cluster")

ROUTE_CONNECT_DELAY = 1.0
"""Seconds between attempts to reach a configured route (nats-server's DEFAULT_ROUTE_CONNECT)."""
MAX_BACKOFF = 30.0
ROUTE_PROTO = LINK_PROTO
"""The route protocol level natsd speaks: nats-server's current one (accounts in every line,
message tracing)."""


def _nuid(n: int = 22) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(random.choice(alphabet) for _ in range(n))


class Cluster:
    """Routes to the other servers of the cluster (see the module docstring)."""

    def __init__(self, server: ServerAPI, settings: ClusterSettings) -> None:
        self.server = server
        self.settings = settings
        self.name = settings.name or _nuid()
        self.dynamic = not settings.name
        self.kinds = ANNOUNCED_KINDS | {Kind.LEAF}
        self.routes: dict[str, Route] = {}  # registered, by remote server id
        self.connections: set[Route] = set()  # every open route connection
        self.host = settings.host
        self.port = settings.port
        self._listener: asyncio.AbstractServer | None = None
        self._dialers: dict[str, asyncio.Task[None]] = {}
        self._closed: dict[Route, asyncio.Future[None]] = {}
        self._self_urls: set[str] = set()
        self._remote_urls: dict[str, list[str]] = {}
        self._remote_ws_urls: dict[str, list[str]] = {}
        self._stopping = False
        self.dialing_context = dialing_context(settings.tls) if settings.tls is not None else None
        """The client side of route TLS (the listener uses ``settings.tls.context``)."""
        self.client_urls: list[str] = []
        """This server's and the other servers' client URLs, as clients' INFO has them."""
        self.slow_consumers = 0
        self.stale_connections = 0
        self.closed_traffic = [0, 0, 0, 0]
        """in_msgs, in_bytes, out_msgs, out_bytes of the route connections that closed."""

    # -- lifecycle (a Listener) ---------------------------------------------------------

    async def start(self) -> None:
        loop = self.server.loop
        port = self.settings.port if self.settings.port > 0 else 0
        try:
            self._listener = await loop.create_server(
                lambda: Route(self, solicited=False), host=self.settings.host or None, port=port,
                reuse_address=True)
        except OSError as exc:
            raise OSError(exc.errno, f"cannot listen for routes on {self.settings.host}:{port}: "
                          f"{exc.strerror}") from exc
        self.host, self.port = self._listener.sockets[0].getsockname()[:2]
        self.server.ports["cluster"] = [f"nats://{self._url_host(self.host)}:{self.port}"]
        log.info("Cluster name is %s", self.name)
        log.info("Listening for route connections on %s:%d", self.host, self.port)
        self._update_client_info(broadcast=False)
        for url in self.settings.routes:
            self._dial(url, explicit=True)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._dialers.values():
            task.cancel()
        if self._listener is not None:
            self._listener.close()
        for route in list(self.connections):
            route.close(SERVER_SHUTDOWN)
        if self._listener is not None:
            await self._listener.wait_closed()

    def lame_duck(self) -> None:
        """Tell the other servers to stop sending clients here (INFO with ``ldm``)."""
        for route in self.routes.values():
            route.send(encode_json(b"INFO", {**self.route_info(route), "ldm": True}))

    # -- the handshake ---------------------------------------------------------------------

    @property
    def ping_interval(self) -> float:
        return min(self.settings.ping_interval or self.server.config.ping_interval, 30.0)

    def route_info(self, route: Route | None = None) -> dict[str, Any]:
        """This server's INFO on a route (nats-server's fields, no pool, no compression)."""
        server, settings = self.server, self.settings
        host, port = self._advertised()
        info: dict[str, Any] = {
            "server_id": server.server_id, "server_name": server.name,
            "version": NATS_SERVER_VERSION, "proto": ROUTE_PROTO, "go": "python",
            "host": host, "port": port, "headers": True,
        }
        if settings.user is not None:
            info["auth_required"] = True
        if settings.tls is not None:
            info["tls_required"] = info["tls_verify"] = True
        info["max_payload"] = server.config.max_payload
        if settings.advertise:
            info["ip"] = f"nats-route://{host}:{port}/"
        info["cluster"] = self.name
        if self.dynamic:
            info["cluster_dynamic"] = True
        if not settings.no_advertise:
            info["connect_urls"] = self._own_client_urls()
            ws_urls = self._own_ws_urls()
            if ws_urls:
                info["ws_connect_urls"] = ws_urls
        if route is not None and route.gossip_mode:
            info["gossip_mode"] = route.gossip_mode
        return info

    def connect_options(self, url: str | None = None, implicit_auth: bool = False) -> dict[str, Any]:
        """The CONNECT this server sends on a route it dials."""
        options: dict[str, Any] = {"echo": True, "verbose": False, "pedantic": False,
                                   "tls_required": self.settings.tls is not None, "headers": True,
                                   "name": self.server.server_id, "cluster": self.name}
        if self.dynamic:
            options["cluster_dynamic"] = True
        parts = urlsplit(url) if url else None
        if parts is not None and parts.username:
            options["user"] = parts.username
            options["pass"] = parts.password or ""
        elif implicit_auth and self.settings.user is not None:
            options["user"] = self.settings.user
            options["pass"] = self.settings.password or ""
        return options

    def accept_cluster_name(self, theirs: str, their_dynamic: bool) -> bool:
        """Whether a peer's cluster name fits; a generated name gives way to a configured one."""
        if not theirs or theirs == self.name:
            return True
        if self.dynamic and (not their_dynamic or self.name < theirs):
            log.info("Cluster name updated to %s", theirs)
            self.name = theirs
            self.dynamic = their_dynamic
            self._update_client_info()
            return True
        return False

    def route_ready(self, route: Route) -> None:
        """The remote's INFO arrived: check it, register the route, send our interest."""
        rid = route.remote_id
        if rid == self.server.server_id:
            if route.url:
                self._self_urls.add(route.url)
            log.debug("%s - Detected route to self, ignoring %s", route.describe(), route.url or "")
            route.retry = False
            route.close(DUPLICATE_ROUTE)
            return
        info = route.remote_info
        if not self.accept_cluster_name(str(info.get("cluster") or ""), bool(info.get("cluster_dynamic"))):
            log.error("%s - Rejecting connection, cluster name %r does not match %r",
                      route.describe(), info.get("cluster"), self.name)
            route.close(CLUSTER_NAME_CONFLICT)
            return
        if route.remote_name == self.server.name and rid != self.server.server_id:
            log.error("%s - Remote server has a duplicate name: %s", route.describe(), route.remote_name)
            route.retry = False
            route.close("Duplicate Server Name")
            return
        existing = self.routes.get(rid)
        if existing is not None:
            log.debug("%s - Detected duplicate remote route %r", route.describe(), rid)
            if route.solicited and not route.implicit:
                existing.retry = True  # keep reaching the configured route through the kept one
                existing.url = existing.url or route.url
            route.retry = False
            route.close(DUPLICATE_ROUTE)
            return
        route.registered = True
        self.routes[rid] = route
        log.debug("%s - Registering remote route %r", route.describe(), rid)
        self._send_interest(route)
        self._gossip(route)
        if self._remember_urls(rid, info):
            self._update_client_info()
        self.server.flush()

    def route_info_update(self, route: Route, info: Mapping[str, Any]) -> None:
        """An INFO on a registered route: gossip about another server, or news of this one."""
        if info.get("gateway") or info.get("route_acc_add_reqid"):
            return  # gateway configuration and pinned-account reloads: not for natsd routes
        sid = str(info.get("server_id") or "")
        if sid and sid != route.remote_id:
            self._implicit(info)
            return
        if info.get("ldm"):
            if self._forget_urls(route.remote_id):
                self._update_client_info()
            return
        if self._remember_urls(route.remote_id, info):
            self._update_client_info()

    def _remember_urls(self, rid: str, info: Mapping[str, Any]) -> bool:
        """Keep a peer's client and WebSocket URLs from its INFO; whether there were any."""
        if self.settings.no_advertise:
            return False
        found = False
        for key, table in (("connect_urls", self._remote_urls), ("ws_connect_urls", self._remote_ws_urls)):
            urls = info.get(key)
            if isinstance(urls, list):
                table[rid] = [str(u) for u in urls]
                found = True
        return found

    def _forget_urls(self, rid: str) -> bool:
        had = self._remote_urls.pop(rid, None) is not None
        return self._remote_ws_urls.pop(rid, None) is not None or had

    def route_closed(self, route: Route) -> None:
        self.connections.discard(route)
        totals = self.closed_traffic
        totals[0] += route.in_msgs
        totals[1] += route.in_bytes
        totals[2] += route.out_msgs
        totals[3] += route.out_bytes_total
        if route.registered and self.routes.get(route.remote_id) is route:
            del self.routes[route.remote_id]
            if self._forget_urls(route.remote_id):
                self._update_client_info()
        fut = self._closed.pop(route, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    # -- interest (an interest listener) -----------------------------------------------------

    def interest_changed(self, account: Account, subject: bytes, queue: bytes | None,
                         weight: int) -> None:
        if not self.routes:
            return
        name = account.name.encode()
        line = encode_sub(name, subject, queue, weight) if weight else encode_unsub(name, subject, queue)
        for route in self.routes.values():
            route.send(line)

    def _send_interest(self, route: Route) -> None:
        lines = []
        for account in list(self.server.accounts.values()):
            name = account.name.encode()
            for (subject, queue), weight in self.server.interest.weights(account, self.kinds).items():
                lines.append(encode_sub(name, subject, queue, weight))
        if lines:
            route.queue(b"".join(lines))

    # -- gossip ------------------------------------------------------------------------------

    def _gossip(self, new: Route) -> None:
        """Forward the new server's INFO to the other routes, so that they dial it."""
        info = dict(new.remote_info)
        if (new.implicit and new.gossip_mode != 2) or info.get("gossip_mode") == 1:
            return
        others = [r for r in self.routes.values() if r is not new]
        port = info.get("port")
        if not others or not isinstance(port, int) or isinstance(port, bool):
            return  # nothing to tell, or nobody could dial what we would tell
        info.pop("nonce", None)
        if not info.get("ip"):
            host = new.remote[0] if new.remote else info.get("host")
            info["ip"] = f"nats-route://{self._url_host(str(host))}:{info.get('port')}/"
        for other in others:
            explicit_other = other.solicited and not other.implicit
            if (not new.solicited and explicit_other) or (new.solicited and not new.implicit):
                mode = 2
            elif not new.solicited:
                mode = 1
            else:
                mode = 0
            other.send(encode_json(b"INFO", {**info, "gossip_mode": mode}, blank=False))

    def _implicit(self, info: Mapping[str, Any]) -> None:
        """Dial a server gossip told us about, unless we know it already."""
        sid = str(info.get("server_id") or "")
        if sid == self.server.server_id or sid in self.routes or info.get("route_account"):
            return
        url = str(info.get("ip") or f"nats-route://{info.get('host')}:{info.get('port')}/")
        try:
            target = (urlsplit(url).hostname, urlsplit(url).port)
            configured = {(urlsplit(c).hostname, urlsplit(c).port) for c in self.settings.routes}
        except ValueError:
            log.debug("ignoring gossip with an unusable address: %r", url)
            return
        if target[1] is None or target in configured:
            return
        if url in self._dialers:
            return
        self._dial(url, explicit=False, auth=bool(info.get("auth_required")),
                   gossip_mode=int(info.get("gossip_mode") or 0))

    # -- dialing -------------------------------------------------------------------------------

    def _dial(self, url: str, *, explicit: bool, auth: bool = False, gossip_mode: int = 0) -> None:
        if self._stopping or url in self._dialers:
            return
        task = self.server.loop.create_task(self._dialer(url, explicit, auth, gossip_mode))
        self._dialers[url] = task
        task.add_done_callback(lambda _: self._dialers.pop(url, None))

    async def _dialer(self, url: str, explicit: bool, auth: bool, gossip_mode: int) -> None:
        """Keep a route to ``url``: a configured one forever, a gossiped one while it answers."""
        parts = urlsplit(url if "://" in url else "nats-route://" + url)
        try:
            host, port = parts.hostname or "127.0.0.1", parts.port or 6222
        except ValueError:
            log.error("Route URL %r has no usable port", url)
            return
        attempts = 0
        delay = ROUTE_CONNECT_DELAY
        loop = self.server.loop
        while not self._stopping and url not in self._self_urls:
            attempts += 1
            try:
                _, route = await loop.create_connection(
                    lambda: Route(self, solicited=True, url=url, implicit=not explicit,
                                  implicit_auth=auth, gossip_mode=gossip_mode), host, port)
            except OSError as exc:
                if attempts == 1 or attempts % 3600 == 0:
                    log.error("Error trying to connect to route (attempt %d): %s", attempts, exc)
                if not explicit and attempts > self.settings.connect_retries:
                    return
                await asyncio.sleep(delay)
                if self.settings.connect_backoff:
                    delay = min(delay * 2, MAX_BACKOFF)
                continue
            assert isinstance(route, Route)
            attempts, delay = 0, ROUTE_CONNECT_DELAY
            await self._wait_closed(route)
            if route.close_reason == DUPLICATE_ROUTE:
                kept = self.routes.get(route.remote_id)
                if kept is None or not explicit:
                    if not explicit:
                        return  # the other side's connection serves
                else:
                    await self._wait_closed(kept)  # reach the configured route again when it drops
            elif not route.retry:
                return
            await asyncio.sleep((ROUTE_CONNECT_DELAY if explicit else 0) + random.random() * 0.1)

    async def _wait_closed(self, route: Route) -> None:
        if route.closed:
            return
        fut = self._closed.get(route)
        if fut is None:
            fut = self._closed[route] = self.server.loop.create_future()
        await fut

    # -- client INFO ---------------------------------------------------------------------------

    def _own_client_urls(self) -> list[str]:
        server = self.server
        host = server.host
        if host in ("", "0.0.0.0", "::"):
            addresses = _interface_addresses() or ["127.0.0.1"]
            return [f"{self._url_host(a)}:{server.port}" for a in addresses]
        return [f"{self._url_host(host)}:{server.port}"]

    def _own_ws_urls(self) -> list[str]:
        """This server's WebSocket port as ``host:port`` (the websocket plugin's ``ports`` entry)."""
        urls: list[str] = []
        for url in self.server.ports.get("websocket", ()):
            parts = urlsplit(url)
            if parts.hostname is None or parts.port is None:
                continue
            if parts.hostname in ("0.0.0.0", "::"):
                addresses = _interface_addresses() or ["127.0.0.1"]
                urls.extend(f"{self._url_host(a)}:{parts.port}" for a in addresses)
            else:
                urls.append(f"{self._url_host(parts.hostname)}:{parts.port}")
        return urls

    def _update_client_info(self, broadcast: bool = True) -> None:
        urls, ws_urls = self._own_client_urls(), self._own_ws_urls()
        if not self.settings.no_advertise:
            for remote in self._remote_urls.values():
                urls.extend(u for u in remote if u not in urls)
            for remote in self._remote_ws_urls.values():
                ws_urls.extend(u for u in remote if u not in ws_urls)
        self.client_urls = urls
        # ws_connect_urls reaches WebSocket clients as their connect_urls (see Server.client_info)
        self.server.update_info(cluster=self.name, connect_urls=urls, ws_connect_urls=ws_urls or None)
        if broadcast and self.server.running:
            self.server.broadcast_info()

    def _advertised(self) -> tuple[str, int]:
        if self.settings.advertise:
            parts = urlsplit("nats://" + self.settings.advertise.split("://")[-1])
            return parts.hostname or self.host, parts.port or self.port
        return self.host, self.port

    @staticmethod
    def _url_host(host: str) -> str:
        return f"[{host}]" if ":" in host and not host.startswith("[") else host

    # -- monitoring ------------------------------------------------------------------------------

    def varz(self, varz: dict[str, Any]) -> None:
        """The cluster's part of ``/varz``: its section, route counts and route traffic."""
        settings = self.settings
        section: dict[str, Any] = {"name": self.name, "addr": self.host, "cluster_port": self.port,
                                   "auth_timeout": _num(settings.auth_timeout)}
        urls = [urlsplit(u).netloc.rpartition("@")[2] for u in settings.routes]
        if urls:
            section["urls"] = urls
        section["tls_timeout"] = _num(settings.tls.timeout) if settings.tls is not None else 2
        if settings.tls is not None:
            section["tls_required"] = section["tls_verify"] = True
        section["pool_size"] = settings.pool_size
        varz["cluster"] = section
        connections = list(self.connections)
        varz["routes"] = sum(1 for r in connections if r.registered)
        varz["remotes"] = len(self.routes)
        totals = list(self.closed_traffic)
        for route in connections:
            totals[0] += route.in_msgs
            totals[1] += route.in_bytes
            totals[2] += route.out_msgs
            totals[3] += route.out_bytes_total
        for key, extra in zip(("in_msgs", "in_bytes", "out_msgs", "out_bytes"), totals, strict=True):
            varz[key] += extra
        varz["slow_consumer_stats"]["routes"] = self.slow_consumers
        varz["stale_connection_stats"]["routes"] = self.stale_connections
        if self.client_urls:
            varz["connect_urls"] = list(self.client_urls)

    def statsz(self, statsz: dict[str, Any]) -> None:
        """The cluster's part of STATSZ: one entry per route, route traffic, the other servers."""
        totals = list(self.closed_traffic)
        routes = []
        for route in sorted(self.connections, key=lambda r: r.cid):
            totals[0] += route.in_msgs
            totals[1] += route.in_bytes
            totals[2] += route.out_msgs
            totals[3] += route.out_bytes_total
            if route.registered:
                entry: dict[str, Any] = {"rid": route.cid}
                if route.remote_name:
                    entry["name"] = route.remote_name
                entry["sent"] = {"msgs": route.out_msgs, "bytes": route.out_bytes_total}
                entry["received"] = {"msgs": route.in_msgs, "bytes": route.in_bytes}
                entry["pending"] = route.out_bytes + (route.io.get_write_buffer_size() if route.io else 0)
                routes.append(entry)
        statsz["routes"] = routes
        for key, msgs, size in (("received", totals[0], totals[1]), ("sent", totals[2], totals[3])):
            statsz[key] = {**statsz[key], "msgs": statsz[key]["msgs"] + msgs,
                           "bytes": statsz[key]["bytes"] + size}
        statsz["slow_consumer_stats"]["routes"] = self.slow_consumers
        statsz["stale_connection_stats"]["routes"] = self.stale_connections
        statsz["active_servers"] += len(self.routes)

    def routez(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """nats-server's ``/routez``: one entry per route connection (``subs=1``, ``subs=detail``)."""
        subs = str(params.get("subs", "")).lower()
        now = time.time()
        routes = []
        for route in sorted(self.routes.values(), key=lambda r: r.cid):
            entry: dict[str, Any] = {
                "rid": route.cid, "remote_id": route.remote_id, "remote_name": route.remote_name,
                "did_solicit": route.solicited, "is_configured": route.solicited and not route.implicit,
                "ip": route.remote[0] if route.remote else "", "port": route.remote[1] if route.remote else 0,
                "start": rfc3339(route.start), "last_activity": rfc3339(route.last),
                "rtt": f"{route.rtt * 1e6:.0f}µs" if route.rtt else "0s",
                "uptime": f"{int(now - route.start)}s", "idle": f"{int(now - route.last)}s",
                "pending_size": route.out_bytes, "in_msgs": route.in_msgs, "out_msgs": route.out_msgs,
                "in_bytes": route.in_bytes, "out_bytes": route.out_bytes_total,
                "subscriptions": route.interest_count,
            }
            held = route.interest_subjects()
            if subs in ("1", "true") and held:
                entry["subscriptions_list"] = [s.subject.decode(errors="replace") for s in held]
            elif subs == "detail" and held:
                entry["subscriptions_list_detail"] = [
                    {"subject": s.subject.decode(errors="replace"), "sid": s.sid.decode(errors="replace"),
                     "msgs": s.delivered, "cid": route.cid} for s in held]
            entry["compression"] = "off"
            routes.append(entry)
        return {"server_id": self.server.server_id, "server_name": self.server.name,
                "now": rfc3339(now), "num_routes": len(routes), "routes": routes}


def _num(seconds: float) -> int | float:
    """A duration in seconds as nats-server prints it (whole seconds without a fraction)."""
    return int(seconds) if float(seconds).is_integer() else seconds


def _interface_addresses() -> list[str]:
    """This host's non-loopback IPv4 addresses (for connect_urls when listening on 0.0.0.0)."""
    found: list[str] = []
    try:
        for family, _, _, _, addr in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            ip = str(addr[0])
            if family == socket.AF_INET and not ip.startswith("127.") and ip not in found:
                found.append(ip)
    except OSError:
        pass
    return found
