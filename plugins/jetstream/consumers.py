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

from natsd.config.conf import ConfError, parse_duration
from natsd.routing.subjects import subject_matches, subjects_collide
from natsd.routing.sublist import SublistResult

from .advisories import sampled
from .errors import api_error
from .godecode import go_syntax_error
from .streams import NS, go_duration, rfc3339

if TYPE_CHECKING:
    import asyncio

    from natsd.routing.sublist import Subscription

    from .store.base import StoredMsg
    from .streams import Stream

log = logging.getLogger("natsd.jetstream")

DEFAULT_ACK_WAIT = 30 * NS
DEFAULT_MAX_ACK_PENDING = 1000
DEFAULT_MAX_WAITING = 512
MATCHED_MAX = 4096
"""Subjects a consumer remembers whether its filters pass (the memo is cleared when full)."""
DEFAULT_INACTIVE = 5 * NS
"""How long an ephemeral consumer lives without interest (nats-server's default)."""

DELIVER_POLICIES = ("all", "last", "new", "by_start_sequence", "by_start_time", "last_per_subject")
ACK_POLICIES = ("none", "all", "explicit")
REPLAY_POLICIES = ("instant", "original")

STATUS_NO_MESSAGES = b"NATS/1.0 404 No Messages\r\n\r\n"
FLOW_CONTROL_REQUEST = b"NATS/1.0 100 FlowControl Request\r\n\r\n"
FLOW_CONTROL_WINDOW = 1024 * 1024
"""Bytes a push consumer with ``flow_control`` sends before asking the client to confirm
(nats-server: half of its 2 MiB starting window)."""
STATUS_HEARTBEAT = b"NATS/1.0 100 Idle Heartbeat\r\n"


def new_name() -> str:
    """A generated consumer name: 8 characters of ``[0-9A-Za-z]``, as nats-server 2.15 names an
    ephemeral consumer (and suffixes a source's)."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    return "".join(alphabet[b % 62] for b in os.urandom(8))


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
        self.filters = _filters(config)
        self._matched: dict[str, bool] = {}
        """Subject -> whether it passes ``filters`` (a memo of :meth:`matches`)."""
        state = state or {}
        self.dseq = int(state.get("dseq", 0))
        self.cursor = int(state.get("cursor", 0)) or self._start_seq()
        self.floor_stream = int(state.get("floor_stream", self.cursor - 1))
        self.floor_consumer = int(state.get("floor_consumer", self.dseq))
        self.pending: dict[int, tuple[int, int]] = {int(k): (v[0], v[1]) for k, v in
                                                     sorted(state.get("pending", {}).items(),
                                                            key=lambda item: int(item[0]))}
        self._pending_in_order = True
        """Whether ``pending``'s keys were inserted in ascending order, so that its first is its least
        (a message delivered again keeps its place; only last-per-subject delivery goes out of order)."""
        """stream seq -> (consumer seq of its latest delivery, delivery time ns), awaiting ack."""
        self.deliveries: dict[int, int] = {int(k): v for k, v in state.get("deliveries", {}).items()}
        """stream seq -> times delivered, for messages delivered more than once and still pending."""
        self.redeliver: list[int] = []
        """stream seqs due again (a heap: lowest first, as nats-server)."""
        self.num_redelivered = int(state.get("num_redelivered", 0))
        self.waiting: deque[PullRequest] = deque()
        self.last_active = 0
        self.last_ack = 0
        self.paused_until = 0
        self._pause_ended = True
        """Whether the end of the current pause was announced (or there is none to announce)."""
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._beat_timer: asyncio.TimerHandle | None = None
        self._ack_sub: Subscription | None = None
        self._fc_sub: Subscription | None = None
        self._fc_bytes = 0
        self._fc_pending = ""
        """The ``$JS.FC`` subject of a flow control request not answered yet."""
        self._last_delivery = time.time_ns()
        self._idle_since = time.time_ns()
        self._save_scheduled = False
        self._pending_hint = -1
        """num_pending while one delivery pass runs (each new message it sends is one fewer); -1:
        not counted yet. An int, not an Optional: the compiled module trusts mypy's narrowing, which
        does not see a method call set it."""
        self._covered = False
        self._ack_prefix = f"$JS.ACK.{stream.name}.{name}."
        self._bound_for: SublistResult | None = None
        self._bound_was = False
        """:meth:`_bound`'s last answer, and the match result it was for."""
        """A push consumer created while a wildcard subscription covered its deliver subject
        (a stream import's, say): nats-server counts that as interest (``HasInterest``)."""
        self.closed = False
        if config.get("pause_until"):
            self.paused_until = _parse_time(config["pause_until"])
            self._pause_ended = self.paused_until <= time.time_ns()
        for seq in sorted(self.pending):  # after a restart, pending messages are due again
            heapq.heappush(self.redeliver, seq)

    # -- config ----------------------------------------------------------------------------------------

    def set_pause(self, until: int) -> None:
        """Pause until ``until`` (ns since the epoch; 0 resumes); a change is announced."""
        if until == self.paused_until:
            return
        self.paused_until = until
        self._pause_ended = until <= time.time_ns()
        self.stream.owner.advisories.pause(self.stream.account, self.stream.name, self.name, until)

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
        deliver = self.config.get("deliver_subject")
        if deliver and not self.config.get("deliver_group"):  # a group needs members of its own
            found = client.account.sublist.match(deliver.encode())
            self._covered = bool(found.psubs or found.qsubs or found.remote is not None)
        if not self.ack_none:  # as nats-server: nothing listens for acks a consumer does not take
            self._ack_sub = client.subscribe(f"$JS.ACK.{self.stream.name}.{self.name}.*.*.*.*.*", self.ack_received)
        if self.config.get("flow_control"):
            self._fc_sub = client.subscribe(f"$JS.FC.{self.stream.name}.{self.name}.*", self._flow_answered)
        if self.config["deliver_policy"] == "last_per_subject" and not self.pending and self.dseq == 0:
            self._last_per_subject = sorted(
                info.last for f in self.filters for _, info in self.stream.store.subjects(f))
            if self._last_per_subject:
                self.cursor = self._last_per_subject[0]
                self.floor_stream = self.cursor - 1
        self._arm()
        self.schedule()

    def stop(self) -> None:
        self.closed = True
        for sub in (self._ack_sub, self._fc_sub):
            if sub is not None:
                self.stream.client.unsubscribe(sub)
        self._ack_sub = self._fc_sub = None
        for timer in (self._timer, self._beat_timer):
            if timer is not None:
                timer.cancel()
        for request in self.waiting:
            self._status(request.reply, b"NATS/1.0 409 Consumer Deleted\r\n\r\n")
        self.waiting.clear()

    def reconfigure(self, config: dict[str, Any]) -> None:
        """An update (checked by :func:`check_update`): the new config, its filters from now on. As
        nats-server, the cursor stays, and an interest stream lets go of what lost its interest."""
        old_deliver = self.config.get("deliver_subject")
        self.config = config
        self._bound_for = None
        filters = _filters(config)
        if filters != self.filters:
            self.filters = filters
            self._matched.clear()
            self.stream.refiltered(self)
            if self.stream.config["retention"] == "interest":
                self.stream.drop_unwanted()
        elif config.get("deliver_subject") != old_deliver:
            self.stream.refiltered(self)

    def save_soon(self) -> None:
        """:meth:`save` once at the end of this loop pass, however many deliveries and acks it had
        (the state is written whole: once per ack would cost the in-flight count each time)."""
        if self.durable and not self._save_scheduled:
            self._save_scheduled = True
            self.stream.owner.server.loop.call_soon(self.save)

    def save(self) -> None:
        """Keep a durable consumer's config and state with the stream's next commit."""
        self._save_scheduled = False
        if not self.durable or self.closed:
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
        """Whether ``subject`` passes the consumer's filters (remembered: an interest stream asks
        for every message and every acknowledgement)."""
        hit = self._matched.get(subject)
        if hit is None:
            if len(self._matched) >= MATCHED_MAX:
                self._matched.clear()
            hit = self._matched[subject] = any(
                f == ">" or subject_matches(f.encode(), subject.encode()) for f in self.filters)
        return hit

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
        self._pending_hint = -1
        if self.closed:
            return
        now = time.time_ns()
        self._expire_requests(now)
        if self.paused_until > now:
            if self.pull:
                self._finish_no_wait()  # a paused consumer has nothing for a no_wait request
            return
        cfg = self.config
        max_pending = cfg.get("max_ack_pending", -1)
        delivered = False
        while True:
            target = self._target()
            if target is None:
                break
            msg = None
            max_deliver = cfg.get("max_deliver", -1)
            while self.redeliver:
                seq = heapq.heappop(self.redeliver)
                if seq in self.pending and 0 < max_deliver <= self.deliveries.get(seq, 1):
                    del self.pending[seq]  # delivered as often as allowed; its count stays
                    self.stream.owner.advisories.max_deliver(self.stream.account, self.stream.name, self.name,
                                                             seq, max_deliver)
                    continue
                if seq in self.pending:
                    msg = self.stream.store.load(seq)
                    if msg is None:  # gone from the stream meanwhile
                        self._forget(seq)
                        continue
                    break
            if msg is None:
                if not self.ack_none and max_pending > 0 and len(self.pending) >= max_pending:
                    break
                msg = self._next_new()
                if msg is None:
                    break
                before, self.cursor = self.cursor, msg.seq + 1
                if self._pending_hint > 0:
                    self._pending_hint -= 1
                reply = self._ack_reply(msg)
                if isinstance(target, PullRequest) and not self._fits(target, msg, reply):
                    self.cursor = before
                    self._pending_hint = -1
                    continue  # the request ended; the message waits for the next one
            else:
                reply = self._ack_reply(msg)
                if isinstance(target, PullRequest) and not self._fits(target, msg, reply):
                    heapq.heappush(self.redeliver, msg.seq)
                    continue
            self._send(msg, target, reply, now)
            delivered = True
        if self.pull:
            blocked = not self.ack_none and 0 < max_pending <= len(self.pending)
            if not blocked:  # a request held back by max_ack_pending waits, even with no_wait
                self._finish_no_wait()
        self._pending_hint = -1
        if delivered:
            self._last_delivery = now
            self._arm()
            self.save_soon()

    def _target(self) -> PullRequest | str | None:
        """Where the next message goes: a waiting pull request, or the push subject when it has interest."""
        if self.pull:
            sublist = self.stream.client.account.sublist
            # as nats-server: a request whose inbox lost its subscriber is dropped, not served
            while self.waiting and (self.waiting[0].batch <= 0 or not sublist.match(self.waiting[0].reply)):
                self.waiting.popleft()
            return self.waiting[0] if self.waiting else None
        subject = self.config["deliver_subject"]
        return subject if self._bound() else None

    def _bound(self) -> bool:
        """nats-server's ``push_bound``: a subscription on exactly the deliver subject (in the
        deliver group, if the consumer has one), or interest from another server; or any
        interest at all if there was some when the consumer was created (nats-server checks
        ``HasInterest`` then, and later learns of changes on the exact subject only)."""
        subject = self.config["deliver_subject"].encode()
        result = self.stream.client.account.sublist.match(subject)
        if result is self._bound_for:  # the account's cached result: no subscription changed there since
            return self._bound_was
        self._bound_for, self._bound_was = result, self._bound_by(subject, result)
        return self._bound_was

    def _bound_by(self, subject: bytes, result: SublistResult) -> bool:
        if result.remote is not None:
            return True
        if self._covered and (result.psubs or result.qsubs):
            return True
        group = self.config.get("deliver_group")
        if group:
            return any(members[0].queue == group.encode() and members[0].subject == subject
                       for members in result.qsubs)
        return any(sub.subject == subject for sub in result.psubs)

    def _ack_reply(self, msg: StoredMsg) -> bytes:
        """The reply subject ``msg`` gets if it is delivered next (``$JS.ACK...``)."""
        count = self.deliveries.get(msg.seq, 1 if msg.seq in self.pending else 0) + 1
        if self._pending_hint < 0:
            self._pending_hint = self.num_pending()
        return f"{self._ack_prefix}{count}.{msg.seq}.{self.dseq + 1}.{msg.ts}.{self._pending_hint}".encode()

    def _send(self, msg: StoredMsg, target: PullRequest | str, reply: bytes, now: int) -> None:
        """Deliver ``msg`` with the ``reply`` :meth:`_ack_reply` made for it just before."""
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
            pending = self.pending
            if pending and msg.seq not in pending and msg.seq < next(reversed(pending)):
                self._pending_in_order = False
            pending[msg.seq] = (self.dseq, now)
        headers = msg.hdrs or None
        data = msg.data
        if cfg.get("headers_only"):
            headers, data = _headers_only(msg), b""
        client = self.stream.client
        if isinstance(target, PullRequest):
            target.batch -= 1
            target.sent_bytes += _pull_size(msg, reply, headers, data)
            if target.max_bytes and target.sent_bytes >= target.max_bytes:
                target.batch = 0  # exactly full: as nats-server, the request is done
            client.publish(target.reply, data, reply=reply, headers=headers, shown=msg.subject)
        else:
            client.publish(target, data, reply=reply, headers=headers, shown=msg.subject)
            if self.config.get("flow_control"):
                self._fc_bytes += len(msg.subject) + len(msg.hdrs) + len(msg.data)
                if self._fc_bytes >= FLOW_CONTROL_WINDOW and not self._fc_pending:
                    self._fc_pending = f"$JS.FC.{self.stream.name}.{self.name}.{new_name()[:4]}"
                    client.publish(target, b"", reply=self._fc_pending, headers=FLOW_CONTROL_REQUEST)
        self.last_active = now

    def _fits(self, request: PullRequest, msg: StoredMsg, reply: bytes) -> bool:
        """Whether ``msg`` fits the request's ``max_bytes``; a request it does not fit ends with
        ``409 Message Size Exceeds MaxBytes``."""
        if not request.max_bytes:
            return True
        headers, data = msg.hdrs, msg.data
        if self.config.get("headers_only"):
            headers, data = _headers_only(msg), b""
        if request.sent_bytes + _pull_size(msg, reply, headers, data) <= request.max_bytes:
            return True
        self._status(request.reply, (f"NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: "
                                     f"{request.batch}\r\nNats-Pending-Bytes: "
                                     f"{request.max_bytes - request.sent_bytes}\r\n\r\n").encode())
        request.batch = 0
        return False

    def purged(self, first_seq: int, removed: list[int]) -> None:
        """Messages left the stream by a purge: what was pending goes, and a purge of everything
        below ``first_seq`` moves the consumer past it (delivered and acknowledged)."""
        for seq in removed:
            self._forget(seq)
        if first_seq - 1 > self.floor_stream:
            for seq in [s for s in self.pending if s < first_seq]:
                self._forget(seq)
            self.cursor = max(self.cursor, first_seq)
            self._advance_floor()
            self.last_ack = time.time_ns()
        self.save_soon()
        self.schedule()

    def num_pending(self) -> int:
        """Messages the consumer has not reached yet (nats-server's ``num_pending``)."""
        store = self.stream.store
        if self._last_per_subject:
            return len(self._last_per_subject)
        state = store.state()
        if self.filters == [">"] and not state.deleted:  # no gaps: a subtraction, not a count
            return max(0, state.last_seq - max(self.cursor, state.first_seq) + 1) if state.msgs else 0
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
            except json.JSONDecodeError as exc:
                text_error = go_syntax_error(text.decode("utf-8", "replace"), exc)
                self._status(reply, f"NATS/1.0 400 Bad Request - {text_error.rsplit(' at offset', 1)[0]}"
                                    f"\r\n\r\n".encode())
                return
            batch = max(int(request.get("batch") or 1), 1)
            expires = int(request.get("expires") or 0)
            no_wait = bool(request.get("no_wait"))
            max_bytes = int(request.get("max_bytes") or 0)
            heartbeat = int(request.get("idle_heartbeat") or 0)
            if heartbeat and heartbeat * 2 > expires:
                self._status(reply, b"NATS/1.0 400 Bad Request - heartbeat value too large\r\n\r\n")
                return
        elif text:
            try:
                batch = int(text)
            except ValueError:
                batch = 1
        if cfg.get("max_batch", 0) > 0 and batch > cfg["max_batch"]:
            self._status(reply, f"NATS/1.0 409 Exceeded MaxRequestBatch of {cfg['max_batch']}\r\n\r\n".encode())
            return
        if cfg.get("max_expires", 0) > 0 and expires > cfg["max_expires"]:
            self._status(reply, f"NATS/1.0 409 Exceeded MaxRequestExpires of {go_duration(cfg['max_expires'])}"
                                f"\r\n\r\n".encode())
            return
        if cfg.get("max_bytes", 0) > 0 and max_bytes > cfg["max_bytes"]:
            self._status(reply, f"NATS/1.0 409 Exceeded MaxRequestMaxBytes of {cfg['max_bytes']}\r\n\r\n".encode())
            return
        if len(self.waiting) >= cfg.get("max_waiting", DEFAULT_MAX_WAITING):
            self._status(reply, b"NATS/1.0 409 Exceeded MaxWaiting\r\n\r\n")
            return
        now = time.time_ns()
        deadline = now + expires if expires > 0 else (now - 1 if expires < 0 else 0)  # negative: due at once
        request = PullRequest(reply, batch, max_bytes, deadline, no_wait, heartbeat)
        self.waiting.append(request)
        self._deliver_now()
        self._arm()

    def _deliver_now(self) -> None:
        self._scheduled = True  # a delivery pass right away replaces the scheduled one
        self._deliver()

    def _finish_no_wait(self) -> None:
        """A ``no_wait`` request that found nothing (more) gets ``404 No Messages`` now."""
        kept: deque[PullRequest] = deque()
        for request in self.waiting:
            if request.no_wait and request.batch > 0 and not (request.expires and request.sent_bytes == 0):
                self._status(request.reply, STATUS_NO_MESSAGES)
            elif request.batch > 0:  # as nats-server: no_wait with an expiry that got nothing waits
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
        expired = len(kept) < len(self.waiting)
        self.waiting = kept
        if expired:  # as nats-server: the sweep a timeout triggers ends no_wait requests, even held ones
            self._finish_no_wait()

    def _status(self, reply: bytes, headers: bytes) -> None:
        self.stream.client.publish(reply, b"", headers=headers)

    # -- acknowledgements --------------------------------------------------------------------------------

    def ack_received(self, subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
        tokens = subject.split(b".")
        # $JS.ACK.<stream>.<consumer>.<count>.<stream seq>.<consumer seq>.<ts>.<pending>
        if len(tokens) != 9:
            return
        try:
            count, seq, dseq = int(tokens[4]), int(tokens[5]), int(tokens[6])
        except ValueError:
            return
        # as nats-server: any ack body but +NXT gets the empty reply ack_sync waits for, except an
        # ack or term of a message the consumer has not reached
        answered = True
        if payload in (b"", b"+ACK", b"+OK") or payload.startswith(b"+TERM"):
            answered = seq < self.cursor or bool(self.config.get("flow_control"))
        if payload in (b"", b"+ACK", b"+OK"):
            self._sample(seq, dseq, count)
            self.ack(seq)
        elif payload.startswith(b"+NXT"):
            self._sample(seq, dseq, count)
            self.ack(seq)
            answered = False
            if reply:
                self.pull_request(reply, payload[4:])
        elif payload.startswith(b"-NAK"):
            if seq in self.pending and self.floor_consumer < dseq <= self.dseq:
                self.stream.owner.advisories.nak(self.stream.account, self.stream.name, self.name, dseq, seq, count)
            self.nak(seq, _nak_delay(payload[4:].strip()))
        elif payload == b"+WPI":
            if seq in self.pending:
                dseq, _ = self.pending[seq]
                self.pending[seq] = (dseq, time.time_ns())
                self._arm()
        elif payload.startswith(b"+TERM"):
            self.stream.owner.advisories.terminated(self.stream.account, self.stream.name, self.name, dseq, seq,
                                                    count, payload[5:].strip().decode(errors="replace"))
            if seq in self.pending:
                self._forget(seq)
                self._advance_floor()
                self.stream.acked(self, [seq])  # a workqueue lets a terminated message go too
                self.save_soon()
        if reply and answered:
            self.stream.client.publish(reply, b"")
        self.schedule()

    def _sample(self, seq: int, dseq: int, count: int) -> None:
        """``sample_freq``: an explicit acknowledgement of a pending message may become a metric."""
        freq = self.config.get("sample_freq")
        if freq and self.config["ack_policy"] == "explicit" and seq in self.pending and sampled(freq):
            delivered = self.pending[seq][1]
            self.stream.owner.advisories.ack_metric(self.stream.account, self.stream.name, self.name, dseq, seq,
                                                    time.time_ns() - delivered, count)

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
            self.last_ack = time.time_ns()
            self._advance_floor()
            self.stream.acked(self, acked)
            self.save_soon()

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
            first = next(iter(self.pending)) if self._pending_in_order else min(self.pending)
            self.floor_stream = first - 1
            self.floor_consumer = self.pending[first][0] - 1
        else:
            self._pending_in_order = True
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
        if self.config.get("inactive_threshold"):
            deadlines.append(self._idle_since + self.config["inactive_threshold"])
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
                del self.pending[seq]  # delivered as often as allowed; its count stays
                self.stream.owner.advisories.max_deliver(self.stream.account, self.stream.name, self.name,
                                                         seq, count)
                continue
            heapq.heappush(self.redeliver, seq)
        if not self._pause_ended and self.paused_until <= now:
            self._pause_ended = True  # as nats-server, the end of a pause is announced
            self.stream.owner.advisories.pause(self.stream.account, self.stream.name, self.name, self.paused_until)
        self._expire_requests(now)
        beat = self.config.get("idle_heartbeat", 0)
        if beat and not self.pull and now - self._last_delivery >= beat:
            self.stream.client.publish(self.config["deliver_subject"], b"", headers=self._heartbeat())
            self._last_delivery = now
        for request in self.waiting:
            if request.heartbeat and now - request.last_beat >= request.heartbeat:
                self._status(request.reply, self._heartbeat())
                request.last_beat = now
        if self.config.get("inactive_threshold") and self._inactive(now):
            self.stream.owner.delete_consumer(self.stream, self.name)
            return
        self._deliver_now()
        self._arm()

    def _heartbeat(self) -> bytes:
        stalled = f"Nats-Consumer-Stalled: {self._fc_pending}\r\n" if self._fc_pending else ""
        return STATUS_HEARTBEAT + (f"Nats-Last-Consumer: {self.dseq}\r\nNats-Last-Stream: "
                                   f"{self.cursor - 1 if self.dseq else 0}\r\n{stalled}\r\n").encode()

    def _flow_answered(self, subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
        """The client answered a flow control request: the window opens again."""
        if subject.decode() == self._fc_pending:
            self._fc_pending = ""
            self._fc_bytes = 0
            self.schedule()

    def _inactive(self, now: int) -> bool:
        """An ephemeral consumer nobody uses any more (no interest, no pull requests) for its threshold."""
        in_use = bool(self.waiting) if self.pull else self._target() is not None
        if in_use:
            self._idle_since = now
            return False
        return now - self._idle_since >= self.config.get("inactive_threshold", DEFAULT_INACTIVE)

    # -- what the API shows --------------------------------------------------------------------------------

    def info(self, dynamic: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stream_name": self.stream.name, "name": self.name, "created": self.created,
            "config": self.stream.owner.shown_config(self.config, dynamic),
            "delivered": {"consumer_seq": self.dseq, "stream_seq": self.cursor - 1},
            "ack_floor": {"consumer_seq": self.floor_consumer, "stream_seq": self.floor_stream},
            "num_ack_pending": len(self.pending),
            "num_redelivered": sum(1 for count in self.deliveries.values() if count > 1),
            "num_waiting": len(self.waiting), "num_pending": self.num_pending(),
        }
        if self.last_active:
            out["delivered"]["last_active"] = rfc3339(self.last_active)
        if self.last_ack:
            out["ack_floor"]["last_active"] = rfc3339(self.last_ack)
        if not self.pull:
            out["push_bound"] = self._target() is not None or None
            if out["push_bound"] is None:
                del out["push_bound"]
        if self.paused_until > time.time_ns():
            out["paused"] = True
            out["pause_remaining"] = self.paused_until - time.time_ns()
        out["ts"] = rfc3339(time.time_ns())
        return out


ORDER = ("durable_name", "name", "description", "deliver_policy", "opt_start_seq", "opt_start_time",
         "ack_policy", "ack_wait", "max_deliver", "backoff", "filter_subject", "filter_subjects", "replay_policy",
         "rate_limit_bps", "sample_freq", "max_waiting", "max_ack_pending", "flow_control", "headers_only",
         "max_batch", "max_expires", "max_bytes", "deliver_subject", "deliver_group", "idle_heartbeat",
         "inactive_threshold", "num_replicas", "mem_storage", "direct", "sourcing", "metadata", "pause_until")
"""nats-server's ``ConsumerConfig`` fields in its JSON order (all omitted when empty, except
``deliver_policy``, ``ack_policy``, ``replay_policy`` and ``num_replicas``)."""
ALWAYS = frozenset({"deliver_policy", "ack_policy", "replay_policy", "num_replicas"})


def _valid_name(name: str) -> bool:
    return bool(name) and not any(c in name for c in ".*>\\/") and not any(c.isspace() for c in name)


def check_consumer_config(raw: Mapping[str, Any], stream: Stream, durable_required: bool = False,
                          account_max_ack_pending: int = -1) -> dict[str, Any]:
    """The consumer config nats-server keeps for ``raw``: its defaults (``setConsumerConfigDefaults``)
    then its checks (``checkConsumerCfg``), in its order, or the error it answers; the account's
    ``max_ack_pending`` limit lowers the default and bounds what may be asked."""
    c: dict[str, Any] = {k: v for k, v in raw.items() if v not in (None, "", 0, False, [], {})}
    c.setdefault("deliver_policy", "all")
    c.setdefault("ack_policy", "none")
    c.setdefault("replay_policy", "instant")
    c.setdefault("num_replicas", 0)
    pull = not c.get("deliver_subject")
    ack = c["ack_policy"]
    # -- defaults
    if c.get("max_deliver", 0) == 0 or c["max_deliver"] < -1:
        c["max_deliver"] = -1
    for key in ("max_waiting", "max_batch", "max_expires", "max_bytes", "idle_heartbeat", "inactive_threshold"):
        if c.get(key, 0) < 0:
            c.pop(key)
    if c.get("max_ack_pending", 0) < -1:
        c["max_ack_pending"] = -1
    if pull and not c.get("max_waiting"):
        c["max_waiting"] = DEFAULT_MAX_WAITING
    if not c.get("ack_wait") and ack in ("explicit", "all"):
        c["ack_wait"] = DEFAULT_ACK_WAIT
    if c.get("backoff"):
        c["ack_wait"] = c["backoff"][0]
    limits = stream.config.get("consumer_limits") or {}
    if not c.get("max_ack_pending") and limits.get("max_ack_pending"):
        c["max_ack_pending"] = limits["max_ack_pending"]
    if not c.get("inactive_threshold") and limits.get("inactive_threshold"):
        c["inactive_threshold"] = limits["inactive_threshold"]
    if not c.get("max_ack_pending") and ack != "none":
        c["max_ack_pending"] = (min(DEFAULT_MAX_ACK_PENDING, account_max_ack_pending) if account_max_ack_pending > 0
                                else DEFAULT_MAX_ACK_PENDING)
    # -- checks
    for key, what in (("name", "consumer name"), ("durable_name", "consumer durable name")):
        if c.get(key) and not _valid_name(c[key]):
            raise api_error("JSStreamInvalidConfigF", err=f"{what} can not contain '.', '*', '>', '\\', '/'")
    replicas = c.get("num_replicas", 0)
    if replicas > 1:
        raise api_error("JSStreamReplicasNotSupportedErr")
    if replicas > 0 and replicas > stream.config["num_replicas"]:
        raise api_error("JSConsumerReplicasExceedsStream")
    if replicas < 0:
        raise api_error("JSReplicasCountCannotBeNegative")
    if ack not in ACK_POLICIES:
        raise api_error("JSConsumerAckPolicyInvalidErr")
    if c["replay_policy"] not in REPLAY_POLICIES:
        raise api_error("JSConsumerReplayPolicyInvalidErr")
    if any(b < 0 for b in c.get("backoff", [])):
        raise api_error("JSConsumerBackOffNegativeErr")
    if c.get("ack_wait", 0) < 0:
        raise api_error("JSConsumerAckWaitNegativeErr")
    if c.get("backoff") and c["max_deliver"] != -1 and len(c["backoff"]) > c["max_deliver"]:
        raise api_error("JSConsumerMaxDeliverBackoffErr")
    if len(c.get("description", "")) > 4096:
        raise api_error("JSConsumerDescriptionTooLongErrF", max=4096)
    if not pull:
        deliver = c["deliver_subject"]
        if any(t in ("*", ">") for t in deliver.split(".")):
            raise api_error("JSConsumerDeliverToWildcardsErr")
        if "" in deliver.split(".") or any(ch.isspace() for ch in deliver):
            raise api_error("JSConsumerInvalidDeliverSubject")
        if any(subjects_collide(deliver.encode(), s.encode()) for s in stream.config.get("subjects", [])):
            raise api_error("JSConsumerDeliverCycleErr")
        if c.get("max_waiting"):
            raise api_error("JSConsumerPushMaxWaitingErr")
        if c.get("max_ack_pending", 0) > 0 and ack == "none":
            raise api_error("JSConsumerMaxPendingAckPolicyRequiredErr")
        if 0 < c.get("idle_heartbeat", 0) < NS // 10:
            raise api_error("JSConsumerSmallHeartbeatErr")
    else:
        if ack == "none" and stream.config["retention"] == "workqueue":
            raise api_error("JSConsumerPullRequiresAckErr")
        if c.get("rate_limit_bps"):
            raise api_error("JSConsumerPullWithRateLimitErr")
        if c.get("idle_heartbeat"):
            raise api_error("JSConsumerHBRequiresPushErr")
        if c.get("flow_control"):
            raise api_error("JSConsumerFCRequiresPushErr")
        if c.get("max_expires") and c["max_expires"] < 1_000_000:
            raise api_error("JSConsumerMaxRequestExpiresTooSmall")
    if 0 < account_max_ack_pending < c.get("max_ack_pending", 0):
        raise api_error("JSConsumerMaxPendingAckExcessErrF", limit=account_max_ack_pending)
    if limits.get("max_ack_pending", 0) > 0 and c.get("max_ack_pending", 0) > limits["max_ack_pending"]:
        raise api_error("JSConsumerMaxPendingAckExcessErrF", limit=limits["max_ack_pending"])
    if limits.get("inactive_threshold", 0) > 0 and c.get("inactive_threshold", 0) > limits["inactive_threshold"]:
        raise api_error("JSConsumerInactiveThresholdExcess", limit=go_duration(limits["inactive_threshold"]))
    if c.get("filter_subject") and c.get("filter_subjects"):
        raise api_error("JSConsumerDuplicateFilterSubjects")
    if "filter_subjects" in raw and any(f == "" for f in raw.get("filter_subjects") or []):
        raise api_error("JSConsumerEmptyFilter")
    filters = c.get("filter_subjects") or ([c["filter_subject"]] if c.get("filter_subject") else [])
    for i, f in enumerate(filters):
        if "" in f.split(".") or any(ch.isspace() for ch in f):
            raise api_error("JSStreamInvalidConfigF", err="invalid subject")
        for j, g in enumerate(filters):
            if i != j and (f == g or subjects_collide(f.encode(), g.encode()) and (
                    subject_matches(g.encode(), f.encode()) or subject_matches(f.encode(), g.encode()))):
                raise api_error("JSConsumerOverlappingSubjectFilters")
    policy = c["deliver_policy"]
    names = {"all": "all", "last": "last", "last_per_subject": "last per subject", "new": "new",
             "by_start_sequence": "by start sequence", "by_start_time": "by start time"}
    shown = names.get(policy, policy)
    seq, when = c.get("opt_start_seq"), c.get("opt_start_time")
    if policy in ("all", "last", "last_per_subject", "new") and seq:
        raise _bad_start(shown, "sequence")
    if policy in ("all", "last", "last_per_subject", "new", "by_start_sequence") and when:
        raise _bad_start(shown, "time")
    if policy == "last_per_subject" and not filters:
        raise _not_set(shown, "filter subject")
    if policy == "by_start_sequence" and not seq:
        raise _not_set(shown, "start sequence")
    if policy == "by_start_time":
        if not when:
            raise _not_set(shown, "start time")
        if seq:
            raise _bad_start(shown, "start sequence")
    if c.get("sample_freq"):
        text = c["sample_freq"].removesuffix("%")
        if not text.isdigit():
            raise api_error("JSConsumerInvalidSamplingErrF", err=f'strconv.Atoi: parsing "{text}": invalid syntax')
    if c.get("flow_control") and not c.get("idle_heartbeat"):
        raise api_error("JSConsumerWithFlowControlNeedsHeartbeats")
    if c.get("durable_name") and c.get("name") and c["durable_name"] != c["name"]:
        raise api_error("JSConsumerCreateDurableAndNameMismatch")
    if not c.get("durable_name") and not c.get("inactive_threshold"):
        c["inactive_threshold"] = DEFAULT_INACTIVE
    metadata = {k: v for k, v in (c.get("metadata") or {}).items() if k not in ("_nats.ver", "_nats.level")}
    metadata["_nats.req.level"] = "1" if c.get("pause_until") else "0"
    c["metadata"] = dict(sorted(metadata.items()))
    return {k: c[k] for k in ORDER if k in c and (k in ALWAYS or c[k] not in (None, "", 0, False, []))}


def _filters(config: Mapping[str, Any]) -> list[str]:
    """The subject filters of a consumer's config (``[">"]``: none)."""
    filters = config.get("filter_subjects") or ([config["filter_subject"]] if config.get("filter_subject") else [])
    return list(filters) or [">"]


def check_update(old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """nats-server's ``checkNewConsumerConfig``: what an update may not change (500/10012)."""
    def refuse(text: str) -> None:
        raise api_error("JSConsumerCreateErrF", err=text)

    for key, text in (("deliver_policy", "deliver policy"), ("mem_storage", "storage type"), ("direct", "direct"),
                      ("sourcing", "sourcing"), ("opt_start_seq", "start sequence"),
                      ("opt_start_time", "start time"), ("ack_policy", "ack policy"),
                      ("replay_policy", "replay policy"), ("idle_heartbeat", "heart beats"),
                      ("flow_control", "flow control")):
        if old.get(key) != new.get(key):
            refuse(f"{text} can not be updated")
    if old.get("deliver_subject") != new.get("deliver_subject"):
        if not old.get("deliver_subject"):
            refuse("can not update pull consumer to push based")
        if not new.get("deliver_subject"):
            refuse("can not update push consumer to pull based")
    if old.get("max_waiting") != new.get("max_waiting"):
        refuse("max waiting can not be updated")


def _bad_start(policy: str, start: str) -> Exception:
    return api_error("JSConsumerInvalidPolicyErrF",
                     err=f"consumer delivery policy is deliver {policy}, but optional start {start} is also set")


def _not_set(policy: str, what: str) -> Exception:
    return api_error("JSConsumerInvalidPolicyErrF",
                     err=f"consumer delivery policy is deliver {policy}, but optional {what} is not set")


def _headers_only(msg: StoredMsg) -> bytes:
    """The headers a ``headers_only`` consumer delivers in place of ``msg``: its own and its size."""
    base = msg.hdrs[:-2] if msg.hdrs.endswith(b"\r\n\r\n") else b"NATS/1.0\r\n"
    return base + f"Nats-Msg-Size: {len(msg.data)}\r\n\r\n".encode()


def _pull_size(msg: StoredMsg, reply: bytes, headers: bytes | None, data: bytes) -> int:
    """What a delivery counts against a pull request's ``max_bytes``: subject, ack reply, headers
    and payload, as nats-server counts it."""
    return len(msg.subject) + len(reply) + len(headers or b"") + len(data)


def _nak_delay(arg: bytes) -> int:
    """Nanoseconds of a ``-NAK`` delay: ``{"delay": ns}`` or a Go duration (``5s``); 0 when absent or
    unreadable (a plain NAK, as nats-server treats a bad delay)."""
    if not arg:
        return 0
    try:
        if arg.startswith(b"{"):
            found = json.loads(arg)
            delay = found.get("delay") if isinstance(found, dict) else None
            return delay if isinstance(delay, int) and not isinstance(delay, bool) else 0
        return int(parse_duration(arg.decode()) * NS)
    except (ValueError, ConfError, UnicodeDecodeError):
        return 0
