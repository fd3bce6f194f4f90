"""OpenTelemetry spans for the messages natsd routes.

One traced message gives a ``receive <subject>`` span (kind CONSUMER) when it
enters the server, a child of the producer's context when the message carries
a W3C ``traceparent``, and under it:

- a ``send <subject>`` span (kind PRODUCER) per receiver: a subscriber on
  this server, or a route, leaf node or gateway it is forwarded to;
- a ``store <stream>`` span from the moment a JetStream stream takes the
  message until its write is durable;
- span events for the subject mapping and the crossings between accounts,
  and an error status when the publish is refused.

A stored message that a JetStream consumer delivers carries its
``traceparent`` still: that delivery becomes ``deliver <subject>``, a child
of the same producer context, with the consumer and delivery count (2 and
more: a redelivery) read from its ack subject. Headers are never changed, so
consumers continue the trace.

Attributes follow the OpenTelemetry messaging conventions
(``messaging.system = nats``, ``messaging.destination.name``,
``messaging.operation.type``/``name``, ``messaging.message.body.size``,
``messaging.client.id``, ``server.address``) plus ``nats.*`` ones (account,
connection kind, queue group). Spans go through the SDK's batching processor,
whose exporter runs on its own thread.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from natsd.routing.connection import Kind

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from natsd.plugin.contracts import ServerAPI
    from natsd.routing.account import Account
    from natsd.routing.connection import Connection
    from natsd.routing.sublist import Subscription

    from .settings import OtelSettings

log = logging.getLogger("natsd.otel")

TRIGGERS = (b"traceparent", b"Traceparent")
"""W3C propagators write ``traceparent``; ``Traceparent`` is Go's canonical header form. Other
spellings are not looked for: each name costs a search of every message's headers."""
_IMPORTS = (Kind.ACCOUNT, Kind.SERVICE_IMPORT)
_RATIO_MASK = (1 << 64) - 1


def _quick_decision(headers: bytes, parent_based: bool, bound: int | None, child_on: bool) -> bool | None:
    """The sampler's answer from a well-formed lower-case ``traceparent`` line, without parsing
    the headers (``None``: no such line; the full path decides)."""
    at = headers.find(b"\r\ntraceparent:")
    if at < 0:
        return None
    value = headers[at + 14:at + 84].strip()
    if len(value) < 55 or value[2:3] != b"-" or value[35:36] != b"-" or value[52:53] != b"-":
        return None
    try:  # a sampled message goes on to the full path, which builds the parent's context
        if parent_based:
            return None if int(value[53:55], 16) & 1 else False
        if bound is not None:
            return None if int(value[19:35], 16) < bound else False
    except ValueError:
        return None
    return None if child_on else False


def trace_context(headers: bytes) -> tuple[str | None, str | None]:
    """The ``traceparent`` and ``tracestate`` values of a NATS header block (names in any case)."""
    parent = state = None
    for line in headers.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = name.strip().lower()
        if key == b"traceparent":
            parent = value.strip().decode("latin-1")
        elif key == b"tracestate":
            state = value.strip().decode("latin-1")
    return parent, state


def parse_traceparent(value: str, state: str | None = None) -> SpanContext | None:
    """The remote span context of a W3C ``traceparent`` (``None``: not a valid one)."""
    parts = value.split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff" or (parts[0] == "00" and len(parts) != 4):
        return None
    version, trace_id, span_id, flags = parts[:4]
    if len(trace_id) != 32 or len(span_id) != 16 or len(flags) != 2:
        return None
    try:
        tid, sid, fl = int(trace_id, 16), int(span_id, 16), int(flags, 16)
        int(version, 16)
    except ValueError:
        return None
    if not tid or not sid:
        return None
    ts = TraceState.from_header([state]) if state else None
    return SpanContext(tid, sid, is_remote=True, trace_flags=TraceFlags(fl & 0x01), trace_state=ts)


class OtelTracer:
    """natsd's :class:`natsd.plugin.contracts.MessageTracer` that makes OpenTelemetry spans."""

    def __init__(self, server: ServerAPI, settings: OtelSettings, provider: TracerProvider) -> None:
        from natsd import __version__

        self.settings = settings
        self.tracer: Tracer = provider.get_tracer("natsd", __version__)
        self.triggers = TRIGGERS
        self.every = settings.start_traces
        self.root_ratio = settings.root_ratio
        base = settings.sampler.removeprefix("parentbased_")
        self._parent_based = settings.parent_based
        self._child_on = base != "always_off"
        self._child_bound = round(settings.ratio * (1 << 64)) if base == "traceidratio" else None
        self.server = server
        self._server_attrs: dict[str, Any] = {}
        self.traced = 0
        """Messages traced (sampled in) since start."""

    def sampled(self, parent: SpanContext | None) -> bool:
        """The sampler's decision for a message (``parent``: the producer's context)."""
        if parent is None:
            return self.every and (self.root_ratio >= 1.0 or random.random() < self.root_ratio)
        if self._parent_based:
            return parent.trace_flags.sampled
        if self._child_bound is not None:
            return (parent.trace_id & _RATIO_MASK) < self._child_bound
        return self._child_on

    def begin(self, client: Connection, account: Account, subject: bytes, reply: bytes | None,
              headers: bytes | None, size: int) -> MessageSpans | None:
        parent = None
        if headers:
            quick = _quick_decision(headers, self._parent_based, self._child_bound, self._child_on)
            if quick is False:
                return None  # decided from the traceparent's bytes: no parsing, no objects
            value, state = trace_context(headers)
            if value is not None:
                parent = parse_traceparent(value, state)
        if not self.sampled(parent):
            return None
        if not self._server_attrs:  # the port is known once the server listens
            server = self.server
            self._server_attrs = {"messaging.system": "nats", "server.address": server.host,
                                  "server.port": server.port}
        self.traced += 1
        return MessageSpans(self, client, account, subject, reply, headers, size, parent)


def _kind_name(conn: Connection) -> str:
    kind = conn.kind
    return "Leafnode" if kind is Kind.HUB else kind.label if isinstance(kind, Kind) else str(kind)


class MessageSpans:
    """The spans of one traced message (a :class:`natsd.plugin.contracts.MessageTrace`)."""

    __slots__ = ("owner", "account", "span", "context", "subject", "deliveries", "_store_start")

    only = False

    def __init__(self, owner: OtelTracer, client: Connection, account: Account, subject: bytes,
                 reply: bytes | None, headers: bytes | None, size: int,
                 parent: SpanContext | None) -> None:
        self.owner = owner
        self.account = account
        self.subject = subject
        self.deliveries = 0
        self._store_start: list[int] = []
        text = subject.decode("utf-8", "replace")
        attrs = dict(owner._server_attrs)
        attrs.update({
            "messaging.destination.name": text,
            "messaging.message.body.size": size - (len(headers) if headers else 0),
            "messaging.client.id": str(client.cid),
            "nats.account": account.name,
        })
        # what is not said is the common case (every attribute costs the SDK a check per span)
        if client.kind is not Kind.CLIENT:
            attrs["nats.connection.kind"] = _kind_name(client)
        if client.transport not in ("tcp", "unix"):
            attrs["network.protocol.name"] = client.transport
        if client.name:
            attrs["nats.client.name"] = client.name
        if client.remote:
            attrs["network.peer.address"] = client.remote[0]
            attrs["network.peer.port"] = client.remote[1]
        if client.transport == "mqtt" and headers:
            at = headers.find(b"Nmqtt-Pub:")  # the QoS the device published with (nats-server's header)
            if at >= 0:
                qos = headers[at + 10:at + 12].strip()[:1]
                if qos.isdigit():
                    attrs["nats.mqtt.qos"] = int(qos)
        operation, name = "receive", "publish"
        if reply is not None:
            attrs["nats.reply"] = reply.decode("utf-8", "replace")
            if client.kind is Kind.JETSTREAM and reply.startswith(b"$JS.ACK."):
                operation = name = "deliver"
                attrs.update(_ack_attributes(reply))
        attrs["messaging.operation.type"] = "receive" if operation == "receive" else "send"
        attrs["messaging.operation.name"] = name
        context = set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
        self.span: Span = owner.tracer.start_span(f"{operation} {text}", context=context,
                                                  kind=SpanKind.CONSUMER if operation == "receive"
                                                  else SpanKind.PRODUCER, attributes=attrs)
        self.context = set_span_in_context(self.span)

    # -- the router's reports ---------------------------------------------------

    def mapped(self, subject: bytes) -> None:
        self.span.add_event("subject mapped", {"messaging.destination.name": subject.decode("utf-8", "replace")})

    def refused(self, error: str) -> None:
        self.span.set_status(Status(StatusCode.ERROR, error))

    def stream_export(self, account: Account, subject: bytes) -> None:
        self.span.add_event("stream import", {"nats.account": account.name,
                                              "messaging.destination.name": subject.decode("utf-8", "replace")})

    def service_import(self, account: Account, subject: bytes, to: bytes) -> None:
        self.span.add_event("service import", {"nats.account": account.name,
                                               "messaging.destination.name": to.decode("utf-8", "replace")})

    def delivered(self, sub: Subscription, subject: bytes, error: str | None) -> bool:
        client = sub.client
        if client.kind in _IMPORTS:
            return True  # the crossing itself is an event; its receivers get their own spans
        if client.kind is Kind.JETSTREAM and error is None:
            return True  # the stream reports its write (hold/stored)
        self.deliveries += 1
        if error is not None:
            self.span.add_event("not delivered", {"messaging.client.id": str(client.cid),
                                                  "exception.message": error})
            return False
        if self.owner.settings.delivery_spans:
            attrs: dict[str, Any] = {
                "messaging.system": "nats",
                "messaging.operation.type": "send",
                "messaging.operation.name": "deliver",
                "messaging.destination.name": subject.decode("utf-8", "replace"),
                "messaging.destination.subscription.name": sub.subject.decode("utf-8", "replace"),
                "messaging.client.id": str(client.cid),
            }
            if client.account is not self.account:
                attrs["nats.account"] = client.account.name
            if client.kind is not Kind.CLIENT:
                attrs["nats.connection.kind"] = _kind_name(client)
            if sub.queue:
                attrs["messaging.consumer.group.name"] = sub.queue.decode("utf-8", "replace")
            if client.name:
                attrs["nats.client.name"] = client.name
            self.owner.tracer.start_span(f"send {attrs['messaging.destination.name']}", context=self.context,
                                         kind=SpanKind.PRODUCER, attributes=attrs).end()
        return True

    def forwarded(self, link: Connection, subject: bytes, queues: Sequence[bytes],
                  headers: bytes) -> bytes | None:
        self.deliveries += 1
        attrs: dict[str, Any] = {
            "messaging.system": "nats",
            "messaging.operation.type": "send",
            "messaging.operation.name": "forward",
            "messaging.destination.name": subject.decode("utf-8", "replace"),
            "nats.connection.kind": _kind_name(link),
            "nats.link.cid": link.cid,
        }
        if link.name:
            attrs["nats.link.name"] = link.name
        if queues:
            attrs["messaging.consumer.group.name"] = ",".join(q.decode("utf-8", "replace") for q in queues)
        self.owner.tracer.start_span(f"send {attrs['messaging.destination.name']}", context=self.context,
                                     kind=SpanKind.PRODUCER, attributes=attrs).end()
        return headers

    def hold(self) -> Callable[[], None]:
        self._store_start.append(time.time_ns())
        return _noop

    def stored(self, stream: str, subject: bytes, error: str | None = None, no_interest: bool = False) -> None:
        start = self._store_start.pop(0) if self._store_start else time.time_ns()
        attrs: dict[str, Any] = {
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.operation.name": "store",
            "messaging.destination.name": subject.decode("utf-8", "replace"),
            "nats.jetstream.stream": stream,
        }
        if no_interest:
            attrs["nats.jetstream.no_interest"] = True
        span = self.owner.tracer.start_span(f"store {stream}", context=self.context, kind=SpanKind.INTERNAL,
                                            attributes=attrs, start_time=start)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def end(self) -> None:
        self.span.set_attribute("nats.deliveries", self.deliveries)
        self.span.end()


def _noop() -> None:
    pass


def _ack_attributes(reply: bytes) -> dict[str, Any]:
    """The consumer and delivery count of a JetStream delivery, from its ack subject
    (``$JS.ACK.<stream>.<consumer>.<delivered>...``, or the form with a domain and account hash)."""
    tokens = reply.decode("utf-8", "replace").split(".")
    if len(tokens) >= 12:  # $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>...
        tokens = tokens[:2] + tokens[4:]
    if len(tokens) < 5:
        return {}
    attrs: dict[str, Any] = {"nats.jetstream.stream": tokens[2], "messaging.consumer.group.name": tokens[3]}
    try:
        delivered = int(tokens[4])
    except ValueError:
        return attrs
    attrs["nats.jetstream.delivered"] = delivered
    attrs["nats.jetstream.redelivered"] = delivered > 1
    return attrs


class CountingExporter(SpanExporter):
    """Wraps the real exporter: failures are counted and logged once (and the recovery),
    never raised into the SDK's export thread."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.exported = 0
        self.failed = 0
        self.failing = False

    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:
            result = SpanExportResult.FAILURE
            reason = str(exc)
        else:
            reason = "the exporter reported a failure"
        if result is SpanExportResult.SUCCESS:
            self.exported += len(spans)
            if self.failing:
                self.failing = False
                log.warning("OpenTelemetry export works again")
        else:
            self.failed += len(spans)
            if not self.failing:
                self.failing = True
                log.warning("OpenTelemetry export failed (%s); dropping spans until it works again", reason)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
