"""The bridge's counters for ``/metrics``, read when scraped (labelled ``server_id`` and ``remote``):
``nats_mqtt_bridge_received``, ``_sent``, ``_dropped``, ``_failed``, ``_reconnects``, ``_buffered``
and ``_connected`` (1 or 0)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric

HELP = {
    "received": "Messages taken from the remote into natsd",
    "sent": "Messages delivered to the remote (acknowledged by it at QoS 1 and 2)",
    "dropped": "Messages dropped from a full buffer while the remote was away (the oldest go first)",
    "failed": "Messages natsd refused or that could not be mapped",
    "reconnects": "Times the link to the remote was lost and made again",
    "buffered": "Messages waiting for the remote",
    "connected": "1 while the remote is connected",
}


class BridgeCollector:
    def __init__(self, server: Any, key: Any) -> None:
        self.server = server
        self.key = key

    def collect(self) -> Iterator[Metric]:
        links = self.server.stash.get(self.key, None) or []
        sid = self.server.server_id
        for name, text in HELP.items():
            family = GaugeMetricFamily(f"nats_mqtt_bridge_{name}", text, labels=["server_id", "remote"])
            for link in links:
                stats = link.stats()
                family.add_metric([sid, link.remote.name], float(stats[name]))
            yield family
