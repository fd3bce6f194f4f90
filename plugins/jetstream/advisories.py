"""JetStream's advisories and metrics on ``$JS.EVENT.>``, with nats-server 2.15's subjects and shapes.

Each event goes into the account of its stream or consumer, and only when
someone there listens on its subject (nothing is built otherwise):

- ``$JS.EVENT.ADVISORY.API``: an audit of every API request answered
  (``api_audit``: who asked, the request and the response as text), but not
  of a message found by ``STREAM.MSG.GET``;
- ``...STREAM.CREATED|UPDATED|DELETED.<stream>`` (``stream_action``);
- ``...CONSUMER.CREATED|DELETED.<stream>.<consumer>`` (``consumer_action``),
  ``...CONSUMER.PAUSE.<stream>.<consumer>`` (``consumer_pause``);
- ``...CONSUMER.MSG_NAKED``, ``...MSG_TERMINATED`` and ``...MAX_DELIVERIES``
  ``.<stream>.<consumer>`` (``nak``, ``terminated``, ``max_deliver``);
- ``$JS.EVENT.METRIC.CONSUMER.ACK.<stream>.<consumer>`` (``consumer_ack``)
  for consumers with a ``sample_freq``.

Every body starts with ``type``, ``id`` and ``timestamp`` and ends with
``domain`` when the server has one.
"""

from __future__ import annotations

import json
import random
import time
from typing import TYPE_CHECKING, Any

from natsd.routing.events import client_info, event_id

from .streams import rfc3339

if TYPE_CHECKING:
    from .jetstream import JetStream

ADVISORY = "io.nats.jetstream.advisory.v1."
METRIC = "io.nats.jetstream.metric.v1."
PREFIX = "$JS.EVENT.ADVISORY."
ZERO_TIME = "0001-01-01T00:00:00Z"


def _go_json(value: Any) -> bytes:
    """Compact JSON with Go's escapes of ``<``, ``>`` and ``&``."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def sampled(sample_freq: str) -> bool:
    """Whether this acknowledgement is sampled at ``sample_freq`` (``"N%"`` or ``"N"``), as nats-server
    draws it."""
    text = sample_freq.strip().removesuffix("%")
    if not text.isdigit():
        return False
    rate = int(text)
    return rate >= 100 or (rate > 0 and random.randrange(100) <= rate)


class Advisories:
    """The events of one server's JetStream."""

    def __init__(self, js: JetStream) -> None:
        self.js = js

    def _send(self, account: str, subject: str, kind: str, fields: dict[str, Any]) -> None:
        client = self.js.clients.get(account)
        if client is None or not client.account.sublist.match(subject.encode()):
            return
        body = {"type": kind, "id": event_id(), "timestamp": rfc3339(time.time_ns()), **fields}
        if self.js.domain:
            body["domain"] = self.js.domain
        client.publish(subject, _go_json(body))

    def listened(self, account: str, subject: str) -> bool:
        client = self.js.clients.get(account)
        return client is not None and bool(client.account.sublist.match(subject.encode()))

    # -- the API -------------------------------------------------------------------------------------

    def api_audit(self, account: str, subject: str, request: bytes, response: bytes, requester: Any) -> None:
        if not self.listened(account, PREFIX + "API"):
            return
        fields: dict[str, Any] = {"server": self.js.server.name}
        if requester is not None and hasattr(requester, "cid"):
            fields["client"] = self._audited(requester)
        fields["subject"] = subject
        if request:
            fields["request"] = request.decode(errors="replace")
        fields["response"] = response.decode(errors="replace")
        self._send(account, PREFIX + "API", ADVISORY + "api_audit", fields)

    def _audited(self, conn: Any) -> dict[str, Any]:
        """nats-server's ``ClientInfo`` as an audit shows it: with the round trip and the server the
        client is on, without the account's name tag."""
        info = client_info(conn)
        info.pop("name_tag", None)
        out: dict[str, Any] = {}
        for key, value in info.items():
            if key == "kind":
                if conn.rtt:
                    out["rtt"] = int(conn.rtt * 1e9)
                out["server"] = self.js.server.server_id
            out[key] = value
        return out

    def stream(self, account: str, stream: str, action: str) -> None:
        event = {"create": "CREATED", "modify": "UPDATED", "delete": "DELETED"}[action]
        self._send(account, f"{PREFIX}STREAM.{event}.{stream}", ADVISORY + "stream_action",
                   {"stream": stream, "action": action})

    def consumer(self, account: str, stream: str, consumer: str, action: str) -> None:
        event = {"create": "CREATED", "delete": "DELETED"}[action]
        self._send(account, f"{PREFIX}CONSUMER.{event}.{stream}.{consumer}", ADVISORY + "consumer_action",
                   {"stream": stream, "consumer": consumer, "action": action})

    def pause(self, account: str, stream: str, consumer: str, until: int) -> None:
        """``until``: nanoseconds since the epoch, 0 once resumed."""
        self._send(account, f"{PREFIX}CONSUMER.PAUSE.{stream}.{consumer}", ADVISORY + "consumer_pause",
                   {"stream": stream, "consumer": consumer, "paused": until > time.time_ns(),
                    "pause_until": rfc3339(until) if until else ZERO_TIME})

    def batch_abandoned(self, account: str, stream: str, batch: str, reason: str) -> None:
        """An atomic batch given up (``timeout``, ``large``, ``incomplete``): to the account, and to
        the system account with the account's name."""
        subject = f"{PREFIX}STREAM.BATCH_ABANDONED.{stream}"
        kind = ADVISORY + "stream_batch_abandoned"
        tail: dict[str, Any] = {"stream": stream}
        if self.js.domain:
            tail["domain"] = self.js.domain
        tail.update(batch=batch, reason=reason)
        system = self.js.server.system_account
        targets: list[tuple[Any, dict[str, Any]]] = [(self.js.clients.get(account), {})]
        if system is not None and system.name != account:
            targets.append((self.js.system_client(), {"account": account}))
        for client, extra in targets:
            if client is not None and client.account.sublist.match(subject.encode()):
                body = {"type": kind, "id": event_id(), "timestamp": rfc3339(time.time_ns()), **extra, **tail}
                client.publish(subject, _go_json(body))

    # -- deliveries ----------------------------------------------------------------------------------

    def nak(self, account: str, stream: str, consumer: str, dseq: int, seq: int, count: int) -> None:
        self._send(account, f"{PREFIX}CONSUMER.MSG_NAKED.{stream}.{consumer}", ADVISORY + "nak",
                   {"stream": stream, "consumer": consumer, "consumer_seq": dseq, "stream_seq": seq,
                    "deliveries": count})

    def terminated(self, account: str, stream: str, consumer: str, dseq: int, seq: int, count: int,
                   reason: str) -> None:
        fields: dict[str, Any] = {"stream": stream, "consumer": consumer, "consumer_seq": dseq, "stream_seq": seq,
                                  "deliveries": count}
        if reason:
            fields["reason"] = reason
        self._send(account, f"{PREFIX}CONSUMER.MSG_TERMINATED.{stream}.{consumer}", ADVISORY + "terminated",
                   fields)

    def max_deliver(self, account: str, stream: str, consumer: str, seq: int, count: int) -> None:
        self._send(account, f"{PREFIX}CONSUMER.MAX_DELIVERIES.{stream}.{consumer}", ADVISORY + "max_deliver",
                   {"stream": stream, "consumer": consumer, "stream_seq": seq, "deliveries": count})

    def ack_metric(self, account: str, stream: str, consumer: str, dseq: int, seq: int, ack_time: int,
                   count: int) -> None:
        self._send(account, f"$JS.EVENT.METRIC.CONSUMER.ACK.{stream}.{consumer}", METRIC + "consumer_ack",
                   {"stream": stream, "consumer": consumer, "consumer_seq": dseq, "stream_seq": seq,
                    "ack_time": ack_time, "deliveries": count})
