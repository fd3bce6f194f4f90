"""The monitoring views: nats-server's ``/varz``, ``/connz``, ``/subsz`` ... as JSON objects.

A :class:`Monitor` holds one server's views; :func:`monitor_of` gives it,
whoever asks first (the HTTP port or the system account). Each view takes a
request's options (see :mod:`.params`) and returns a JSON-able object with
nats-server 2.15.1's field names, order and omissions; bad options raise
:class:`~.params.BadRequest`. ``/varz`` also has ``natsd_version``, natsd's
own. Everything is read from the core's counters when asked
(:mod:`natsd.routing.stats`), so monitoring costs nothing per message.

``/routez``, ``/leafz``, ``/gatewayz`` and ``/jsz`` answer nats-server's
shapes for a server without routes, leaf nodes, gateways or JetStream until
a plugin provides them through ``natsd_monitor_endpoints``.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from natsd import __version__
from natsd.config.tls import TLS_TIMEOUT
from natsd.plugin.contracts import ServerAPI
from natsd.plugin.manager import merge_by_name
from natsd.plugin.stash import StashKey
from natsd.routing.account import GLOBAL_ACCOUNT
from natsd.routing.stats import (
    ClosedClient,
    account_connections,
    account_stat,
    authorized_user,
    process_usage,
    rfc3339,
    server_traffic,
    usable_cpus,
)
from natsd.routing.subjects import subject_matches, subjects_collide, valid_literal_subject
from natsd.routing.sublist import Subscription
from natsd.security.peercert import certificate_not_after
from natsd.server import FEATURE_FLAGS, NATS_SERVER_VERSION, git_commit

from .params import BadRequest, Options

View = Callable[[Mapping[str, Any]], Any]
"""``view(params) -> JSON-able object``; see ``natsd_monitor_endpoints``."""

DEFAULT_LIST_SIZE = 1024  # nats-server's DefaultConnListSize and DefaultSubListSize
NS = 1_000_000_000  # Go's time.Duration unit in JSON

#: ``/connz?sort=`` keys: ``(key of a connection at time now, descending)``; ties go by cid.
SORTS: dict[str, tuple[Callable[[Any, float], Any], bool]] = {
    "cid": (lambda c, now: c.cid, False),
    "start": (lambda c, now: c.cid, False),
    "subs": (lambda c, now: len(c.subs), True),
    "pending": (lambda c, now: _pending(c), True),
    "msgs_to": (lambda c, now: c.out_msgs, True),
    "msgs_from": (lambda c, now: c.in_msgs, True),
    "bytes_to": (lambda c, now: c.out_bytes_total, True),
    "bytes_from": (lambda c, now: c.in_bytes, True),
    "last": (lambda c, now: c.last, True),
    "idle": (lambda c, now: _end(c, now) - c.last, True),
    "uptime": (lambda c, now: _end(c, now) - c.start, False),
    "stop": (lambda c, now: c.stop, True),
    "reason": (lambda c, now: c.close_reason, False),
    "rtt": (lambda c, now: 0, True),  # nats-server 2.15.1 sorts by it; natsd measures none
}
CLOSED_ONLY_SORTS = ("stop", "reason")

#: Endpoints also answered over the system account: path -> request name.
SYSTEM_NAMES = {"/varz": "VARZ", "/connz": "CONNZ", "/subsz": "SUBSZ", "/accountz": "ACCOUNTZ",
                "/healthz": "HEALTHZ", "/routez": "ROUTEZ", "/leafz": "LEAFZ",
                "/gatewayz": "GATEWAYZ", "/jsz": "JSZ"}


def uptime(seconds: float) -> str:
    """A duration as nats-server writes uptimes and idle times (``1d2h3m4s``)."""
    secs = max(0, int(seconds))
    mins, hrs, days = secs // 60, secs // 3600, secs // 86400
    years = days // 365
    if years:
        return f"{years}y{days % 365}d{hrs % 24}h{mins % 60}m{secs % 60}s"
    if days:
        return f"{days}d{hrs % 24}h{mins % 60}m{secs % 60}s"
    if hrs:
        return f"{hrs}h{mins % 60}m{secs % 60}s"
    if mins:
        return f"{mins}m{secs % 60}s"
    return f"{secs}s"


def _num(x: float) -> float | int:
    """A float as Go writes it: ``2`` rather than ``2.0``."""
    return int(x) if float(x).is_integer() else x


def _end(conn: Any, now: float) -> float:
    return conn.stop if isinstance(conn, ClosedClient) else now


def _pending(conn: Any) -> int:
    io = getattr(conn, "io", None)
    buffered = io.get_write_buffer_size() if io is not None and not conn.closed else 0
    return int(conn.out_bytes + buffered)


def _client_type(kind: str) -> str:
    return {"websocket": "websocket", "mqtt": "mqtt"}.get(kind, "nats")


def sub_detail(sub: Subscription, cid: int, account: Any = None) -> dict[str, Any]:
    """nats-server's ``SubDetail`` (``account`` and its tag only in ``/subsz`` lists and
    closed connections' details)."""
    out: dict[str, Any] = {"account": account.name, "account_tag": account.tag} if account else {}
    out["subject"] = sub.subject.decode(errors="replace")
    if sub.queue:
        out["qgroup"] = sub.queue.decode(errors="replace")
    out["sid"] = sub.sid.decode(errors="replace")
    out["msgs"] = sub.delivered
    if sub.max_msgs:
        out["max"] = sub.max_msgs
    out["cid"] = cid
    return out


def sublist_stats(sublists: Iterable[Any]) -> dict[str, Any]:
    """nats-server's ``SublistStats``, summed over ``sublists``.

    Matches and cache hits are not counted (that would cost per message), so
    ``num_matches`` and ``cache_hit_rate`` are 0; fan-outs come from the cache.
    """
    count = removes = cached = fanout = max_fanout = 0
    for sl in sublists:
        count += sl.count
        removes += sl.removes
        for result in sl.cache.values():
            cached += 1
            n = len(result.psubs) + len(result.qsubs)
            fanout += n
            max_fanout = max(max_fanout, n)
    return {"num_subscriptions": count, "num_cache": cached, "num_inserts": count + removes,
            "num_removes": removes, "num_matches": 0, "cache_hit_rate": 0,
            "max_fanout": max_fanout, "avg_fanout": _num(fanout / cached) if cached else 0}


class Monitor:
    """The monitoring views of one server, with the endpoints plugins add."""

    def __init__(self, server: ServerAPI) -> None:
        self.server = server
        self.http: Any = None
        """The HTTP listener when the port is enabled: its address and request counts."""
        self.endpoints: dict[str, View] = {
            "/varz": self.varz, "/connz": self.connz, "/subsz": self.subsz,
            "/accountz": self.accountz, "/accstatz": self.accstatz, "/healthz": self.healthz,
            "/routez": self.routez, "/leafz": self.leafz, "/gatewayz": self.gatewayz,
            "/jsz": self.jsz,
        }
        self.endpoints.update(merge_by_name(
            server.plugins.hook.natsd_monitor_endpoints(server=server), "monitoring endpoint",
            lambda path: "/" + path.lstrip("/")))

    def _head(self) -> dict[str, Any]:
        return {"server_id": self.server.server_id, "now": rfc3339(time.time())}

    def _tls_not_after(self) -> str | None:
        """When the client port's certificate expires (``tls_cert_not_after``), if known."""
        tls = self.server.tls
        if tls is None:
            return None
        ts = certificate_not_after(tls.cert_file, tls.fingerprint)
        return rfc3339(ts) if ts is not None else None

    # -- /varz ------------------------------------------------------------------------

    def varz(self, params: Mapping[str, Any]) -> dict[str, Any]:
        server, cfg = self.server, self.server.config
        mem, cpu = process_usage()
        traffic = server_traffic(server)
        http = self.http
        tls = server.tls
        v: dict[str, Any] = {"server_id": server.server_id, "server_name": server.name,
                             "version": NATS_SERVER_VERSION, "proto": 1}
        if git_commit():
            v["git_commit"] = git_commit()
        v.update({"go": f"python{platform.python_version()}", "host": server.host, "port": server.port})
        if server.auth_required:
            v["auth_required"] = True
        if tls is not None and not cfg.allow_non_tls:
            v["tls_required"] = True
        if tls is not None and tls.verify:
            v["tls_verify"] = True
        v["max_connections"] = cfg.max_connections
        if cfg.max_subscriptions:
            v["max_subscriptions"] = cfg.max_subscriptions
        v.update({
            "ping_interval": int(cfg.ping_interval * NS), "ping_max": cfg.ping_max,
            "http_host": http.host if http else "",
            "http_port": http.port if http and not http.settings.https else 0,
            "http_base_path": http.base_path if http else "",
            "https_port": http.port if http and http.settings.https else 0,
            "auth_timeout": _num(cfg.auth_timeout), "max_control_line": cfg.max_control_line,
            "max_payload": cfg.max_payload, "max_pending": cfg.max_pending,
            "cluster": {}, "gateway": {}, "leaf": {}, "mqtt": {}, "websocket": {}, "jetstream": {},
            "tls_timeout": _num(tls.timeout if tls is not None else TLS_TIMEOUT),
            "write_deadline": int(cfg.write_deadline * NS),
            "start": rfc3339(server.start_time), "now": rfc3339(time.time()),
            "uptime": uptime(time.time() - server.start_time), "mem": mem,
            "cores": os.cpu_count() or 1, "gomaxprocs": usable_cpus(),
            "cpu": _num(cpu), "connections": len(server.clients),
            "total_connections": server.total_connections, "routes": 0, "remotes": 0,
            # Clients only: plugins add their links' counts (natsd_monitor_varz).
            "leafnodes": 0, "in_msgs": traffic.in_msgs, "in_bytes": traffic.in_bytes,
            "in_client_msgs": traffic.in_msgs, "in_client_bytes": traffic.in_bytes,
            "out_msgs": traffic.out_msgs, "out_bytes": traffic.out_bytes,
            "out_client_msgs": traffic.out_msgs, "out_client_bytes": traffic.out_bytes,
            "slow_consumers": server.slow_consumers, "stale_connections": server.stale_connections,
            "stalled_clients": 0,
            "subscriptions": sum(a.sublist.count for a in server.accounts.values()),
            "http_req_stats": dict(http.requests) if http else {},
            "config_load_time": rfc3339(server.start_time),
            "config_digest": server.config_digest,
            "feature_flags": dict(FEATURE_FLAGS),
        })
        if server.system_account is not None:
            v["system_account"] = server.system_account.name
        # "clients" is set below: what the plugins do not count as theirs.
        v["slow_consumer_stats"] = {"clients": 0, "routes": 0, "gateways": 0, "leafs": 0}
        v["stale_connection_stats"] = {"clients": 0, "routes": 0, "gateways": 0, "leafs": 0}
        v["disk_io_wait_stats"] = {"waiters": 0, "waits": 0, "wait_time": 0, "max_wait_time": 0}
        not_after = self._tls_not_after()
        if not_after is not None:
            v["tls_cert_not_after"] = not_after
        v["natsd_version"] = __version__  # natsd's own; "version" is the nats-server it follows
        server.plugins.hook.natsd_monitor_varz(server=server, varz=v)
        for stats, total in (("slow_consumer_stats", server.slow_consumers),
                             ("stale_connection_stats", server.stale_connections)):
            kinds = v[stats]
            kinds["clients"] = max(0, total - kinds["routes"] - kinds["gateways"] - kinds["leafs"])
        return v

    # -- /connz ------------------------------------------------------------------------

    def connz(self, params: Mapping[str, Any]) -> dict[str, Any]:
        o = Options(params)
        auth = o.flag("auth")
        subs, detail = o.subs()
        offset, limit = o.page(DEFAULT_LIST_SIZE)
        cid = o.unsigned("cid")
        state = o.state()
        sort = o.text("sort") or "cid"
        if sort not in SORTS:
            raise BadRequest(f"invalid sorting option: {sort}")
        if sort in CLOSED_ONLY_SORTS and state != "closed":
            raise BadRequest(f"sort by {sort} only valid on closed connections")
        user, acc, mqtt = o.text("user"), o.text("acc"), o.text("mqtt_client")
        filter_subject = o.text("filter_subject")
        if filter_subject in (">", ""):
            filter_subject = ""
        elif not acc:
            raise BadRequest("filter by subject only valid with account filtering")
        if cid:
            limit = 1
        server = self.server
        now = time.time()
        head = {**self._head(), "num_connections": 0, "total": 0, "offset": offset, "limit": limit,
                "connections": []}
        account = None
        if acc:
            account = server.accounts.get(acc)
            if account is None:
                return head
        live = [c for c in server.clients.values() if account is None or c.account is account]
        closed = [c for c in server.closed_clients if account is None or c.account is account]
        conns: list[Any] = []
        total = 0
        if state != "closed":
            total += len(live)
            conns += live
        if state != "open":
            total += len(closed)
            conns += closed
        if cid:
            conns = [c for c in conns if c.cid == cid]
        if user:
            conns = [c for c in conns if _user(c) == user]
        if mqtt:
            conns = [c for c in conns if c.transport == "mqtt" and c.name == mqtt]
        if filter_subject:
            wanted = filter_subject.encode()
            conns = [c for c in conns if any(subjects_collide(wanted, s.subject) for s in c.subs.values())]
        key, descending = SORTS[sort]
        conns.sort(key=lambda c: c.cid)
        conns.sort(key=lambda c: key(c, now), reverse=descending)
        page = conns[offset:offset + limit]
        head.update(num_connections=len(page), total=total,
                    connections=[self.conn_info(c, now, auth, subs, detail) for c in page])
        return head

    def conn_info(self, c: Any, now: float, auth: bool = False, subs: bool = False,
                  detail: bool = False) -> dict[str, Any]:
        """nats-server's ``ConnInfo`` of a live or closed connection."""
        ip, port = c.remote if c.remote else ("", 0)
        info: dict[str, Any] = {"cid": c.cid, "kind": "Client", "type": _client_type(c.transport),
                                "ip": ip, "port": port, "start": rfc3339(c.start),
                                "last_activity": rfc3339(c.last)}
        closed = isinstance(c, ClosedClient)
        if closed:
            info["stop"] = rfc3339(c.stop)
            info["reason"] = c.close_reason
        end = _end(c, now)
        info.update(uptime=uptime(end - c.start), idle=uptime(end - c.last),
                    pending_bytes=_pending(c), in_msgs=c.in_msgs, out_msgs=c.out_msgs,
                    in_bytes=c.in_bytes, out_bytes=c.out_bytes_total, subscriptions=len(c.subs))
        mqtt_client = c.name if c.transport == "mqtt" else ""  # an MQTT session's name is its client id
        for key in ("lang", "version") if mqtt_client else ("name", "lang", "version"):
            if getattr(c, key):
                info[key] = getattr(c, key)
        tls = c.tls
        if tls is not None:
            info["tls_version"], info["tls_cipher_suite"] = tls.version, tls.cipher
            if auth and tls.peer is not None:
                # nats-server lists the chain the client sent; Python's ssl shows only its certificate.
                peer = tls.peer
                info["tls_peer_certs"] = [{"subject": peer.go_subject(), "spki_sha256": peer.spki_sha256(),
                                           "cert_sha256": peer.cert_sha256()}]
            if tls.first:
                info["tls_first"] = True
        if auth:
            user = _user(c)
            if user:
                info["authorized_user"] = user
            if c.account.name != GLOBAL_ACCOUNT:
                info["account"] = c.account.name
        if c.subs and detail:  # closed ones name the account, as nats-server's saved details do
            acc = c.account if closed else None
            info["subscriptions_list_detail"] = [sub_detail(s, c.cid, acc) for s in c.subs.values()]
        elif c.subs and subs:
            info["subscriptions_list"] = [s.subject.decode(errors="replace") for s in c.subs.values()]
        if auth and c.connect_options.get("jwt"):
            info["jwt"] = c.connect_options["jwt"]
        if auth and (not closed or c.account.name != GLOBAL_ACCOUNT):  # as nats-server 2.15.1
            info["name_tag"] = c.account.tag
        if mqtt_client:
            info["mqtt_client"] = mqtt_client
        return info

    # -- /subsz ------------------------------------------------------------------------

    def subsz(self, params: Mapping[str, Any]) -> dict[str, Any]:
        o = Options(params)
        subs = o.flag("subs", "subscriptions")
        offset, limit = o.page(DEFAULT_LIST_SIZE)
        test = o.text("test")
        acc = o.text("acc", "account")
        if test and not valid_literal_subject(test.encode()):
            raise BadRequest(f"invalid test subject, must be valid publish subject: {test}")
        accounts = [a for a in self.server.accounts.values() if not acc or a.name == acc]
        out = {**self._head(), **sublist_stats(a.sublist for a in accounts)}
        details = []
        for a in accounts if subs else ():
            for sub in a.sublist.all():
                if test and not subject_matches(sub.subject, test.encode()):
                    continue
                details.append(sub_detail(sub, getattr(sub.client, "cid", 0), a))
        page = details[offset:offset + limit]
        out.update(total=len(details), offset=offset, limit=limit)
        if page:
            out["subscriptions_list"] = page
        return out

    # -- /accountz and /accstatz -----------------------------------------------------------

    def accountz(self, params: Mapping[str, Any]) -> dict[str, Any]:
        acc = Options(params).text("acc", "account")
        server = self.server
        out = self._head()
        if server.system_account is not None:
            out["system_account"] = server.system_account.name
        if not acc:
            out["accounts"] = list(server.accounts)
            return out
        account = server.accounts.get(acc)
        if account is None:
            raise BadRequest(f"Account {acc} does not exist")
        out["account_detail"] = self.account_info(account)
        return out

    def account_info(self, account: Any) -> dict[str, Any]:
        """nats-server's ``AccountInfo`` (configured accounts have no JWT)."""
        server = self.server
        info: dict[str, Any] = {"account_name": account.name, "update_time": rfc3339(server.start_time)}
        if account is server.system_account:
            info["is_system"] = True
        info.update({
            "expired": False, "complete": True, "jetstream_enabled": False, "leafnode_connections": 0,
            "client_connections": account_connections(account),
            "subscriptions": account.sublist.count,
        })
        links = server.links
        exports = [_export(e) for e in (links.exports.get(account.name, []) if links else [])]
        imports = [_import(f) for f in (links.forwarders if links else [])
                   if getattr(f, "importer", None) is account]
        if exports:
            info["exports"] = exports
        if imports:
            info["imports"] = imports
        info["name_tag"] = account.tag
        info["sublist_stats"] = sublist_stats([account.sublist])
        return info

    def accstatz(self, params: Mapping[str, Any]) -> dict[str, Any]:
        o = Options(params)
        unused = o.flag("unused", "include_unused")
        names = o.names("accounts")
        accounts = self.server.accounts
        chosen = [accounts[n] for n in names if n in accounts] if names else list(accounts.values())
        stats = [account_stat(a) for a in chosen]
        return {**self._head(), "account_statz": [s for s in stats if unused or s["conns"]]}

    # -- /healthz and the shapes of what plugins provide -------------------------------------

    def healthz(self, params: Mapping[str, Any]) -> dict[str, Any]:
        o = Options(params)
        for name in ("js-enabled", "js-enabled-only", "js-server-only"):
            o.flag(name)
        return {"status": "ok"}

    def routez(self, params: Mapping[str, Any]) -> dict[str, Any]:
        Options(params).subs()
        server = self.server
        return {"server_id": server.server_id, "server_name": server.name, "now": rfc3339(time.time()),
                "num_routes": 0, "routes": []}

    def leafz(self, params: Mapping[str, Any]) -> dict[str, Any]:
        Options(params).flag("subs", "subscriptions")
        return {**self._head(), "leafnodes": 0, "leafs": []}

    def gatewayz(self, params: Mapping[str, Any]) -> dict[str, Any]:
        Options(params).flag("accs", "accounts")
        return {**self._head(), "outbound_gateways": {}, "inbound_gateways": {}}

    def jsz(self, params: Mapping[str, Any]) -> dict[str, Any]:
        o = Options(params)
        for name in ("accounts", "streams", "consumers", "config"):
            o.flag(name)
        o.page(DEFAULT_LIST_SIZE)
        o.flag("leader-only", "leader_only")
        return {"memory": 0, "storage": 0, "reserved_memory": 0, "reserved_storage": 0,
                "accounts": 0, "ha_assets": 0, "api": {"level": 0, "total": 0, "errors": 0},
                **self._head(), "disabled": True, "config": {"max_memory": 0, "max_storage": 0},
                "streams": 0, "consumers": 0, "messages": 0, "bytes": 0, "total": 0}

    # -- the system account's names ------------------------------------------------------

    def system_views(self) -> dict[str, View]:
        """``$SYS.REQ.SERVER.PING.<NAME>`` and ``$SYS.REQ.ACCOUNT.<acc>.<NAME>`` views."""
        ep = self.endpoints
        views: dict[str, View] = {name: ep[path] for path, name in SYSTEM_NAMES.items()}
        healthz = views["HEALTHZ"]
        # Over the system account (only) nats-server 2.15.1 adds the status code.
        views["HEALTHZ"] = lambda opts: {**healthz(opts), "status_code": 200}
        views.update({
            "ACCOUNT.CONNZ": lambda opts: ep["/connz"]({**opts, "acc": opts["account"]}),
            "ACCOUNT.SUBSZ": lambda opts: ep["/subsz"](
                {**opts, "acc": opts["account"], "subscriptions": True}),
            "ACCOUNT.LEAFZ": lambda opts: ep["/leafz"]({**opts, "acc": opts["account"]}),
            "ACCOUNT.STATZ": lambda opts: ep["/accstatz"](
                {**opts, "accounts": [opts["account"]], "include_unused": True}),
            "ACCOUNT.INFO": lambda opts: self.accountz({"acc": opts["account"]})["account_detail"],
        })
        if ep["/jsz"] != self.jsz:  # without JetStream nats-server answers an error
            views["ACCOUNT.JSZ"] = lambda opts: ep["/jsz"]({**opts, "acc": opts["account"]})
        return views


def _user(conn: Any) -> str:
    return conn.auth_user if isinstance(conn, ClosedClient) else authorized_user(conn)


def _export(export: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"subject": export.subject.decode(), "type": export.kind}
    if export.kind == "service":
        out["response_type"] = export.response_type.capitalize()
    if export.accounts:
        out["approved_accounts"] = sorted(export.accounts)
    return out


def _import(forwarder: Any) -> dict[str, Any]:
    if hasattr(forwarder, "local"):  # a service import: requests on local, answered on subject
        # nats-server 2.15.1: "subject" is the exporter's, "to" (deprecated) and "local_subject"
        # the importer's (2.9.10 had "subject" and "to" the other way round).
        local = forwarder.local.decode()
        out: dict[str, Any] = {"subject": forwarder.subject.decode(), "account": forwarder.exporter.name,
                               "to": local, "local_subject": local, "type": "service"}
    else:
        subject = forwarder.sub.subject
        out = {"subject": subject.decode(), "account": forwarder.exporter.name,
               "local_subject": forwarder.target(subject).decode(), "type": "stream"}
    out.update(invalid=False, share=False, tracking=False)
    return out


MONITOR = StashKey[Monitor]()


def monitor_of(server: ServerAPI) -> Monitor:
    """The server's :class:`Monitor`, made on first use (its endpoints are fixed then)."""
    monitor = server.stash.get(MONITOR, None)
    if monitor is None:
        monitor = server.stash[MONITOR] = Monitor(server)
    return monitor


def forget(server: ServerAPI) -> None:
    """Drop the server's :class:`Monitor` (at shutdown)."""
    server.stash.pop(MONITOR, None)
