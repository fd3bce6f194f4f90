"""``/metrics``: the server's counters in Prometheus' text format, read at scrape time.

Each server gets its own ``CollectorRegistry`` holding a :class:`ServerCollector`
(nats-server's ``/varz`` and per-account counters under the names the
Prometheus NATS exporter uses, ``nats_varz_in_msgs`` ...), the process
collector of ``prometheus_client`` and whatever plugins register through
``natsd_metrics``. Collectors read counters when scraped: nothing is updated
per message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from natsd.plugin.contracts import ServerAPI
from natsd.routing.stats import account_connections, account_traffic, process_usage, server_traffic

#: ``nats_varz_<name>``: help text.
VARZ = {
    "connections": "Client connections open now",
    "total_connections": "Client connections accepted since start",
    "subscriptions": "Subscriptions in every account",
    "slow_consumers": "Connections closed as slow consumers since start",
    "in_msgs": "Messages received from clients since start",
    "out_msgs": "Messages sent to clients since start",
    "in_bytes": "Payload bytes received from clients since start",
    "out_bytes": "Payload bytes sent to clients since start",
    "mem": "Resident memory of the process in bytes",
    "cpu": "CPU use of the process in percent (over the last second or more)",
    "cores": "CPU cores of the host",
    "max_connections": "Configured maximum of client connections",
    "max_payload": "Configured maximum message payload in bytes",
    "uptime_seconds": "Seconds since the server started",
}
#: ``nats_account_<name>``: help text (labelled ``account``).
ACCOUNT = {
    "connections": "Client connections of the account open now",
    "subscriptions": "Subscriptions of the account",
    "in_msgs": "Messages received from the account's clients since start",
    "out_msgs": "Messages sent to the account's clients since start",
    "in_bytes": "Payload bytes received from the account's clients since start",
    "out_bytes": "Payload bytes sent to the account's clients since start",
    "slow_consumers": "The account's connections closed as slow consumers since start",
}


class ServerCollector:
    """Collects a server's ``nats_varz_*`` and ``nats_account_*`` gauges when scraped."""

    def __init__(self, server: ServerAPI) -> None:
        self.server = server

    def collect(self) -> Iterator[Metric]:
        server = self.server
        sid = server.server_id
        traffic = server_traffic(server)
        mem, cpu = process_usage()
        values = {
            "connections": len(server.clients), "total_connections": server.total_connections,
            "subscriptions": sum(a.sublist.count for a in server.accounts.values()),
            "slow_consumers": server.slow_consumers, "in_msgs": traffic.in_msgs,
            "out_msgs": traffic.out_msgs, "in_bytes": traffic.in_bytes, "out_bytes": traffic.out_bytes,
            "mem": mem, "cpu": cpu, "cores": os.cpu_count() or 1,
            "max_connections": server.config.max_connections,
            "max_payload": server.config.max_payload,
            "uptime_seconds": time.time() - server.start_time,
        }
        for name, text in VARZ.items():
            family = GaugeMetricFamily(f"nats_varz_{name}", text, labels=["server_id"])
            family.add_metric([sid], values[name])
            yield family
        families = {name: GaugeMetricFamily(f"nats_account_{name}", text,
                                            labels=["server_id", "account"])
                    for name, text in ACCOUNT.items()}
        for account in server.accounts.values():
            t = account_traffic(account)
            row = {"connections": account_connections(account),
                   "subscriptions": account.sublist.count, "in_msgs": t.in_msgs,
                   "out_msgs": t.out_msgs, "in_bytes": t.in_bytes, "out_bytes": t.out_bytes,
                   "slow_consumers": t.slow_consumers}
            for name, family in families.items():
                family.add_metric([sid, account.name], row[name])
        yield from families.values()


def build_registry(server: ServerAPI) -> CollectorRegistry:
    """The server's registry: its counters, the process's, and the plugins' (``natsd_metrics``)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ServerCollector(server))
    ProcessCollector(registry=registry)
    server.plugins.hook.natsd_metrics(server=server, registry=registry)
    return registry


def render(registry: CollectorRegistry) -> tuple[bytes, str]:
    """``(body, content type)`` of a scrape."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
