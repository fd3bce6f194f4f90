"""The storage contract of the jetstream plugin: what a backend provides for each stream.

A stream's changes are an ordered log of operations (:data:`Op`): append a
message, remove some sequences, drop everything below a sequence, use up a
sequence without a message. The stream
*stages* operations in order, and a store applies them to its view at once
(so the next publish sees the new last sequence, subject counts and limits);
:meth:`StreamStore.commit` resolves once everything staged so far is durable.
Replicating a stream later means replicating this log. A PubAck is sent only
after the commit that covers its message: no backend may resolve a commit
before the data would survive a crash (``sync: always``), except when the
operator chose a ``sync_interval``.

Reads (:meth:`StreamStore.load` ...) are synchronous point lookups: a
backend answers them from memory or from its own cache (RocksDB's block
cache), never by waiting on I/O it could avoid. Writes and syncs never run
on the event loop.

Another package can provide a backend through the plugin's
``natsd_jetstream_backends`` hook (see :mod:`natsd_plugins.jetstream.hookspecs`).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from natsd.routing.subjects import subject_matches


@dataclass(frozen=True, slots=True)
class StoredMsg:
    """One message of a stream; ``ts`` is nanoseconds since the epoch, ``hdrs`` the raw
    ``NATS/1.0`` header block (``b""`` without headers)."""

    seq: int
    subject: str
    hdrs: bytes
    data: bytes
    ts: int

    def size(self, kind: str = "file") -> int:
        """What the message counts against ``max_bytes`` in nats-server's ``kind`` of store
        (``file``: its record with checksum; ``memory``: subject, headers, payload and 16)."""
        if kind == "memory":
            return len(self.subject) + len(self.hdrs) + len(self.data) + 16
        return 30 + len(self.subject) + len(self.data) + (4 + len(self.hdrs) if self.hdrs else 0)


@dataclass(frozen=True, slots=True)
class Append:
    msg: StoredMsg


@dataclass(frozen=True, slots=True)
class Remove:
    """Remove these sequences (a message delete, a per-subject limit, a filtered purge)."""

    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Compact:
    """Remove every message below ``first_seq``, which becomes the stream's first sequence."""

    first_seq: int


@dataclass(frozen=True, slots=True)
class Skip:
    """Use up sequence ``seq`` without a message (an interest stream nobody would consume from)."""

    seq: int
    ts: int = 0


Op = Append | Remove | Compact | Skip


@dataclass
class StreamState:
    """Counts of a stream's messages (what STREAM.INFO's ``state`` reports)."""

    msgs: int = 0
    bytes: int = 0
    first_seq: int = 0
    """0 for a stream that never held a message; after purges, the next sequence to come."""
    last_seq: int = 0
    last_ts: int = 0
    deleted: int = 0
    """Sequences between first and last that are gone (interior deletes)."""


@dataclass
class SubjectInfo:
    count: int
    first: int
    last: int


class StreamStore(Protocol):
    """One stream's messages in one backend."""

    def state(self) -> StreamState: ...
    def subject_info(self, subject: str) -> SubjectInfo | None: ...
    def subjects(self, filter: str = ">") -> Iterator[tuple[str, SubjectInfo]]: ...
    def load(self, seq: int) -> StoredMsg | None: ...
    def next_matching(self, start_seq: int, filter: str) -> StoredMsg | None: ...
    def last_matching(self, filter: str) -> StoredMsg | None: ...
    def count_from(self, start_seq: int, filter: str) -> int:
        """How many stored messages at ``start_seq`` or later match ``filter`` (num_pending)."""
        ...
    def stage(self, ops: Sequence[Op]) -> None: ...
    def commit(self) -> asyncio.Future[None]: ...
    def save_meta(self, meta: dict[str, Any]) -> None: ...
    def save_consumer(self, name: str, state: dict[str, Any] | None) -> None:
        """Keep a durable consumer's config and state with the next commit (``None``: forget it)."""
        ...
    def consumers(self) -> dict[str, dict[str, Any]]:
        """The consumers saved with :meth:`save_consumer`, by name."""
        ...
    async def delete(self) -> None: ...


class StoreBackend(Protocol):
    """Streams of one server in one medium (``file`` or ``memory`` storage)."""

    async def open(self) -> None: ...
    def saved(self) -> list[tuple[str, str, dict[str, Any]]]:
        """``(account, stream, meta)`` of every stream kept from an earlier run."""
        ...
    def stream(self, account: str, name: str) -> StreamStore: ...
    async def close(self) -> None: ...


@dataclass
class Index:
    """The bookkeeping every backend keeps in memory: counts, and each subject's sequences.

    Backends call :meth:`apply` with each staged operation; sequences per
    subject are kept sorted (appends arrive in order), so per-subject limits
    and ``last_by_subj`` are a list access.
    """

    kind: str = "file"
    """Whose byte accounting the counts follow (see :meth:`StoredMsg.size`)."""
    state: StreamState = field(default_factory=StreamState)
    by_subject: dict[str, list[int]] = field(default_factory=dict)
    subject_of: dict[int, tuple[str, int]] = field(default_factory=dict)
    """seq -> (subject, size), for every stored message."""

    def apply(self, op: Op) -> list[int]:
        """Apply ``op``; the sequences it removed."""
        st = self.state
        if isinstance(op, Append):
            msg = op.msg
            if st.msgs == 0:
                st.first_seq = msg.seq
            elif msg.seq > st.last_seq + 1:
                st.deleted += msg.seq - st.last_seq - 1
            st.last_seq, st.last_ts = msg.seq, msg.ts
            size = msg.size(self.kind)
            st.msgs += 1
            st.bytes += size
            self.subject_of[msg.seq] = (msg.subject, size)
            self.by_subject.setdefault(msg.subject, []).append(msg.seq)
            return []
        if isinstance(op, Remove):
            return [seq for seq in op.seqs if self._drop(seq)]
        if isinstance(op, Skip):
            if st.msgs == 0:
                st.first_seq = op.seq + 1
            else:
                st.deleted += op.seq - st.last_seq
            st.last_seq = max(st.last_seq, op.seq)
            st.last_ts = op.ts or st.last_ts
            return []
        removed = [seq for seq in sorted(s for s in self.subject_of if s < op.first_seq) if self._drop(seq)]
        if st.msgs == 0:
            st.first_seq = max(st.first_seq, op.first_seq)
            st.last_seq = max(st.last_seq, st.first_seq - 1)
        return removed

    def _drop(self, seq: int) -> bool:
        entry = self.subject_of.pop(seq, None)
        if entry is None:
            return False
        subject, size = entry
        st = self.state
        st.msgs -= 1
        st.bytes -= size
        seqs = self.by_subject[subject]
        del seqs[bisect.bisect_left(seqs, seq)]
        if not seqs:
            del self.by_subject[subject]
        if st.msgs == 0:
            st.first_seq, st.deleted = st.last_seq + 1, 0
        elif seq == st.first_seq:
            following = seq + 1  # each interior gap is walked once, when the front reaches it
            while following not in self.subject_of:
                following += 1
            st.deleted -= following - seq - 1
            st.first_seq = following
        else:
            st.deleted += 1
        return True

    def subject_info(self, subject: str) -> SubjectInfo | None:
        seqs = self.by_subject.get(subject)
        return SubjectInfo(len(seqs), seqs[0], seqs[-1]) if seqs else None

    def subjects(self, filter: str = ">") -> Iterator[tuple[str, SubjectInfo]]:
        literal = not any(c in filter for c in "*>")
        items: Iterable[str] = [filter] if literal else self.by_subject
        for subject in items:
            seqs = self.by_subject.get(subject)
            if seqs and (literal or subject_matches(filter.encode(), subject.encode())):
                yield subject, SubjectInfo(len(seqs), seqs[0], seqs[-1])

    def next_seq_matching(self, start_seq: int, filter: str) -> int | None:
        """The first stored sequence ``>= start_seq`` whose subject matches ``filter``."""
        if filter == ">":
            seq, last, present = max(start_seq, self.state.first_seq), self.state.last_seq, self.subject_of
            while seq <= last:
                if seq in present:
                    return seq
                seq += 1
            return None
        best: int | None = None
        for subject, _ in self.subjects(filter):
            seqs = self.by_subject[subject]
            i = bisect.bisect_left(seqs, start_seq)
            if i < len(seqs) and (best is None or seqs[i] < best):
                best = seqs[i]
        return best

    def count_from(self, start_seq: int, filter: str) -> int:
        if filter == ">" and start_seq <= self.state.first_seq:
            return self.state.msgs
        return sum(len(seqs) - bisect.bisect_left(seqs, start_seq)
                   for seqs in (self.by_subject[s] for s, _ in self.subjects(filter)))

    def last_seq_matching(self, filter: str) -> int | None:
        last = [info.last for _, info in self.subjects(filter)]
        return max(last) if last else None
