"""Route metrics for the monitoring plugin's ``/metrics`` (imported only when it is scraped).

``nats_routez_num_routes`` per server, and per route connection (labelled
``server_id``, ``rid``, ``remote_id`` and ``remote_name``) the counters of
``/routez``: ``nats_routez_in_msgs``, ``nats_routez_out_msgs``,
``nats_routez_in_bytes``, ``nats_routez_out_bytes``, ``nats_routez_pending_bytes``
and ``nats_routez_subscriptions``, under the names the Prometheus NATS
exporter gives ``/routez``. Read when scraped, never updated per message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from .cluster import Cluster

#: ``nats_routez_<name>``: help text, per route connection.
ROUTE = {
    "in_msgs": "Messages received over the route since it connected",
    "out_msgs": "Messages sent over the route since it connected",
    "in_bytes": "Payload bytes received over the route since it connected",
    "out_bytes": "Payload bytes sent over the route since it connected",
    "pending_bytes": "Bytes queued for the route and not yet written",
    "subscriptions": "Subscriptions the remote server announced over the route",
}


class RouteCollector:
    """Collects a server's route gauges when scraped."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster

    def collect(self) -> Iterator[Metric]:
        sid = self.cluster.server.server_id
        routes = sorted(self.cluster.routes.values(), key=lambda r: r.cid)
        total = GaugeMetricFamily("nats_routez_num_routes", "Route connections open now",
                                  labels=["server_id"])
        total.add_metric([sid], len(routes))
        yield total
        labels = ["server_id", "rid", "remote_id", "remote_name"]
        families = {name: GaugeMetricFamily(f"nats_routez_{name}", text, labels=labels)
                    for name, text in ROUTE.items()}
        for route in routes:
            values = {"in_msgs": route.in_msgs, "out_msgs": route.out_msgs,
                      "in_bytes": route.in_bytes, "out_bytes": route.out_bytes_total,
                      "pending_bytes": route.out_bytes, "subscriptions": route.interest_count}
            key = [sid, str(route.cid), route.remote_id, route.remote_name]
            for name, family in families.items():
                family.add_metric(key, values[name])
        yield from families.values()
