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
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol


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
    """Remove these sequences (a message delete, a per-subject limit, a filtered purge, an
    acknowledgement); a sequence no longer stored is skipped."""

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
    def atomic(self) -> AbstractContextManager[None]:
        """Everything staged inside reaches the disk in one write, or none of it (an atomic batch)."""
        ...
    def commit(self) -> asyncio.Future[None]: ...
    def save_meta(self, meta: dict[str, Any]) -> None: ...
    def save_consumer(self, name: str, state: dict[str, Any] | None) -> None:
        """Keep a durable consumer's config and state with the next commit (``None``: forget it)."""
        ...
    def consumers(self) -> dict[str, dict[str, Any]]:
        """The consumers saved with :meth:`save_consumer`, by name."""
        ...
    def save_sources(self, state: dict[str, Any]) -> None:
        """Keep where each of the stream's sources is (the last origin sequence it stored and the
        origin's identity, by source) with the messages staged in the same :meth:`atomic` block,
        so that the two never disagree after a crash. It outlives purges and expiry."""
        ...
    def sources(self) -> dict[str, Any] | None:
        """What :meth:`save_sources` kept last (``{}`` if nothing); ``None`` from a backend that
        keeps no such state (the stream then finds it in its messages' headers)."""
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
