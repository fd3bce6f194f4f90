"""Consumers: views over a stream that deliver its messages and track their acknowledgements.

A :class:`Consumer` keeps nats-server's bookkeeping: the next stream
sequence to look at, the consumer sequence of each delivery, the messages
delivered and not yet acknowledged (``pending``), how often each was
delivered, the acknowledgement floor. Deliveries go to a push consumer's
``deliver_subject`` or to the inboxes of waiting pull requests
(``$JS.API.CONSUMER.MSG.NEXT``), framed with the stored message's subject and
the ``$JS.ACK`` reply that the client acknowledges on.

Delivery runs at most once per event-loop pass per consumer (a new message,
a pull request, an acknowledgement that frees ``max_ack_pending``, a
redelivery deadline), never as a task per message. A durable consumer's
config and state are saved with the stream's next commit.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from natsd.routing.subjects import subject_matches, subjects_collide

from .errors import api_error
from .streams import NS, rfc3339

if TYPE_CHECKING:
    import asyncio

    from natsd.routing.sublist import Subscription

    from .store.base import StoredMsg
    from .streams import Stream

log = logging.getLogger("natsd.jetstream")

DEFAULT_ACK_WAIT = 30 * NS
DEFAULT_MAX_ACK_PENDING = 1000
DEFAULT_MAX_WAITING = 512
DEFAULT_INACTIVE = 5 * NS
"""How long an ephemeral consumer lives without interest (nats-server's default)."""

DELIVER_POLICIES = ("all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject")
ACK_POLICIES = ("none", "all", "explicit")
REPLAY_POLICIES = ("instant", "original")

STATUS_NO_MESSAGES = b"NATS/1.0 404 No Messages\r\n\r\n"
STATUS_HEARTBEAT = b"NATS/1.0 100 Idle Heartbeat\r\n"


def new_name() -> str:
    """An ephemeral consumer's name: 22 characters, as nats-server generates them."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "".join(alphabet[b % 62] for b in os.urandom(22))


def _parse_time(text: str) -> int:
    """RFC 3339 (with nanoseconds) to nanoseconds since the epoch."""
    import datetime

    main, _, frac = text.rstrip("Z").partition(".")
    when = datetime.datetime.fromisoformat(main).replace(tzinfo=datetime.UTC)
    digits = "".join(c for c in frac if c.isdigit())[:9].ljust(9, "0") if frac else "0"
    return int(when.timestamp()) * NS + int(digits)


class PullRequest:
    """One waiting ``MSG.NEXT`` request."""

    __slots__ = ("reply", "batch", "max_bytes", "expires", "no_wait", "heartbeat", "sent_bytes", "last_beat")

    def __init__(self, reply: bytes, batch: int, max_bytes: int, expires: int, no_wait: bool,
                 heartbeat: int) -> None:
        self.reply = reply
        self.batch = batch
        self.max_bytes = max_bytes
        self.expires = expires
        self.no_wait = no_wait
        self.heartbeat = heartbeat
        self.sent_bytes = 0
        self.last_beat = time.time_ns()


class Consumer:
    """One consumer of one stream (see the module docstring)."""

    def __init__(self, stream: Stream, name: str, config: dict[str, Any], created: str,
                 state: Mapping[str, Any] | None = None) -> None:
        self._last_per_subject: list[int] | None = None
        self.stream = stream
        self.name = name
        self.config = config
        self.created = created
        self.durable = bool(config.get("durable_name"))
        filters = config.get("filter_subjects") or ([config["filter_subject"]] if config.get("filter_subject")
                                                     else [])
        self.filters: list[str] = filters or [">"]
        state = state or {}
        self.dseq = int(state.get("dseq", 0))
        self.cursor = int(state.get("cursor", 0)) or self._start_seq()
        self.floor_stream = int(state.get("floor_stream", self.cursor - 1))
        self.floor_consumer = int(state.get("floor_consumer", self.dseq))
        self.pending: dict[int, tuple[int, int]] = {int(k): (v[0], v[1]) for k, v in
                                                     state.get("pending", {}).items()}
        """stream seq -> (consumer seq of its latest delivery, delivery time ns), awaiting ack."""
        self.deliveries: dict[int, int] = {int(k): v for k, v in state.get("deliveries", {}).items()}
        """stream seq -> times delivered, for messages delivered more than once and still pending."""
        self.redeliver: list[int] = []
        """stream seqs due again (a heap: lowest first, as nats-server)."""
        self.num_redelivered = int(state.get("num_redelivered", 0))
        self.waiting: deque[PullRequest] = deque()
        self.last_active = 0
        self.paused_until = 0
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._beat_timer: asyncio.TimerHandle | None = None
        self._ack_sub: Subscription | None = None
        self._last_delivery = time.time_ns()
        self._idle_since = time.time_ns()
        self.closed = False
        for seq in sorted(self.pending):  # after a restart, pending messages are due again
            heapq.heappush(self.redeliver, seq)

    # -- config ----------------------------------------------------------------------------------------

    @property
    def pull(self) -> bool:
        return not self.config.get("deliver_subject")

    @property
    def ack_none(self) -> bool:
        return self.config["ack_policy"] == "none"

    def _start_seq(self) -> int:
        """The first stream sequence the deliver policy points at."""
        cfg, store = self.config, self.stream.store
        state = store.state()
        policy = cfg["deliver_policy"]
        if policy == "new":
            return state.last_seq + 1
        if policy == "by_start_sequence":
            return max(int(cfg.get("opt_start_seq", 1)), 1)
        if policy == "by_start_time":
            since = _parse_time(cfg["opt_start_time"])
            msg = store.next_matching(state.first_seq, ">")
            while msg is not None and msg.ts < since:
                msg = store.next_matching(msg.seq + 1, ">")
            return msg.seq if msg is not None else state.last_seq + 1
        if policy == "last":
            last = max((m.seq for m in (store.last_matching(f) for f in self.filters) if m is not None), default=0)
            return last or state.last_seq + 1
        return max(state.first_seq, 1)

    # -- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        client = self.stream.client
        self._ack_sub = client.subscribe(f"$JS.ACK.{self.stream.name}.{self.name}.>", self._ack_received)
        if self.config["deliver_policy"] == "last_per_subject" and not self.pending and self.dseq == 0:
            self._last_per_subject = sorted(
                info.last for f in self.filters for _, info in self.stream.store.subjects(f))
        self._arm()
        self.schedule()

    def stop(self) -> None:
        self.closed = True
        if self._ack_sub is not None:
            self.stream.client.unsubscribe(self._ack_sub)
            self._ack_sub = None
        for timer in (self._timer, self._beat_timer):
            if timer is not None:
                timer.cancel()
        for request in self.waiting:
            self._status(request.reply, b"NATS/1.0 409 Consumer Deleted\r\n\r\n")
        self.waiting.clear()

    def save(self) -> None:
        """Keep a durable consumer's config and state with the stream's next commit."""
        if not self.durable:
            return
        self.stream.store.save_consumer(self.name, {
            "config": self.config, "created": self.created, "dseq": self.dseq, "cursor": self.cursor,
            "floor_stream": self.floor_stream, "floor_consumer": self.floor_consumer,
            "pending": {str(k): list(v) for k, v in self.pending.items()},
            "deliveries": {str(k): v for k, v in self.deliveries.items()},
            "num_redelivered": self.num_redelivered})

    # -- delivery --------------------------------------------------------------------------------------

    def schedule(self) -> None:
        """Deliver what can be delivered, once, later in this loop pass."""
        if not self._scheduled and not self.closed:
            self._scheduled = True
            self.stream.owner.server.loop.call_soon(self._deliver)

    def matches(self, subject: str) -> bool:
        return any(f == ">" or subject_matches(f.encode(), subject.encode()) for f in self.filters)

    def _next_new(self) -> StoredMsg | None:
        store = self.stream.store
        pending_last = self._last_per_subject
        if pending_last is not None:
            while pending_last:
                msg = store.load(pending_last.pop(0))
                if msg is not None:
                    return msg
            self._last_per_subject = None
            self.cursor = max(self.cursor, store.state().last_seq + 1)
        best: StoredMsg | None = None
        for f in self.filters:
            msg = store.next_matching(self.cursor, f)
            if msg is not None and (best is None or msg.seq < best.seq):
                best = msg
        if best is not None and best.seq > self.stream.committed_seq:
            return None  # not durable yet: delivered once its commit resolves
        return best

    def _deliver(self) -> None:
        self._scheduled = False
        if self.closed:
            return
        now = time.time_ns()
        self._expire_requests(now)
        if self.paused_until > now:
            return
        cfg = self.config
        max_pending = cfg.get("max_ack_pending", -1)
        delivered = False
        while True:
            target = self._target()
            if target is None:
                break
            msg = None
            redelivery = False
            while self.redeliver:
                seq = heapq.heappop(self.redeliver)
                if seq in self.pending:
                    msg = self.stream.store.load(seq)
                    if msg is None:  # gone from the stream meanwhile
                        self._forget(seq)
                        continue
                    redelivery = True
                    break
            if msg is None:
                if not self.ack_none and max_pending > 0 and len(self.pending) >= max_pending:
                    break
                msg = self._next_new()
                if msg is None:
                    break
                self.cursor = msg.seq + 1
            self._send(msg, target, redelivery, now)
            delivered = True
        if self.pull:
            self._finish_no_wait()
        if delivered:
            self._last_delivery = now
            self._arm()
            self.save()

    def _target(self) -> PullRequest | str | None:
        """Where the next message goes: a waiting pull request, or the push subject when it has interest."""
        if self.pull:
            while self.waiting and self.waiting[0].batch <= 0:
                self.waiting.popleft()
            return self.waiting[0] if self.waiting else None
        subject = self.config["deliver_subject"]
        return subject if self.stream.client.account.sublist.match(subject.encode()) else None

    def _send(self, msg: StoredMsg, target: PullRequest | str, redelivery: bool, now: int) -> None:
        cfg = self.config
        self.dseq += 1
        count = self.deliveries.get(msg.seq, 1 if msg.seq in self.pending else 0) + 1
        if count > 1:
            self.deliveries[msg.seq] = count
            if count == 2:
                self.num_redelivered += 1
        if self.ack_none:
            self.floor_stream, self.floor_consumer = msg.seq, self.dseq
        else:
            self.pending[msg.seq] = (self.dseq, now)
        remaining = self.num_pending()
        reply = (f"$JS.ACK.{self.stream.name}.{self.name}.{count}.{msg.seq}.{self.dseq}.{msg.ts}."
                 f"{remaining}").encode()
        headers = msg.hdrs or None
        data = msg.data
        if cfg.get("headers_only"):
            base = msg.hdrs[:-2] if msg.hdrs.endswith(b"\r\n\r\n") else b"NATS/1.0\r\n"
            headers, data = base + f"Nats-Msg-Size: {len(msg.data)}\r\n\r\n".encode(), b""
        client = self.stream.client
        if isinstance(target, PullRequest):
            target.batch -= 1
            target.sent_bytes += len(msg.subject) + len(msg.hdrs) + len(msg.data)
            client.publish(target.reply, data, reply=reply, headers=headers, shown=msg.subject)
        else:
            client.publish(target, data, reply=reply, headers=headers, shown=msg.subject)
        self.last_active = now

    def num_pending(self) -> int:
        """Messages the consumer has not reached yet (nats-server's ``num_pending``)."""
        store = self.stream.store
        if self._last_per_subject:
            return len(self._last_per_subject)
        return sum(store.count_from(self.cursor, f) for f in self.filters)

    # -- pull requests ----------------------------------------------------------------------------------

    def pull_request(self, reply: bytes, payload: bytes) -> None:
        """``$JS.API.CONSUMER.MSG.NEXT``: queue the request (or answer it at once)."""
        cfg = self.config
        text = payload.strip()
        batch, expires, no_wait, max_bytes, heartbeat = 1, 0, False, 0, 0
        if text[:1] == b"{":
            try:
                request = json.loads(text)
            except ValueError:
                self._status(reply, b"NATS/1.0 400 Bad Request\r\n\r\n")
                return
            batch = int(request.get("batch") or 1)
            expires = int(request.get("expires") or 0)
            no_wait = bool(request.get("no_wait"))
            max_bytes = int(request.get("max_bytes") or 0)
            heartbeat = int(request.get("idle_heartbeat") or 0)
        elif text:
            try:
                batch = int(text)
            except ValueError:
                batch = 1
        if cfg.get("max_batch", 0) > 0 and batch > cfg["max_batch"]:
            self._status(reply, f"NATS/1.0 409 Exceeded MaxRequestBatch of {cfg['max_batch']}\r\n\r\n".encode())
            return
        if cfg.get("max_expires", 0) > 0 and expires > cfg["max_expires"]:
            self._status(reply, f"NATS/1.0 409 Exceeded MaxRequestExpires of {cfg['max_expires'] // 1_000_000}ms"
                                f"\r\n\r\n".encode())
            return
        if cfg.get("max_bytes", 0) > 0 and max_bytes > cfg["max_bytes"]:
            self._status(reply, f"NATS/1.0 409 Exceeded MaxRequestMaxBytes of {cfg['max_bytes']}\r\n\r\n".encode())
            return
        if len(self.waiting) >= cfg.get("max_waiting", DEFAULT_MAX_WAITING):
            self._status(reply, b"NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n")
            return
        now = time.time_ns()
        request = PullRequest(reply, batch, max_bytes, now + expires if expires > 0 else 0, no_wait, heartbeat)
        self.waiting.append(request)
        self.last_active = now
        self._deliver_now()
        self._arm()

    def _deliver_now(self) -> None:
        self._scheduled = True  # a delivery pass right away replaces the scheduled one
        self._deliver()

    def _finish_no_wait(self) -> None:
        """A ``no_wait`` request that found nothing (more) gets its answer now."""
        kept: deque[PullRequest] = deque()
        for request in self.waiting:
            if request.no_wait and request.batch > 0:
                if request.sent_bytes == 0:
                    self._status(request.reply, STATUS_NO_MESSAGES)
                else:
                    self._timeout(request)
            elif request.batch > 0:
                kept.append(request)
        self.waiting = kept

    def _timeout(self, request: PullRequest) -> None:
        self._status(request.reply, (f"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: {request.batch}\r\n"
                                     f"Nats-Pending-Bytes: {max(request.max_bytes - request.sent_bytes, 0)}"
                                     f"\r\n\r\n").encode())

    def _expire_requests(self, now: int) -> None:
        if not self.waiting:
            return
        kept: deque[PullRequest] = deque()
        for request in self.waiting:
            if request.expires and request.expires <= now:
                self._timeout(request)
            else:
                kept.append(request)
        self.waiting = kept

    def _status(self, reply: bytes, headers: bytes) -> None:
        self.stream.client.publish(reply, b"", headers=headers)

    # -- acknowledgements --------------------------------------------------------------------------------

    def _ack_received(self, subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
        tokens = subject.split(b".")
        # $JS.ACK.<stream>.<consumer>.<count>.<stream seq>.<consumer seq>.<ts>.<pending>
        if len(tokens) != 9:
            return
        try:
            seq = int(tokens[5])
        except ValueError:
            return
        kind = payload[:4]
        if kind in (b"", b"+ACK", b"+NXT"):
            self.ack(seq)
            if kind == b"+NXT" and reply:
                self.pull_request(reply, payload[4:])
        elif kind == b"-NAK":
            delay = 0
            rest = payload[4:].strip()
            if rest.startswith(b"{"):
                try:
                    delay = int(json.loads(rest).get("delay") or 0)
                except (ValueError, AttributeError):
                    delay = 0
            self.nak(seq, delay)
        elif kind == b"+WPI":
            if seq in self.pending:
                dseq, _ = self.pending[seq]
                self.pending[seq] = (dseq, time.time_ns())
                self._arm()
        elif payload.startswith(b"+TERM"):
            self._forget(seq)
            self._advance_floor()
            self.save()
        if reply and kind != b"+NXT":
            self.stream.client.publish(reply, b"")  # a double ack (ack_sync) waits for this
        self.schedule()

    def ack(self, seq: int) -> None:
        if self.ack_none:
            return
        if self.config["ack_policy"] == "all":
            acked = [s for s in self.pending if s <= seq]
        else:
            acked = [seq] if seq in self.pending else []
        for s in acked:
            self._forget(s)
        if acked:
            self._advance_floor()
            self.stream.acked(self, acked)
            self.save()

    def nak(self, seq: int, delay: int) -> None:
        if seq not in self.pending:
            return
        if delay > 0:
            dseq, _ = self.pending[seq]
            # due again after ``delay``: its deadline is shifted so that ack_wait fires then
            self.pending[seq] = (dseq, time.time_ns() + delay - self.config.get("ack_wait", DEFAULT_ACK_WAIT))
            self._arm()
        else:
            heapq.heappush(self.redeliver, seq)

    def _forget(self, seq: int) -> None:
        self.pending.pop(seq, None)
        self.deliveries.pop(seq, None)

    def _advance_floor(self) -> None:
        if self.pending:
            first = min(self.pending)
            self.floor_stream = first - 1
            self.floor_consumer = self.pending[first][0] - 1
        else:
            self.floor_stream = self.cursor - 1
            self.floor_consumer = self.dseq

    # -- timers -------------------------------------------------------------------------------------------

    def _arm(self) -> None:
        """One timer for the next deadline: an ack wait ending, a pull request expiring, a heartbeat."""
        if self.closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadlines = []
        ack_wait = self.config.get("ack_wait", DEFAULT_ACK_WAIT)
        if self.pending and not self.ack_none:
            deadlines.append(min(ts for _, ts in self.pending.values()) + ack_wait)
        deadlines.extend(r.expires for r in self.waiting if r.expires)
        beat = self.config.get("idle_heartbeat", 0)
        if beat and not self.pull:
            deadlines.append(self._last_delivery + beat)
        deadlines.extend(r.last_beat + r.heartbeat for r in self.waiting if r.heartbeat)
        if self.paused_until:
            deadlines.append(self.paused_until)
        if not self.durable:
            deadlines.append(time.time_ns() + self.config.get("inactive_threshold", DEFAULT_INACTIVE))
        if deadlines:
            delay = max((min(deadlines) - time.time_ns()) / NS, 0.01)
            self._timer = self.stream.owner.server.loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = time.time_ns()
        ack_wait = self.config.get("ack_wait", DEFAULT_ACK_WAIT)
        max_deliver = self.config.get("max_deliver", -1)
        backoff = self.config.get("backoff") or []
        for seq, (_, ts) in sorted(self.pending.items()):
            count = self.deliveries.get(seq, 1)
            wait = backoff[min(count - 1, len(backoff) - 1)] if backoff else ack_wait
            if ts + wait > now or seq in self.redeliver:
                continue
            if max_deliver > 0 and count >= max_deliver:
                self._forget(seq)  # delivered as often as allowed: nats-server lets it go
                self._advance_floor()
                continue
            heapq.heappush(self.redeliver, seq)
        self._expire_requests(now)
        beat = self.config.get("idle_heartbeat", 0)
        if beat and not self.pull and now - self._last_delivery >= beat:
            subject = self.config["deliver_subject"]
            self.stream.client.publish(subject, b"", headers=STATUS_HEARTBEAT + (
                f"Nats-Last-Consumer: {self.dseq}\r\nNats-Last-Stream: {self.cursor - 1}\r\n\r\n").encode())
            self._last_delivery = now
        for request in self.waiting:
            if request.heartbeat and now - request.last_beat >= request.heartbeat:
                self._status(request.reply, STATUS_HEARTBEAT + b"\r\n")
                request.last_beat = now
        if not self.durable and self._inactive(now):
            self.stream.owner.delete_consumer(self.stream, self.name)
            return
        self._deliver_now()
        self._arm()

    def _inactive(self, now: int) -> bool:
        """An ephemeral consumer nobody uses any more (no interest, no pull requests) for its threshold."""
        in_use = bool(self.waiting) if self.pull else self._target() is not None
        if in_use:
            self._idle_since = now
            return False
        return now - self._idle_since >= self.config.get("inactive_threshold", DEFAULT_INACTIVE)

    # -- what the API shows --------------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stream_name": self.stream.name, "name": self.name, "created": self.created,
            "config": self.stream.owner.shown_config(self.config),
            "delivered": {"consumer_seq": self.dseq, "stream_seq": self.cursor - 1},
            "ack_floor": {"consumer_seq": self.floor_consumer, "stream_seq": self.floor_stream},
            "num_ack_pending": len(self.pending), "num_redelivered": self.num_redelivered,
            "num_waiting": len(self.waiting), "num_pending": self.num_pending(),
        }
        if self.last_active:
            out["delivered"]["last_active"] = rfc3339(self.last_active)
        out["cluster"] = {"leader": self.stream.owner.server.name}
        if not self.pull:
            out["push_bound"] = self._target() is not None or None
            if out["push_bound"] is None:
                del out["push_bound"]
        if self.paused_until > time.time_ns():
            out["paused"] = True
            out["pause_remaining"] = self.paused_until - time.time_ns()
        out["ts"] = rfc3339(time.time_ns())
        return out


def check_consumer_config(raw: Mapping[str, Any], stream: Stream, pull: bool) -> dict[str, Any]:
    """The consumer config nats-server keeps for ``raw`` (defaults filled), or its error."""
    cfg: dict[str, Any] = {}
    durable = raw.get("durable_name") or ""
    name = raw.get("name") or durable
    if durable and name and durable != name:
        raise api_error("JSConsumerCreateDurableAndNameMismatch")
    for key in ("durable_name", "name"):
        value = raw.get(key)
        if value and any(c in value for c in "\\/"):
            raise api_error("JSConsumerNameContainsPathSeparatorsErr")
        if value and any(c in value for c in ".*> \t"):
            raise api_error("JSConsumerBadDurableNameErr")
    deliver_policy = raw.get("deliver_policy") or "all"
    if deliver_policy not in DELIVER_POLICIES:
        raise api_error("JSInvalidJSONErr", err=f'can not unmarshal "\\"{deliver_policy}\\""')
    ack_policy = raw.get("ack_policy") or ("explicit" if pull else "none")
    replay = raw.get("replay_policy") or "instant"
    filters = raw.get("filter_subjects") or []
    single = raw.get("filter_subject") or ""
    if single and filters:
        raise api_error("JSConsumerDuplicateFilterSubjects")
    stream_subjects = stream.config["subjects"]
    for f in [single, *filters] if single or filters else []:
        if not any(subjects_collide(f.encode(), s.encode()) for s in stream_subjects):
            raise api_error("JSConsumerFilterNotMatchErr")
    if stream.config["retention"] == "workqueue" and ack_policy != "explicit":
        raise api_error("JSConsumerWQRequiresExplicitAckErr")
    deliver = raw.get("deliver_subject") or ""
    if deliver and any(t in (b"*", b">") for t in deliver.encode().split(b".")):
        raise api_error("JSConsumerDeliverToWildcardsErr")
    if not pull:
        for key, error in (("max_waiting", "JSConsumerPushMaxWaitingErr"),):
            if raw.get(key):
                raise api_error(error)
    elif raw.get("idle_heartbeat"):
        raise api_error("JSConsumerHBRequiresPushErr")
    elif raw.get("flow_control"):
        raise api_error("JSConsumerFCRequiresPushErr")
    if durable:
        cfg["durable_name"] = durable
    if name:
        cfg["name"] = name
    if raw.get("description"):
        cfg["description"] = raw["description"]
    cfg["deliver_policy"] = deliver_policy
    if raw.get("opt_start_seq"):
        cfg["opt_start_seq"] = raw["opt_start_seq"]
    if raw.get("opt_start_time"):
        cfg["opt_start_time"] = raw["opt_start_time"]
    cfg["ack_policy"] = ack_policy
    if ack_policy != "none":
        cfg["ack_wait"] = int(raw.get("ack_wait") or DEFAULT_ACK_WAIT)
    cfg["max_deliver"] = int(raw.get("max_deliver") or -1)
    if raw.get("backoff"):
        cfg["backoff"] = list(raw["backoff"])
    if single:
        cfg["filter_subject"] = single
    if filters:
        cfg["filter_subjects"] = list(filters)
    cfg["replay_policy"] = replay
    if raw.get("sample_freq"):
        cfg["sample_freq"] = raw["sample_freq"]
    if pull:
        cfg["max_waiting"] = int(raw.get("max_waiting") or DEFAULT_MAX_WAITING)
    if ack_policy != "none":
        cfg["max_ack_pending"] = int(raw.get("max_ack_pending") or DEFAULT_MAX_ACK_PENDING)
    for key in ("flow_control", "headers_only"):
        if raw.get(key):
            cfg[key] = True
    for key in ("max_batch", "max_expires", "max_bytes", "idle_heartbeat"):
        if raw.get(key):
            cfg[key] = int(raw[key])
    for key in ("deliver_subject", "deliver_group"):
        if raw.get(key):
            cfg[key] = raw[key]
    if not durable:
        cfg["inactive_threshold"] = int(raw.get("inactive_threshold") or DEFAULT_INACTIVE)
    elif raw.get("inactive_threshold"):
        cfg["inactive_threshold"] = int(raw["inactive_threshold"])
    cfg["num_replicas"] = int(raw.get("num_replicas") or 0)
    if raw.get("mem_storage"):
        cfg["mem_storage"] = True
    metadata = {k: v for k, v in (raw.get("metadata") or {}).items() if k not in ("_nats.ver", "_nats.level")}
    metadata["_nats.req.level"] = "0"
    cfg["metadata"] = dict(sorted(metadata.items()))
    return cfg

