"""Statistics the core keeps for monitoring, at connection cost, never per message.

Live connections count their own traffic (``in_msgs``, ``out_bytes_total``
... on :class:`natsd.conn.client.Client`). When one closes, :func:`record_close`
adds its traffic to the server's and its account's :class:`Totals` and keeps
a :class:`ClosedClient` snapshot in the server's bounded ring
(``max_closed_clients``, 10000 as in nats-server), which monitoring lists as
closed connections with their reason. :func:`server_traffic` and
:func:`account_traffic` add the live connections to the closed totals when
asked. :func:`process_usage` samples the process's memory and CPU. The JSON
shapes monitoring and system events share (:func:`account_stat`,
:func:`data_stats`) live here too.
"""

from __future__ import annotations

import datetime
import os
import resource
import time
from collections.abc import Iterable
from typing import Any

from .sublist import Subscription

CPU_WINDOW = 1.0
"""Seconds over which the CPU percentage is measured (nats-server samples every second)."""


class Totals:
    """Message and byte counts, in and out, and slow consumers of a set of connections."""

    __slots__ = ("in_msgs", "in_bytes", "out_msgs", "out_bytes", "slow_consumers")

    def __init__(self) -> None:
        self.in_msgs = self.in_bytes = self.out_msgs = self.out_bytes = self.slow_consumers = 0

    def add(self, client: Any) -> Totals:
        """Add one connection's counters (returns self)."""
        self.in_msgs += client.in_msgs
        self.in_bytes += client.in_bytes
        self.out_msgs += client.out_msgs
        self.out_bytes += client.out_bytes_total
        return self

    def plus(self, clients: Iterable[Any]) -> Totals:
        """A copy with the counters of ``clients`` added."""
        out = Totals()
        for name in self.__slots__:
            setattr(out, name, getattr(self, name))
        for client in clients:
            out.add(client)
        return out


class ClosedClient:
    """What is kept of a closed connection (nats-server's ``closedClient``).

    It has the attributes of a :class:`~natsd.conn.client.Client` that monitoring
    reads, with ``subs`` detached from the connection (their ``client`` is
    ``None``) and nothing pending.
    """

    __slots__ = ("cid", "kind", "transport", "remote", "start", "last", "stop", "close_reason", "name", "lang",
                 "version", "auth_user", "account", "in_msgs", "in_bytes", "out_msgs",
                 "out_bytes_total", "subs", "connect_options", "tls")

    out_bytes = 0
    closed = True

    def __init__(self, client: Any, stop: float) -> None:
        self.cid = client.cid
        self.kind = client.kind
        self.transport = client.transport
        self.remote = client.remote
        self.start = client.start
        self.last = client.last
        self.stop = stop
        self.close_reason = client.close_reason
        self.name, self.lang, self.version = client.name, client.lang, client.version
        self.auth_user = authorized_user(client)
        self.account = client.account
        self.in_msgs, self.in_bytes = client.in_msgs, client.in_bytes
        self.out_msgs, self.out_bytes_total = client.out_msgs, client.out_bytes_total
        self.subs = {sid: _detached(sub) for sid, sub in client.subs.items()}
        self.connect_options: dict[str, Any] = {}  # not kept (credentials)
        self.tls = client.tls  # what its TLS handshake negotiated (None: plaintext)


def _detached(sub: Subscription) -> Subscription:
    copy = Subscription(None, sub.subject, sub.queue, sub.sid)
    copy.delivered, copy.max_msgs = sub.delivered, sub.max_msgs
    return copy


def authorized_user(client: Any) -> str:
    """The user a connection authenticated as: its nkey, user name or JWT user ("" if none)."""
    opts = client.connect_options
    return opts.get("nkey") or opts.get("user") or (client.user if opts.get("jwt") else "") or ""


def record_close(server: Any, client: Any) -> None:
    """Count a closed connection's traffic and keep its snapshot (called by the core)."""
    slow = client.close_reason.startswith("Slow Consumer")
    for totals in (server.closed_totals, client.account.closed_totals):
        totals.add(client)
        totals.slow_consumers += slow
    ring = server.closed_clients
    if ring.maxlen:
        ring.append(ClosedClient(client, time.time()))


def server_traffic(server: Any) -> Totals:
    """Traffic of every client connection since start (closed ones included)."""
    return server.closed_totals.plus(server.clients.values())


def account_traffic(account: Any, max_age: float = 0.0) -> Totals:
    """Traffic of ``account``'s client connections since start (closed ones included).

    Adding up the live connections costs one step per connection: with
    ``max_age`` the last sum is reused while it is at most that old (seconds)
    and no client of the account has published since (a client's read that
    published drops it), so that the events sent at every connect and close
    do not cost more as connections grow. Deliveries into the account from
    elsewhere (imports, in-process clients) show within ``max_age``.
    """
    now = time.monotonic()
    cached = account.traffic_cache
    if max_age and cached is not None and now - cached[0] <= max_age:
        return cached[1]
    totals = account.closed_totals.plus(c for c in account.clients if getattr(c, "connected", False))
    account.traffic_cache = (now, totals)
    return totals


def account_connections(account: Any) -> int:
    """Client connections of ``account`` that are connected (CONNECT accepted) now."""
    return int(account.connected)


def traffic(msgs: int, nbytes: int) -> dict[str, int]:
    """``{"msgs": ..., "bytes": ...}``: nats-server's ``MsgBytes`` (what a disconnect event
    counts, and the parts of :func:`data_stats`)."""
    return {"msgs": msgs, "bytes": nbytes}


def data_stats(msgs: int, nbytes: int) -> dict[str, Any]:
    """nats-server 2.15.1's ``DataStats``: the totals and the parts that went over gateways,
    routes and leaf nodes (none: natsd's core has no such connections)."""
    return {**traffic(msgs, nbytes), "gateways": traffic(0, 0), "routes": traffic(0, 0),
            "leafs": traffic(0, 0)}


def account_stat(account: Any, max_age: float = 0.0) -> dict[str, Any]:
    """nats-server's ``AccountStat`` of ``account``: the body of the system account's
    ``account_connections`` event and an entry of monitoring's ``/accstatz``
    (``max_age``: see :func:`account_traffic`)."""
    conns = account_connections(account)
    t = account_traffic(account, max_age)
    return {"acc": account.name, "name": account.tag, "conns": conns, "leafnodes": 0,
            "total_conns": conns, "num_subscriptions": account.sublist.count,
            "sent": data_stats(t.out_msgs, t.out_bytes), "received": data_stats(t.in_msgs, t.in_bytes),
            "slow_consumers": t.slow_consumers}


def rfc3339(ts: float) -> str:
    """A Unix time as Go's ``time.Time`` marshals it (UTC, with a ``Z``)."""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat().replace("+00:00", "Z")


_cpu_sample = (time.monotonic(), time.process_time(), 0.0)


def process_usage() -> tuple[int, float]:
    """``(resident memory in bytes, CPU percent)``; the percentage covers the last second or more."""
    global _cpu_sample
    then, then_cpu, pcpu = _cpu_sample
    now, now_cpu = time.monotonic(), time.process_time()
    if now - then >= CPU_WINDOW:
        pcpu = round(100.0 * (now_cpu - then_cpu) / (now - then), 2)
        _cpu_sample = (now, now_cpu, pcpu)
    return _rss(), pcpu


def usable_cpus() -> int:
    """The CPUs this process may run on (what nats-server reports as ``gomaxprocs``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
