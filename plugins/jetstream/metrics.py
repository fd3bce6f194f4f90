"""JetStream metrics for the monitoring plugin's ``/metrics`` (imported only when it is scraped).

Per server (labelled ``server_id``): ``nats_jetstream_streams``,
``nats_jetstream_consumers``, ``nats_jetstream_messages``,
``nats_jetstream_bytes``, ``nats_jetstream_api_requests``,
``nats_jetstream_api_errors``, ``nats_jetstream_syncs`` (writes made durable
by the file store's group commit) and ``nats_jetstream_damaged_messages``.
Per stream (``account``, ``stream``): ``nats_jetstream_stream_messages``,
``..._bytes``, ``..._first_seq``, ``..._last_seq``, ``..._consumers``. Per
consumer (``account``, ``stream``, ``consumer``):
``nats_jetstream_consumer_num_pending``, ``..._num_ack_pending``,
``..._num_redelivered``, ``..._num_waiting``. Read when scraped, never
updated per message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from .jetstream import JetStream


class JetStreamCollector:
    """Collects a server's JetStream gauges when scraped."""

    def __init__(self, js: JetStream) -> None:
        self.js = js

    def collect(self) -> Iterator[Metric]:
        js = self.js
        sid = js.server.server_id
        streams = [(account, s) for account, group in js.streams.items() for s in group.values()]
        totals = {
            "streams": ("Streams of every account", len(streams)),
            "consumers": ("Consumers of every stream", sum(len(s.consumers) for _, s in streams)),
            "messages": ("Messages stored", sum(s.store.state().msgs for _, s in streams)),
            "bytes": ("Bytes stored, as the streams count them", sum(s.store.state().bytes for _, s in streams)),
            "api_requests": ("JetStream API requests answered", js.api_total),
            "api_errors": ("JetStream API requests answered with an error", js.api_errors),
            "syncs": ("Durable writes of the file store (each covering every publish waiting for it)",
                      sum(getattr(b, "syncs", 0) for b in js.backends.values() if b is not None)),
            "damaged_messages": ("Stored records whose checksum failed (never served)",
                                 sum(getattr(b, "corrupt", 0) for b in js.backends.values() if b is not None)),
        }
        for name, (text, value) in totals.items():
            family = GaugeMetricFamily(f"nats_jetstream_{name}", text, labels=["server_id"])
            family.add_metric([sid], value)
            yield family
        per_stream = {name: GaugeMetricFamily(f"nats_jetstream_stream_{name}", text,
                                              labels=["server_id", "account", "stream"])
                      for name, text in (("messages", "Messages in the stream"), ("bytes", "Bytes in the stream"),
                                         ("first_seq", "First sequence"), ("last_seq", "Last sequence"),
                                         ("consumers", "Consumers of the stream"))}
        per_consumer = {name: GaugeMetricFamily(f"nats_jetstream_consumer_{name}", text,
                                                labels=["server_id", "account", "stream", "consumer"])
                        for name, text in (("num_pending", "Messages the consumer has not reached"),
                                           ("num_ack_pending", "Messages delivered and not acknowledged"),
                                           ("num_redelivered", "Messages delivered more than once"),
                                           ("num_waiting", "Pull requests waiting"))}
        for account, stream in streams:
            state = stream.store.state()
            key = [sid, account, stream.name]
            for name, value in (("messages", state.msgs), ("bytes", state.bytes), ("first_seq", state.first_seq),
                                ("last_seq", state.last_seq), ("consumers", len(stream.consumers))):
                per_stream[name].add_metric(key, value)
            for consumer in stream.consumers.values():
                ckey = [*key, consumer.name]
                per_consumer["num_pending"].add_metric(ckey, consumer.num_pending())
                per_consumer["num_ack_pending"].add_metric(ckey, len(consumer.pending))
                per_consumer["num_redelivered"].add_metric(
                    ckey, sum(1 for count in consumer.deliveries.values() if count > 1))
                per_consumer["num_waiting"].add_metric(ckey, len(consumer.waiting))
        yield from per_stream.values()
        yield from per_consumer.values()
