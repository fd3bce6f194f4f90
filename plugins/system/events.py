"""System-account events and requests, with nats-server 2.15.1's subjects and JSON shapes.

Published in the system account (``system_account``, default ``$SYS``):

- ``$SYS.ACCOUNT.<acc>.CONNECT`` / ``.DISCONNECT``: ``client_connect`` and
  ``client_disconnect`` advisories for every client of ``<acc>``, the global
  account ``$G`` included; a connection that closes before its CONNECT is
  accepted (refused, timed out, a bare TCP probe) gets a ``$G`` DISCONNECT;
- ``$SYS.ACCOUNT.<acc>.SERVER.CONNS`` and ``$SYS.SERVER.ACCOUNT.<acc>.CONNS``:
  the account's connection count after each change (not for ``$G``);
- ``$SYS.SERVER.<id>.CLIENT.AUTH.ERR``: a refused CONNECT;
- ``$SYS.SERVER.<id>.STATSZ``: server statistics, every 0.25 s doubling up
  to every 30 s after start, as nats-server paces them;
- ``$SYS.SERVER.<id>.SHUTDOWN``: the server is stopping;
- ``$SYS.SERVER.<id>.LAMEDUCK``: the server entered lame-duck mode (nats-server
  2.10's event: the server's identity, as in every event's ``server`` object).

Answered: ``$SYS.REQ.SERVER.PING`` and ``$SYS.REQ.SERVER.PING.<X>`` (every
server), ``$SYS.REQ.SERVER.<id>.<X>`` (this one) for ``STATSZ``, ``HEALTHZ``
and ``IDZ`` (nats-server 2.10's bare ``{"name", "host", "id"}``), plus
whatever views plugins register through ``natsd_system_views`` (the
monitoring plugin adds ``VARZ``, ``CONNZ`` ...), and
``$SYS.REQ.ACCOUNT.<acc>.<X>`` for account views. In every account,
``$SYS.REQ.USER.INFO`` (nats-server 2.10): the requesting user, its account,
permissions and expiry.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from natsd.plugin.contracts import ServerAPI
from natsd.routing.connection import Kind
from natsd.routing.events import client_info, event_id
from natsd.routing.internal import SERVER_SENT
from natsd.routing.stats import account_stat, process_usage, rfc3339, server_traffic, traffic, usable_cpus

log = logging.getLogger("natsd.system")

CONNECT = "io.nats.server.advisory.v1.client_connect"
DISCONNECT = "io.nats.server.advisory.v1.client_disconnect"
ACCOUNT_CONNS = "io.nats.server.advisory.v1.account_connections"
USER_INFO = "$SYS.REQ.USER.INFO"
STATSZ_FIRST, STATSZ_MAX = 0.25, 30.0

View = Callable[[Mapping[str, Any]], Any]
"""A view answers a request's JSON options (``{}`` when empty) with a JSON-able object."""


def user_info(client: Any, account: Any) -> dict[str, Any]:
    """nats-server 2.10's UserInfo: who the requesting connection is and what it may do."""
    data: dict[str, Any] = {"user": client.user or "", "account": account.name}
    result = client.auth_result
    perms = result.permissions if result is not None else None
    if perms is not None and not perms.unrestricted:
        data["permissions"] = permissions_json(perms)
    if result is not None and result.expires is not None:
        data["expires"] = max(0, int((result.expires - time.time()) * 1e9))  # a Go duration
    return data


def permissions_json(perms: Any) -> dict[str, Any]:
    """nats-server's ``Permissions`` JSON (empty parts left out, as its ``omitempty``)."""
    out: dict[str, Any] = {}
    for kind, allow, deny in (("publish", perms.publish_allow, perms.publish_deny),
                              ("subscribe", perms.subscribe_allow, perms.subscribe_deny)):
        part = {k: list(v) for k, v in (("allow", allow), ("deny", deny)) if v}
        if part:
            out[kind] = part
    if perms.allow_responses is not None:
        out["responses"] = {"max": perms.allow_responses.max_msgs,
                            "ttl": int(perms.allow_responses.expires * 1e9)}
    return out


class SystemEvents:
    """The system account's publisher, request handlers and running totals."""

    def __init__(self, server: ServerAPI, views: Mapping[str, View]) -> None:
        self.server = server
        self.views: dict[str, View] = {"STATSZ": lambda _: self.statsz(),
                                       "HEALTHZ": lambda _: {"status": "ok", "status_code": 200}}
        self.account_views: dict[str, View] = {}
        for key, view in views.items():
            if key.startswith("ACCOUNT."):
                self.account_views[key[len("ACCOUNT."):]] = view
            else:
                self.views[key] = view
        self._statsz_delay = STATSZ_FIRST
        self._timer: Any = None
        self._conns_pending: dict[Any, None] = {}  # accounts whose CONNS events are due
        assert server.system_account is not None  # the plugin runs only with one
        self.client = server.connect_internal("system", server.system_account.name)
        sid = server.server_id
        self.client.subscribe("$SYS.REQ.SERVER.PING", self._on_ping)
        self.client.subscribe("$SYS.REQ.SERVER.PING.*", self._on_ping)
        self.client.subscribe(f"$SYS.REQ.SERVER.{sid}.*", self._on_ping)
        self.client.subscribe("$SYS.REQ.ACCOUNT.*.*", self._on_account)
        self._user_info: set[str] = set()  # accounts offering $SYS.REQ.USER.INFO
        for account in list(server.accounts.values()):
            self._offer_user_info(account)
        self._timer = server.loop.call_later(self._statsz_delay, self._statsz_tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.client.close()

    # -- publishing -----------------------------------------------------------------

    def _publish(self, subject: str, body: dict[str, Any], reply: bytes | None = None) -> None:
        """Publish an event on ``subject``, or the answer to a request on ``reply``."""
        self.client.publish(reply or subject, json.dumps(body, separators=(",", ":")).encode(),
                            reply=SERVER_SENT)

    def _advisory(self, kind: str) -> dict[str, Any]:
        return {"type": kind, "id": event_id(), "timestamp": rfc3339(time.time()),
                "server": self.server.event_server_info()}

    def client_connected(self, client: Any) -> None:
        self._offer_user_info(client.account)
        self._account_conns(client.account)
        self._publish(f"$SYS.ACCOUNT.{client.account.name}.CONNECT",
                      {**self._advisory(CONNECT), "client": client_info(client)})

    def client_closed(self, client: Any, reason: str) -> None:
        self._account_conns(client.account)
        self._disconnected(client, reason)

    def link_connected(self, link: Any) -> None:
        """A leaf-node link came up: nats-server announces it as a connection of the account."""
        if link.kind in (Kind.LEAF, Kind.HUB):
            self._publish(f"$SYS.ACCOUNT.{link.account.name}.CONNECT",
                          {**self._advisory(CONNECT), "client": client_info(link)})

    def link_closed(self, link: Any, reason: str) -> None:
        if link.kind in (Kind.LEAF, Kind.HUB):
            self._disconnected(link, reason)

    def client_dropped(self, client: Any, reason: str) -> None:
        """A connection closed before its CONNECT was accepted: nats-server 2.12 and later
        announce it in ``$G``, where it still was (2.9.10 sent ``$G`` CONNS updates)."""
        self._disconnected(client, reason)

    def _disconnected(self, client: Any, reason: str) -> None:
        in_m, in_b, out_m, out_b = client.in_msgs, client.in_bytes, client.out_msgs, client.out_bytes_total
        self._publish(f"$SYS.ACCOUNT.{client.account.name}.DISCONNECT", {
            **self._advisory(DISCONNECT), "client": client_info(client, stop=time.time()),
            "sent": traffic(out_m, out_b), "received": traffic(in_m, in_b), "reason": reason})

    def auth_failed(self, client: Any, reason: str) -> None:
        self._publish(f"$SYS.SERVER.{self.server.server_id}.CLIENT.AUTH.ERR", {
            **self._advisory(DISCONNECT), "client": client_info(client, stop=time.time()),
            "sent": traffic(0, 0), "received": traffic(0, 0), "reason": "Authentication Failure"})

    def shutdown(self) -> None:
        self._publish(f"$SYS.SERVER.{self.server.server_id}.SHUTDOWN",
                      {"server": self.server.event_server_info(), "reason": "Server Shutdown"})

    def lame_duck(self) -> None:
        self._publish(f"$SYS.SERVER.{self.server.server_id}.LAMEDUCK", self.server.event_server_info())

    def _account_conns(self, account: Any) -> None:
        """Announce the account's connection count once the current burst of connects and
        closes (one pass of the event loop) is over: one pair of events per account and
        burst, however many clients came or went in it."""
        if account is self.server.global_account:
            return  # nats-server 2.12 and later: no CONNS updates for $G
        if not self._conns_pending:
            self.server.loop.call_soon(self._publish_conns)
        self._conns_pending[account] = None

    def _publish_conns(self) -> None:
        pending, self._conns_pending = self._conns_pending, {}
        for account in pending:
            # Traffic sums reused while fresh (see natsd.routing.stats.account_traffic).
            body = {**self._advisory(ACCOUNT_CONNS), **account_stat(account, max_age=1.0)}
            self._publish(f"$SYS.SERVER.ACCOUNT.{account.name}.CONNS", body)
            body = {**body, "server": self.server.event_server_info()}
            self._publish(f"$SYS.ACCOUNT.{account.name}.SERVER.CONNS", body)

    # -- views ------------------------------------------------------------------------

    def statsz(self) -> dict[str, Any]:
        server = self.server
        mem, cpu = process_usage()
        t = server_traffic(server)
        statsz: dict[str, Any] = {
            "start": rfc3339(server.start_time), "mem": mem, "cores": os.cpu_count() or 1,
            "cpu": round(cpu), "connections": len(server.clients),
            "total_connections": server.total_connections,
            "active_accounts": sum(1 for a in server.accounts.values()
                                   if a.connected),
            "subscriptions": sum(a.sublist.count for a in server.accounts.values()),
            "sent": traffic(t.out_msgs, t.out_bytes), "sent_to_clients": traffic(t.out_msgs, t.out_bytes),
            "received": traffic(t.in_msgs, t.in_bytes),
            "received_from_clients": traffic(t.in_msgs, t.in_bytes),
            "slow_consumers": server.slow_consumers,
            # "clients" is set below: what the plugins do not count as theirs.
            "slow_consumer_stats": {"clients": 0, "routes": 0, "gateways": 0, "leafs": 0},
            "stale_connections": server.stale_connections,
            "stale_connection_stats": {"clients": 0, "routes": 0, "gateways": 0, "leafs": 0},
            "routes": [], "gateways": [], "active_servers": 1, "gomaxprocs": usable_cpus(),
        }
        server.plugins.hook.natsd_system_statsz(server=server, statsz=statsz)
        for key, total in (("slow_consumer_stats", server.slow_consumers),
                           ("stale_connection_stats", server.stale_connections)):
            kinds = statsz[key]
            kinds["clients"] = max(0, total - kinds["routes"] - kinds["gateways"] - kinds["leafs"])
        # nats-server leaves out what is empty or zero here
        for key in ("slow_consumer_stats", "stale_connection_stats"):
            if not any(statsz[key].values()):
                del statsz[key]
        for key in ("stale_connections", "routes", "gateways"):
            if not statsz[key]:
                del statsz[key]
        return statsz

    def _statsz_tick(self) -> None:
        self._publish(f"$SYS.SERVER.{self.server.server_id}.STATSZ",
                      {"server": self.server.event_server_info(), "statsz": self.statsz()})
        self._statsz_delay = min(self._statsz_delay * 2, STATSZ_MAX)
        self._timer = self.server.loop.call_later(self._statsz_delay, self._statsz_tick)

    # -- requests ---------------------------------------------------------------------

    def _on_ping(self, subject: bytes, reply: bytes | None, headers: bytes | None,
                 payload: bytes) -> None:
        if not reply:
            return
        tokens = subject.decode().split(".")
        name = "STATSZ" if len(tokens) == 4 else tokens[-1]  # bare PING answers with statsz
        if name == "IDZ":  # nats-server 2.10: the server's identity, not wrapped
            server = self.server
            self._publish("", {"name": server.name, "host": server.host, "id": server.server_id}, reply)
            return
        self._answer(self.views.get(name), name, payload, reply,
                     "statsz" if name == "STATSZ" else "data")

    def _offer_user_info(self, account: Any) -> None:
        """``$SYS.REQ.USER.INFO`` in ``account``, as nats-server imports it into every account."""
        if account.name in self._user_info:
            return
        self._user_info.add(account.name)
        self.client.subscribe(USER_INFO, lambda _s, reply, _h, _p: self._on_user_info(account, reply),
                              account=account)

    def _on_user_info(self, account: Any, reply: bytes | None) -> None:
        sender = self.client.sender
        if not reply or sender is None or not hasattr(sender, "auth_result"):
            return
        body = {"server": self.server.event_server_info(), "data": user_info(sender, account)}
        self.client.publish(reply, json.dumps(body, separators=(",", ":")).encode(), account=account)

    def _on_account(self, subject: bytes, reply: bytes | None, headers: bytes | None,
                    payload: bytes) -> None:
        if not reply:
            return
        _, _, _, acc, name = subject.decode().split(".")
        view = self.account_views.get(name)
        if name == "CONNS":
            account = self.server.accounts.get(acc)
            view = (lambda _: account_stat(account)) if account is not None else None
        self._answer(view and (lambda opts: view({**opts, "account": acc})), name, payload, reply, "data")

    def _answer(self, view: View | None, name: str, payload: bytes, reply: bytes, key: str) -> None:
        body: dict[str, Any] = {"server": self.server.event_server_info()}
        if view is None:
            body["error"] = {"code": 404, "description": f"{name} is not served by this server"}
        else:
            try:
                opts = json.loads(payload) if payload.strip() else {}
                if not isinstance(opts, dict):
                    raise ValueError("request options must be a JSON object")
                body[key] = view(opts)
            except ValueError as e:
                body["error"] = {"code": 400, "description": f"bad {name} request: {e}"}
            except Exception:
                log.exception("system view %s failed", name)
                body["error"] = {"code": 500, "description": f"{name} failed"}
        self._publish("", body, reply)

