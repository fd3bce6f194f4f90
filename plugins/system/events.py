"""System-account events and requests, with nats-server 2.9's subjects and JSON shapes.

Published in the system account (``system_account``, default ``$SYS``):

- ``$SYS.ACCOUNT.<acc>.CONNECT`` / ``.DISCONNECT``: ``client_connect`` and
  ``client_disconnect`` advisories for every client of ``<acc>``;
- ``$SYS.ACCOUNT.<acc>.SERVER.CONNS`` and ``$SYS.SERVER.ACCOUNT.<acc>.CONNS``:
  the account's connection count after each change;
- ``$SYS.SERVER.<id>.CLIENT.AUTH.ERR``: a refused CONNECT;
- ``$SYS.SERVER.<id>.STATSZ``: server statistics, every 0.25 s doubling up
  to every 30 s after start, as nats-server paces them;
- ``$SYS.SERVER.<id>.SHUTDOWN``: the server is stopping;
- ``$SYS.SERVER.<id>.LAMEDUCK``: the server entered lame-duck mode (nats-server
  2.10's event: the server's identity, as in every event's ``server`` object).

Answered: ``$SYS.REQ.SERVER.PING`` and ``$SYS.REQ.SERVER.PING.<X>`` (every
server), ``$SYS.REQ.SERVER.<id>.<X>`` (this one) for ``STATSZ`` and
``HEALTHZ``, plus whatever views plugins register through
``natsd_system_views`` (the monitoring plugin adds ``VARZ``, ``CONNZ`` ...),
and ``$SYS.REQ.ACCOUNT.<acc>.<X>`` for account views.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import resource
import secrets
import string
import time
from collections.abc import Callable, Mapping
from typing import Any

log = logging.getLogger("natsd.system")

CONNECT = "io.nats.server.advisory.v1.client_connect"
DISCONNECT = "io.nats.server.advisory.v1.client_disconnect"
ACCOUNT_CONNS = "io.nats.server.advisory.v1.account_connections"
STATSZ_FIRST, STATSZ_MAX = 0.25, 30.0
_NUID = string.ascii_letters + string.digits

View = Callable[[Mapping[str, Any]], Any]
"""A view answers a request's JSON options (``{}`` when empty) with a JSON-able object."""


def rfc3339(ts: float) -> str:
    """A Unix time as Go's ``time.Time`` marshals it (UTC, with a ``Z``)."""
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def event_id() -> str:
    """A 22-character id like nats-server's NUIDs."""
    return "".join(secrets.choice(_NUID) for _ in range(22))


def client_info(client: Any, *, stop: float | None = None) -> dict[str, Any]:
    """nats-server's ``ClientInfo`` of a connection (empty fields left out, as Go does)."""
    info: dict[str, Any] = {"start": rfc3339(client.start), "host": (client.remote or ("",))[0],
                            "id": client.cid, "acc": client.account.name}
    opts = client.connect_options
    user = client.user or opts.get("user") or opts.get("nkey")
    for key, value in (("user", user), ("name", client.name), ("lang", client.lang),
                       ("ver", client.version)):
        if value:
            info[key] = value
    if stop is not None:
        info["stop"] = rfc3339(stop)
    info["kind"] = "Client"
    info["client_type"] = {"websocket": "websocket", "mqtt": "mqtt"}.get(client.kind, "nats")
    return info


def _traffic(msgs: int, nbytes: int) -> dict[str, int]:
    return {"msgs": msgs, "bytes": nbytes}


class SystemEvents:
    """The system account's publisher, request handlers and running totals."""

    def __init__(self, server: Any, views: Mapping[str, View]) -> None:
        self.server = server
        self.views: dict[str, View] = {"STATSZ": lambda _: self.statsz(), "HEALTHZ": lambda _: {"status": "ok"}}
        self.account_views: dict[str, View] = {}
        for key, view in views.items():
            if key.startswith("ACCOUNT."):
                self.account_views[key[len("ACCOUNT."):]] = view
            else:
                self.views[key] = view
        self.started = time.time()
        self.total_connections = 0  # clients that sent CONNECT, refused ones included (nats-server's count)
        # Totals of closed connections; live ones are summed when asked.
        self.closed_in = [0, 0]
        self.closed_out = [0, 0]
        # account name -> [in msgs, in bytes, out msgs, out bytes, slow consumers] of closed clients
        self.by_account: dict[str, list[int]] = {}
        self._cpu = (time.monotonic(), time.process_time())
        self._statsz_delay = STATSZ_FIRST
        self._timer: Any = None
        self.client = server.connect_internal("system", server.system_account.name)
        sid = server.server_id
        self.client.subscribe("$SYS.REQ.SERVER.PING", self._on_ping)
        self.client.subscribe("$SYS.REQ.SERVER.PING.*", self._on_ping)
        self.client.subscribe(f"$SYS.REQ.SERVER.{sid}.*", self._on_ping)
        self.client.subscribe("$SYS.REQ.ACCOUNT.*.*", self._on_account)
        self._timer = server.loop.call_later(self._statsz_delay, self._statsz_tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.client.close()

    # -- publishing -----------------------------------------------------------------

    def _publish(self, subject: str, body: dict[str, Any], reply: bytes | None = None) -> None:
        self.client.publish(reply or subject, json.dumps(body, separators=(",", ":")).encode())

    def _advisory(self, kind: str) -> dict[str, Any]:
        return {"type": kind, "id": event_id(), "timestamp": rfc3339(time.time()),
                "server": self.server.event_server_info()}

    def client_connected(self, client: Any) -> None:
        self.total_connections += 1
        self._account_conns(client.account)
        self._publish(f"$SYS.ACCOUNT.{client.account.name}.CONNECT",
                      {**self._advisory(CONNECT), "client": client_info(client)})

    def client_closed(self, client: Any, reason: str) -> None:
        in_m, in_b, out_m, out_b = client.in_msgs, client.in_bytes, client.out_msgs, client.out_bytes_total
        self.closed_in[0] += in_m
        self.closed_in[1] += in_b
        self.closed_out[0] += out_m
        self.closed_out[1] += out_b
        acc = self.by_account.setdefault(client.account.name, [0, 0, 0, 0, 0])
        for i, v in enumerate((in_m, in_b, out_m, out_b, reason.startswith("Slow Consumer"))):
            acc[i] += v
        self._account_conns(client.account)
        self._publish(f"$SYS.ACCOUNT.{client.account.name}.DISCONNECT", {
            **self._advisory(DISCONNECT), "client": client_info(client, stop=time.time()),
            "sent": _traffic(out_m, out_b), "received": _traffic(in_m, in_b), "reason": reason})

    def auth_failed(self, client: Any, reason: str) -> None:
        self.total_connections += 1
        self._publish(f"$SYS.SERVER.{self.server.server_id}.CLIENT.AUTH.ERR", {
            **self._advisory(DISCONNECT), "client": client_info(client, stop=time.time()),
            "sent": _traffic(0, 0), "received": _traffic(0, 0), "reason": "Authentication Failure"})

    def shutdown(self) -> None:
        self._publish(f"$SYS.SERVER.{self.server.server_id}.SHUTDOWN",
                      {"server": self.server.event_server_info(), "reason": "Server Shutdown"})

    def lame_duck(self) -> None:
        self._publish(f"$SYS.SERVER.{self.server.server_id}.LAMEDUCK", self.server.event_server_info())

    def _account_conns(self, account: Any) -> None:
        body = {**self._advisory(ACCOUNT_CONNS), **self.account_conns(account)}
        self._publish(f"$SYS.SERVER.ACCOUNT.{account.name}.CONNS", body)
        body = {**body, "server": self.server.event_server_info()}
        self._publish(f"$SYS.ACCOUNT.{account.name}.SERVER.CONNS", body)

    # -- views ------------------------------------------------------------------------

    def account_conns(self, account: Any) -> dict[str, Any]:
        """The ``account_connections`` body of ``account`` (without type, id, server)."""
        live = [c for c in account.clients if getattr(c, "connected", False)]
        totals = list(self.by_account.get(account.name, [0, 0, 0, 0, 0]))
        for c in live:
            totals[0] += c.in_msgs
            totals[1] += c.in_bytes
            totals[2] += c.out_msgs
            totals[3] += c.out_bytes_total
        return {"acc": account.name, "conns": len(live), "leafnodes": 0, "total_conns": len(live),
                "sent": _traffic(totals[2], totals[3]), "received": _traffic(totals[0], totals[1]),
                "slow_consumers": totals[4]}

    def statsz(self) -> dict[str, Any]:
        server = self.server
        clients = list(server.clients.values())
        now_m, now_cpu = time.monotonic(), time.process_time()
        then_m, then_cpu = self._cpu
        cpu = 100.0 * (now_cpu - then_cpu) / (now_m - then_m) if now_m > then_m else 0.0
        self._cpu = (now_m, now_cpu)
        return {
            "start": rfc3339(self.started), "mem": _rss(), "cores": os.cpu_count() or 1,
            "cpu": round(cpu), "connections": len(clients), "total_connections": self.total_connections,
            "active_accounts": sum(1 for a in server.accounts.values()
                                   if any(getattr(c, "connected", False) for c in a.clients)),
            "subscriptions": sum(a.sublist.count for a in server.accounts.values()),
            "sent": _traffic(self.closed_out[0] + sum(c.out_msgs for c in clients),
                             self.closed_out[1] + sum(c.out_bytes_total for c in clients)),
            "received": _traffic(self.closed_in[0] + sum(c.in_msgs for c in clients),
                                 self.closed_in[1] + sum(c.in_bytes for c in clients)),
            "slow_consumers": server.slow_consumers, "active_servers": 1,
        }

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
        self._answer(self.views.get(name), name, payload, reply,
                     "statsz" if name == "STATSZ" else "data")

    def _on_account(self, subject: bytes, reply: bytes | None, headers: bytes | None,
                    payload: bytes) -> None:
        if not reply:
            return
        _, _, _, acc, name = subject.decode().split(".")
        view = self.account_views.get(name)
        if name == "CONNS":
            account = self.server.accounts.get(acc)
            view = (lambda _: self.account_conns(account)) if account is not None else None
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


def _rss() -> int:
    """Resident memory in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
