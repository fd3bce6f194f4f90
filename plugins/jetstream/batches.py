"""Atomic batch publish (a stream's ``allow_atomic``), as nats-server 2.12+ does it on one server.

A publisher sends messages with ``Nats-Batch-Id`` and ``Nats-Batch-Sequence``
(1, 2, ...); the last carries ``Nats-Batch-Commit: 1`` (stored too) or
``eob`` (only ends the batch). Until then each message is held in memory and
answered with an empty reply. At the commit every message is checked as the
stream would check it, counting what the batch itself adds (expected
sequences, message ids, roll-ups, ``discard: new`` limits); if one fails,
none is stored and the commit's reply carries the error. Otherwise all of
them are staged in one :meth:`~natsd_plugins.jetstream.store.base.StreamStore.atomic`
write, and the commit's PubAck (``batch`` and ``count`` added) leaves once
it is durable: after a crash the stream holds the whole batch or none of it.

A batch is abandoned (with a ``BATCH_ABANDONED`` advisory) when it stops for
10 s, grows past 1000 messages or skips a sequence; a stream holds at most
50 open batches and the server 1000.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ApiError, api_error
from .store.base import StoredMsg
from .streams import (
    EXPECTED_LAST_MSG_ID,
    EXPECTED_LAST_SEQ,
    EXPECTED_LAST_SUBJ_SEQ,
    EXPECTED_LAST_SUBJ_SEQ_SUBJ,
    EXPECTED_STREAM,
    MSG_ID,
    MSG_TTL,
    ROLLUP,
    _set_header,
    _uint,
    parse_headers,
    parse_ttl,
)

if TYPE_CHECKING:
    import asyncio

    from .streams import Stream

BATCH_ID, BATCH_SEQ, BATCH_COMMIT = "Nats-Batch-Id", "Nats-Batch-Sequence", "Nats-Batch-Commit"
MAX_ID = 64
MAX_MSGS = 1000
MAX_PER_STREAM = 50
MAX_TOTAL = 1000
TIMEOUT = 10.0
"""Seconds a batch may wait for its next message."""


@dataclass
class Staged:
    subject: str
    hdrs: bytes
    data: bytes


@dataclass
class Batch:
    id: str
    msgs: list[Staged] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    expired: bool = False


class Batches:
    """The open batches of one stream."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.open: dict[str, Batch] = {}

    @property
    def _owner(self) -> Any:
        return self.stream.owner

    def received(self, subject: str, headers: bytes, payload: bytes, reply: bytes | None,
                 hdrs: dict[str, str]) -> None:
        """A message with a ``Nats-Batch-Id``: held, committed, or refused."""
        try:
            response = self._take(subject, headers, payload, reply, hdrs)
        except ApiError as exc:
            response = json.dumps({"error": exc.json(), "stream": self.stream.name, "seq": 0},
                                  separators=(",", ":")).encode()
        if response is not None and reply and not self.stream.config.get("no_ack"):
            self.stream.client.publish(reply, response)

    def _take(self, subject: str, headers: bytes, payload: bytes, reply: bytes | None,
              hdrs: dict[str, str]) -> bytes | None:
        stream, cfg = self.stream, self.stream.config
        if cfg["sealed"]:
            raise api_error("JSStreamSealedErr")
        self._owner.check_server_usage(cfg["storage"])
        self._owner.check_account_usage(stream.account, cfg["storage"], subject, headers, payload)
        max_size = cfg["max_msg_size"]
        if max_size >= 0 and len(headers) + len(payload) > max_size:
            raise api_error("JSStreamMessageExceedsMaximumErr")
        if not cfg.get("allow_atomic"):
            raise api_error("JSAtomicPublishDisabledErr")
        batch_id = hdrs[BATCH_ID]
        if len(batch_id) > MAX_ID:
            raise api_error("JSAtomicPublishInvalidBatchIDErr")
        text = hdrs.get(BATCH_SEQ, "")
        if not text.isdigit() or not text.isascii():
            raise api_error("JSAtomicPublishMissingSeqErr")
        seq = int(text)
        commit = hdrs.get(BATCH_COMMIT)
        end = commit == "eob"
        batch = self.open.get(batch_id)
        if batch is None:
            if seq != 1:
                if seq - (1 if end else 0) > MAX_MSGS:
                    raise api_error("JSAtomicPublishTooLargeBatchErrF", size=MAX_MSGS)
                raise api_error("JSAtomicPublishIncompleteBatchErr")
            if len(self.open) + 1 > MAX_PER_STREAM or self._owner.batches_open + 1 > MAX_TOTAL:
                raise api_error("JSAtomicPublishTooManyInflight")
            batch = self.open[batch_id] = Batch(batch_id)
            self._owner.batches_open += 1
        if commit is not None and commit not in ("1", "eob"):
            self._drop(batch)
            raise api_error("JSAtomicPublishInvalidBatchCommitErr")
        if batch.expired or seq != len(batch.msgs) + 1 or (seq == 1 and end):
            self._abandon(batch, "incomplete")
            raise api_error("JSAtomicPublishIncompleteBatchErr")
        if seq - (1 if end else 0) > MAX_MSGS:
            self._abandon(batch, "large")
            raise api_error("JSAtomicPublishTooLargeBatchErrF", size=MAX_MSGS)
        if not end:
            batch.msgs.append(Staged(subject, headers, payload))
        if commit is None:
            self._arm(batch)
            return b""  # held: the publisher sends the next one
        self._drop(batch)
        return self._commit(batch, reply)

    # -- the commit ------------------------------------------------------------------------------

    def _commit(self, batch: Batch, reply: bytes | None) -> bytes | None:
        """Check every message of ``batch`` as stored after the ones before it, then stage them all."""
        stream = self.stream
        last = batch.msgs[-1]
        if parse_headers(last.hdrs).get(BATCH_COMMIT) != "1":  # ended by "eob": the last says it
            last.hdrs = _set_header(last.hdrs, BATCH_COMMIT, "1")
        self._check(batch)
        with stream.store.atomic():
            seq = 0
            for msg in batch.msgs:
                seq, _ = stream.process(msg.subject, msg.hdrs, msg.data, checked=True)
        response = stream.pub_ack(seq, f',"batch":{json.dumps(batch.id)},"count":{len(batch.msgs)}')
        if reply and not stream.config.get("no_ack"):
            stream.ack_after_commit(reply, response)
        stream.request_commit()
        return None

    def _check(self, batch: Batch) -> None:
        """nats-server's checks of a batch's headers before any of it is stored."""
        stream, cfg = self.stream, self.stream.config
        store = stream.store
        written: set[str] = set()
        ids: set[str] = set()
        expected_subjects: dict[str, int] = {}
        added_msgs, added_bytes = 0, 0
        added_per_subject: dict[str, int] = {}
        now = time.time_ns()
        for i, msg in enumerate(batch.msgs):
            subject = msg.subject
            if stream.transform is not None:
                mapped = stream.transform.apply(subject.encode())
                subject = mapped.decode() if mapped is not None else subject
            hdrs = parse_headers(msg.hdrs)
            if EXPECTED_LAST_MSG_ID in hdrs:
                raise api_error("JSAtomicPublishUnsupportedHeaderBatchErr", header=EXPECTED_LAST_MSG_ID)
            if len(msg.hdrs) > 0xFFFF:
                raise api_error("JSStreamHeaderExceedsMaximumErr")
            expected = hdrs.get(EXPECTED_STREAM)
            if expected and expected != stream.name:
                raise api_error("JSStreamNotMatchErr")
            if hdrs.get(MSG_TTL):
                ttl = parse_ttl(hdrs[MSG_TTL])
                if ttl and not cfg.get("allow_msg_ttl"):
                    raise api_error("JSMessageTTLDisabledErr")
                if ttl is None:
                    raise api_error("JSMessageTTLInvalidErr")
            msg_id = hdrs.get(MSG_ID, "")
            if msg_id:
                stream._expire_dedup(now)
                if msg_id in ids or msg_id in stream.dedup:
                    raise api_error("JSAtomicPublishContainsDuplicateMessageErr")
                ids.add(msg_id)
            if EXPECTED_LAST_SEQ in hdrs:
                last_seq = stream.next_seq - 1 + i  # as the batch's earlier messages leave it
                if _uint(hdrs[EXPECTED_LAST_SEQ]) != last_seq:
                    raise api_error("JSStreamWrongLastSequenceErrF", seq=last_seq)
                if i > 0:  # only the first message may expect a last sequence
                    raise api_error("JSStreamWrongLastSequenceConstantErr")
            if EXPECTED_LAST_SUBJ_SEQ in hdrs:
                target = hdrs.get(EXPECTED_LAST_SUBJ_SEQ_SUBJ) or subject
                if target in written:
                    raise api_error("JSStreamWrongLastSequenceConstantErr")
                wanted = _uint(hdrs[EXPECTED_LAST_SUBJ_SEQ])
                if target in expected_subjects:
                    actual = expected_subjects[target]
                else:
                    found = store.last_matching(target)
                    actual = expected_subjects[target] = found.seq if found is not None else 0
                if wanted != actual:
                    raise api_error("JSStreamWrongLastSequenceErrF", seq=actual)
            elif hdrs.get(EXPECTED_LAST_SUBJ_SEQ_SUBJ):
                raise api_error("JSStreamExpectedLastSeqPerSubjectInvalid")
            rollup = hdrs.get(ROLLUP, "").lower()
            if rollup:
                if not cfg["allow_rollup_hdrs"] or cfg["deny_purge"]:
                    raise api_error("JSStreamRollupFailedF", err="rollup not permitted")
                if rollup == "sub" and subject in written:
                    raise api_error("JSStreamRollupFailedF", err="batch rollup sub invalid")
                if rollup == "all" and i > 0:
                    raise api_error("JSStreamRollupFailedF", err="batch rollup all invalid")
                if rollup not in ("sub", "all"):
                    raise api_error("JSStreamRollupFailedF", err=f'rollup value invalid: "{rollup}"')
            written.add(subject)
            if cfg["discard"] == "new":
                state = store.state()
                size = StoredMsg(0, subject, msg.hdrs, msg.data, 0).size(cfg["storage"])
                per = cfg["max_msgs_per_subject"] if cfg.get("discard_new_per_subject") else 0
                if per > 0 and not rollup:
                    info = store.subject_info(subject)
                    count = (info.count if info is not None else 0) + added_per_subject.get(subject, 0)
                    if count >= per:
                        raise api_error("JSStreamStoreFailedF", err="maximum messages per subject exceeded")
                if cfg["max_msgs"] > 0 and state.msgs + added_msgs >= cfg["max_msgs"]:
                    raise api_error("JSStreamStoreFailedF", err="maximum messages exceeded")
                if cfg["max_bytes"] > 0 and state.bytes + added_bytes + size > cfg["max_bytes"]:
                    raise api_error("JSStreamStoreFailedF", err="maximum bytes exceeded")
                added_msgs += 1
                added_bytes += size
                added_per_subject[subject] = added_per_subject.get(subject, 0) + 1

    # -- open batches -----------------------------------------------------------------------------

    def _arm(self, batch: Batch) -> None:
        if batch.timer is not None:
            batch.timer.cancel()
        batch.timer = self._owner.server.loop.call_later(TIMEOUT, self._expired, batch)

    def _expired(self, batch: Batch) -> None:
        batch.timer = None
        if self.open.get(batch.id) is batch:
            self._abandon(batch, "timeout")

    def _abandon(self, batch: Batch, reason: str) -> None:
        self._drop(batch)
        self._owner.advisories.batch_abandoned(self.stream.account, self.stream.name, batch.id, reason)

    def _drop(self, batch: Batch) -> None:
        if batch.timer is not None:
            batch.timer.cancel()
            batch.timer = None
        if self.open.pop(batch.id, None) is batch:
            self._owner.batches_open -= 1

    def close(self) -> None:
        """The stream stops (deleted, or atomic publish turned off): open batches are dropped."""
        for batch in list(self.open.values()):
            self._drop(batch)
