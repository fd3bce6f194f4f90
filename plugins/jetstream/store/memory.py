"""``storage: memory``: streams kept in this process only (gone with it, as in nats-server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from .base import Append, Op, StoredMsg, StreamState, SubjectInfo
from .index import Index


class MemoryStream:
    """A stream's messages in a dict; a commit is immediate."""

    def __init__(self, backend: MemoryBackend | None = None, key: tuple[str, str] = ("", "")) -> None:
        self.backend = backend
        self.key = key
        self.index = Index("memory")
        self.msgs: dict[int, StoredMsg] = {}
        self.meta: dict[str, Any] = {}
        self.saved_consumers: dict[str, dict[str, Any]] = {}
        self.saved_sources: dict[str, Any] = {}

    def state(self) -> StreamState:
        return self.index.state

    def subject_info(self, subject: str) -> SubjectInfo | None:
        return self.index.subject_info(subject)

    def subjects(self, filter: str = ">") -> Iterator[tuple[str, SubjectInfo]]:
        return self.index.subjects(filter)

    def load(self, seq: int) -> StoredMsg | None:
        return self.msgs.get(seq)

    def next_matching(self, start_seq: int, filter: str) -> StoredMsg | None:
        seq = self.index.next_seq_matching(start_seq, filter)
        return self.msgs.get(seq) if seq is not None else None

    def last_matching(self, filter: str) -> StoredMsg | None:
        seq = self.index.last_seq_matching(filter)
        return self.msgs.get(seq) if seq is not None else None

    def count_from(self, start_seq: int, filter: str) -> int:
        return self.index.count_from(start_seq, filter)

    def save_consumer(self, name: str, state: dict[str, Any] | None) -> None:
        if state is None:
            self.saved_consumers.pop(name, None)
        else:
            self.saved_consumers[name] = state

    def consumers(self) -> dict[str, dict[str, Any]]:
        return dict(self.saved_consumers)

    def save_sources(self, state: dict[str, Any]) -> None:
        self.saved_sources = dict(state)

    def sources(self) -> dict[str, Any] | None:
        return dict(self.saved_sources)

    def stage(self, ops: Sequence[Op]) -> None:
        for op in ops:
            if isinstance(op, Append):
                self.msgs[op.msg.seq] = op.msg
            for seq in self.index.apply(op):
                self.msgs.pop(seq, None)

    def atomic(self) -> AbstractContextManager[None]:
        return nullcontext()  # nothing reaches a disk: every stage is whole

    def commit(self) -> asyncio.Future[None]:
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def save_meta(self, meta: dict[str, Any]) -> None:
        self.meta = meta

    async def delete(self) -> None:
        self.msgs.clear()
        self.saved_consumers.clear()
        self.index = Index("memory")
        if self.backend is not None:
            self.backend.streams.pop(self.key, None)


class MemoryBackend:
    """Every ``storage: memory`` stream of the server."""

    def __init__(self) -> None:
        self.streams: dict[tuple[str, str], MemoryStream] = {}

    async def open(self) -> None:
        return None

    def saved(self) -> list[tuple[str, str, dict[str, Any]]]:
        """The streams this process holds (none at start: nothing survives a restart in memory)."""
        return [(account, name, stream.meta) for (account, name), stream in self.streams.items() if stream.meta]

    def stream(self, account: str, name: str) -> MemoryStream:
        key = (account, name)
        stream = self.streams.get(key)
        if stream is None:
            stream = self.streams[key] = MemoryStream(self, key)
        return stream

    async def close(self) -> None:
        self.streams.clear()
