"""``storage: file``: streams in one RocksDB database under ``store_dir`` (through rocksdict).

Layout (keys are bytes; ``sid`` is ``account NUL stream NUL``)::

    b"C" sid            -> the stream's meta (config, created), JSON
    b"O" sid name       -> a durable consumer's config and state, JSON
    b"S" sid            -> where each source of the stream is, JSON (see save_sources)
    b"M" sid seq(8, BE) -> ts(8) crc32(4) len(subject)(2) len(hdrs)(4) subject hdrs data

Group commit: what the streams stage during one pass of the event loop is
collected there and handed to a single writer thread once, at the end of the
pass, with the pass's commits (which all share one future). The writer takes
everything handed over, writes it as one ``WriteBatch`` with ``sync=True``
(the WAL reaches the disk before ``write`` returns) and only then resolves
the commits it covered, on the event loop. Publishes that arrive while a
sync runs are covered by the next one, so the rate of syncs, not of
messages, bounds the cost. With a ``sync_interval`` the batch is
written without a sync and the WAL is synced every interval instead: the
operator's choice, as nats-server's.

The messages of the last writes stay in memory too (:data:`RECENT_BYTES`):
a consumer delivers what was just stored, and an interest stream checks what
was just acknowledged, without reading it back.

Every message carries a CRC32 of its subject, headers and payload: a
damaged record is reported (log, ``corrupt`` count) and never served; the
rest of the stream stays readable.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from .base import Append, Compact, Op, Remove, Skip, StoredMsg, StreamState, SubjectInfo
from .index import Index

log = logging.getLogger("natsd.jetstream")

HEAD = struct.Struct(">QIHI")  # ts, crc32, len(subject), len(hdrs)
SEQ = struct.Struct(">Q")
RECENT_BYTES = 1 << 20
"""How much of each stream's last written messages (headers and payloads) stays in memory (nats-server
keeps a stream's last message block, up to 8 MiB, cached)."""
RECENT_COUNT = 4096


def _encode(msg: StoredMsg) -> bytes:
    subject = msg.subject.encode()
    crc = zlib.crc32(msg.data, zlib.crc32(msg.hdrs, zlib.crc32(subject)))
    return HEAD.pack(msg.ts, crc, len(subject), len(msg.hdrs)) + subject + msg.hdrs + msg.data


def _decode(seq: int, raw: bytes) -> StoredMsg | None:
    """The message in ``raw``, or ``None`` when its checksum does not match."""
    if len(raw) < HEAD.size:
        return None
    ts, crc, slen, hlen = HEAD.unpack_from(raw)
    body = memoryview(raw)[HEAD.size:]
    if len(body) < slen + hlen:
        return None
    subject, hdrs, data = bytes(body[:slen]), bytes(body[slen:slen + hlen]), bytes(body[slen + hlen:])
    if zlib.crc32(data, zlib.crc32(hdrs, zlib.crc32(subject))) != crc:
        return None
    return StoredMsg(seq, subject.decode(), hdrs, data, ts)


class RocksStream:
    """One stream's messages in the shared database."""

    def __init__(self, backend: RocksBackend, sid: bytes) -> None:
        self.backend = backend
        self.sid = sid
        self.index = Index()
        self.unsynced: dict[int, StoredMsg] = {}
        """Appended messages whose batch is not written yet (reads see them)."""
        self.recent: OrderedDict[int, StoredMsg] = OrderedDict()
        """The last written messages, oldest first, within :data:`RECENT_BYTES` and :data:`RECENT_COUNT`."""
        self._recent_bytes = 0
        self._held: list[tuple[str, bytes, bytes]] | None = None
        """Writes staged inside :meth:`atomic`, enqueued together when it ends."""

    def _key(self, seq: int) -> bytes:
        return b"M" + self.sid + SEQ.pack(seq)

    def rebuild(self) -> None:
        """Read the stream's messages once to rebuild the index (start-up)."""
        prefix = b"M" + self.sid
        it = self.backend.db.iter()
        it.seek(prefix)
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                break
            seq = SEQ.unpack_from(key, len(prefix))[0]
            msg = _decode(seq, it.value())
            if msg is None:
                self.backend.damaged(self.sid, seq)
            else:
                self.index.apply(Append(msg))
            it.next()
        meta = self.backend.meta(self.sid) or {}
        first = int(meta.get("first_seq", 0))
        if first and (first > self.index.state.first_seq or self.index.state.msgs == 0):
            self.index.apply(Compact(first))
        last = int(meta.get("last_seq", 0))
        if last > self.index.state.last_seq:
            self.index.apply(Skip(last))

    # -- reads ----------------------------------------------------------------------------

    def state(self) -> StreamState:
        return self.index.state

    def subject_info(self, subject: str) -> SubjectInfo | None:
        return self.index.subject_info(subject)

    def subjects(self, filter: str = ">") -> Iterator[tuple[str, SubjectInfo]]:
        return self.index.subjects(filter)

    def load(self, seq: int) -> StoredMsg | None:
        if not self.index.has(seq):
            return None
        msg = self.unsynced.get(seq) or self.recent.get(seq)
        if msg is not None:
            return msg
        raw = self.backend.db.get(self._key(seq))
        if raw is None:
            return None
        msg = _decode(seq, raw)
        if msg is None:
            self.backend.damaged(self.sid, seq)
        return msg

    def next_matching(self, start_seq: int, filter: str) -> StoredMsg | None:
        seq = self.index.next_seq_matching(start_seq, filter)
        return self.load(seq) if seq is not None else None

    def last_matching(self, filter: str) -> StoredMsg | None:
        seq = self.index.last_seq_matching(filter)
        return self.load(seq) if seq is not None else None

    def count_from(self, start_seq: int, filter: str) -> int:
        return self.index.count_from(start_seq, filter)

    def consumers(self) -> dict[str, dict[str, Any]]:
        out = {}
        prefix = b"O" + self.sid
        it = self.backend.db.iter()
        it.seek(prefix)
        while it.valid() and it.key().startswith(prefix):
            out[it.key()[len(prefix):].decode()] = json.loads(it.value())
            it.next()
        return out

    def save_sources(self, state: dict[str, Any]) -> None:
        write = ("raw", b"S" + self.sid, json.dumps(state).encode())
        if self._held is not None:
            self._held.append(write)  # in the same WriteBatch as the message it follows
        else:
            self.backend.enqueue(self, [write])

    def sources(self) -> dict[str, Any] | None:
        value = self.backend.db.get(b"S" + self.sid)
        return json.loads(value) if value is not None else {}

    def save_consumer(self, name: str, state: dict[str, Any] | None) -> None:
        key = b"O" + self.sid + name.encode()
        if state is None:
            self.backend.enqueue(self, [("del", key, b"")])
        else:
            self.backend.enqueue(self, [("raw", key, json.dumps(state).encode())])

    # -- writes -----------------------------------------------------------------------------

    def stage(self, ops: Sequence[Op]) -> None:
        writes: list[tuple[str, bytes, bytes]] = []
        for op in ops:
            if isinstance(op, Append):
                msg = op.msg
                self.unsynced[msg.seq] = msg
                writes.append(("put", self._key(msg.seq), _encode(msg)))
            removed = self.index.apply(op)
            if isinstance(op, Remove):
                for seq in removed:
                    self._forget(seq)
                    writes.append(("del", self._key(seq), b""))
            elif isinstance(op, Skip):
                meta = self.backend.meta(self.sid)
                if meta is not None:  # the used-up sequence survives a restart
                    meta["last_seq"] = op.seq
                    writes.append(("meta", self.sid, b""))
            elif isinstance(op, Compact):
                for seq in removed:
                    self._forget(seq)
                writes.append(("range", self._key(0), self._key(op.first_seq)))
                meta = self.backend.meta(self.sid)
                if meta is not None:  # the first sequence survives a restart with no message left
                    meta["first_seq"] = self.index.state.first_seq
                    writes.append(("meta", self.sid, b""))
        if self._held is not None:
            self._held.extend(writes)
        else:
            self.backend.enqueue(self, writes)

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """The writes staged inside go to the writer as one entry: one ``WriteBatch``, all or nothing."""
        outer = self._held is not None
        if not outer:
            self._held = []
        try:
            yield
        finally:
            if not outer:
                held, self._held = self._held, None
                if held:
                    self.backend.enqueue(self, held)

    def commit(self) -> asyncio.Future[None]:
        return self.backend.commit()

    def written(self, seqs: list[int]) -> None:
        """The writer thread's batch holding these appends is in the database."""
        unsynced, recent = self.unsynced, self.recent
        for seq in seqs:
            msg = unsynced.pop(seq, None)
            if msg is not None:
                recent[seq] = msg
                self._recent_bytes += len(msg.hdrs) + len(msg.data)
        while recent and (self._recent_bytes > RECENT_BYTES or len(recent) > RECENT_COUNT):
            _, msg = recent.popitem(last=False)
            self._recent_bytes -= len(msg.hdrs) + len(msg.data)

    def _forget(self, seq: int) -> None:
        """A removed message leaves memory too."""
        self.unsynced.pop(seq, None)
        msg = self.recent.pop(seq, None)
        if msg is not None:
            self._recent_bytes -= len(msg.hdrs) + len(msg.data)

    def save_meta(self, meta: dict[str, Any]) -> None:
        self.backend.save_meta(self, meta)

    async def delete(self) -> None:
        self.backend.enqueue(self, [("range", b"M" + self.sid, b"M" + self.sid + b"\xff" * 9),
                                    ("range", b"O" + self.sid, b"O" + self.sid + b"\xff"),
                                    ("del", b"C" + self.sid, b""), ("del", b"S" + self.sid, b"")])
        self.index = Index()
        self.unsynced.clear()
        self.recent.clear()
        self._recent_bytes = 0
        self.backend.forget(self.sid)
        await self.backend.commit()


class RocksBackend:
    """The database and its writer thread."""

    def __init__(self, path: str, sync_interval: float | None = None) -> None:
        self.path = path
        self.sync_interval = sync_interval
        self.db: Any = None
        self.streams: dict[bytes, RocksStream] = {}
        self.corrupt = 0
        """Damaged messages found (reported in /jsz)."""
        self._metas: dict[bytes, dict[str, Any]] = {}
        self._pending: list[tuple[RocksStream, list[tuple[str, bytes, bytes]]]] = []
        """Handed to the writer, not yet taken (under ``_cond``)."""
        self._waiters: list[asyncio.Future[None]] = []
        self._staged: list[tuple[RocksStream, list[tuple[str, bytes, bytes]]]] = []
        """Enqueued during this loop pass (the loop's thread only): handed over at its end."""
        self._commit: asyncio.Future[None] | None = None
        """The future of every commit asked for during this loop pass."""
        self._handover_scheduled = False
        self._cond = threading.Condition()
        self._writer_thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.syncs = 0
        """Batches written (each one sync with the default policy)."""

    async def open(self) -> None:
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        options.set_paranoid_checks(True)
        self._loop = asyncio.get_running_loop()
        self.db = await asyncio.to_thread(Rdict, self.path, options)
        it = self.db.iter()
        it.seek(b"C")
        while it.valid() and it.key().startswith(b"C"):
            self._metas[it.key()[1:]] = json.loads(it.value())
            it.next()
        self._writer_thread = threading.Thread(target=self._writer, name="natsd-jetstream-writer", daemon=True)
        self._writer_thread.start()

    def saved(self) -> list[tuple[str, str, dict[str, Any]]]:
        out = []
        for sid, meta in self._metas.items():
            account, name, _ = sid.split(b"\x00")
            out.append((account.decode(), name.decode(), meta))
        return out

    def meta(self, sid: bytes) -> dict[str, Any] | None:
        return self._metas.get(sid)

    def stream(self, account: str, name: str) -> RocksStream:
        sid = account.encode() + b"\x00" + name.encode() + b"\x00"
        stream = self.streams.get(sid)
        if stream is None:
            stream = self.streams[sid] = RocksStream(self, sid)
            if sid in self._metas:
                stream.rebuild()
        return stream

    def forget(self, sid: bytes) -> None:
        """A deleted stream is no longer open nor among the saved ones."""
        self.streams.pop(sid, None)
        self._metas.pop(sid, None)

    def save_meta(self, stream: RocksStream, meta: dict[str, Any]) -> None:
        self._metas[stream.sid] = meta
        self.enqueue(stream, [("meta", stream.sid, b"")])

    def damaged(self, sid: bytes, seq: int) -> None:
        self.corrupt += 1
        account, name, _ = sid.split(b"\x00")
        log.error("JetStream: message %d of stream %r (account %r) is damaged (checksum mismatch); "
                  "it is not served", seq, name.decode(), account.decode())

    # -- the writer ---------------------------------------------------------------------------

    def enqueue(self, stream: RocksStream, writes: list[tuple[str, bytes, bytes]]) -> None:
        """Add ``writes`` to the next batch (from the event loop's thread)."""
        if writes:
            self._staged.append((stream, writes))
            self._hand_over_soon()

    def commit(self) -> asyncio.Future[None]:
        """A future resolved once everything enqueued so far is written (and synced).

        Every commit of one loop pass gets the same future: the writer covers them with one batch.
        """
        done = self._commit
        if done is None:
            assert self._loop is not None
            done = self._commit = self._loop.create_future()
            self._hand_over_soon()
        return done

    def _hand_over_soon(self) -> None:
        if not self._handover_scheduled:
            self._handover_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._hand_over)

    def _hand_over(self) -> None:
        """End of the loop pass: the writer gets its writes and its commit, under one lock."""
        self._handover_scheduled = False
        staged, self._staged = self._staged, []
        done, self._commit = self._commit, None
        with self._cond:
            if not self._stopping:
                self._pending.extend(staged)
                if done is not None:
                    self._waiters.append(done)
                    self._cond.notify()
                return
        # closed: the writer has taken its last batch, and nothing more becomes durable
        if staged:
            log.warning("JetStream: %d write(s) to %s came after it was closed and are not kept",
                        sum(len(writes) for _, writes in staged), self.path)
        if done is not None and not done.done():
            done.set_exception(OSError("JetStream storage is closed"))

    def _writer(self) -> None:
        options = WriteOptions()
        options.sync = self.sync_interval is None
        next_sync = 0.0
        while True:
            with self._cond:
                while not self._waiters and not self._stopping:
                    self._cond.wait(self.sync_interval or None)
                    if self.sync_interval and self._pending:
                        break
                pending, self._pending = self._pending, []
                waiters, self._waiters = self._waiters, []
                stopping = self._stopping
            error: BaseException | None = None
            appended: list[tuple[RocksStream, list[int]]] = []
            if pending:
                batch = WriteBatch(raw_mode=True)
                for stream, writes in pending:
                    seqs = []
                    for kind, key, value in writes:
                        if kind == "put":
                            batch.put(key, value)
                            seqs.append(SEQ.unpack_from(key, len(key) - 8)[0])
                        elif kind == "del":
                            batch.delete(key)
                        elif kind == "range":
                            batch.delete_range(key, value)
                        elif kind == "raw":
                            batch.put(key, value)
                        else:  # "meta": the stream's current meta, as of this batch
                            meta = self._metas.get(key)
                            if meta is not None:
                                batch.put(b"C" + key, json.dumps(meta).encode())
                    appended.append((stream, seqs))
                try:
                    self.db.write(batch, options)
                    self.syncs += 1
                    if self.sync_interval:
                        if time.monotonic() >= next_sync:
                            self.db.flush_wal(True)
                            next_sync = time.monotonic() + self.sync_interval
                except Exception as exc:  # the disk failed: nobody is told their write is safe
                    log.exception("JetStream: writing to %s failed", self.path)
                    error = exc
            assert self._loop is not None
            if appended or waiters:
                self._loop.call_soon_threadsafe(self._resolved, appended, waiters, error)
            if stopping:
                return

    @staticmethod
    def _resolved(appended: list[tuple[RocksStream, list[int]]], waiters: list[asyncio.Future[None]],
                  error: BaseException | None) -> None:
        for stream, seqs in appended:
            stream.written(seqs)
        for waiter in waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(OSError(f"JetStream storage write failed: {error}"))

    async def close(self) -> None:
        self._hand_over()
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._writer_thread is not None:
            await asyncio.to_thread(self._writer_thread.join, 10)
        if self.db is not None:
            self.db.close()
            self.db = None
