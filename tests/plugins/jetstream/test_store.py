"""The storage contract, run against both backends (memory and RocksDB)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from natsd_plugins.jetstream.store.base import Append, Compact, Remove, StoredMsg
from natsd_plugins.jetstream.store.memory import MemoryBackend
from natsd_plugins.jetstream.store.rocks import RECENT_BYTES, RocksBackend


def msg(seq: int, subject: str = "a.b", data: bytes = b"x") -> StoredMsg:
    return StoredMsg(seq, subject, b"", data, time.time_ns())


@pytest.fixture(params=["memory", "rocks"])
async def backend(request: Any, tmp_path: Path) -> AsyncIterator[Any]:
    store = MemoryBackend() if request.param == "memory" else RocksBackend(str(tmp_path / "db"))
    await store.open()
    yield store
    await store.close()


async def test_appends_removes_and_compaction_keep_the_counts(backend: Any) -> None:
    s = backend.stream("$G", "S")
    s.save_meta({"config": {"name": "S"}})
    s.stage([Append(msg(i, f"s.{i % 3}", b"%d" % i)) for i in range(1, 11)])
    await s.commit()
    st = s.state()
    assert (st.msgs, st.first_seq, st.last_seq, st.deleted) == (10, 1, 10, 0)
    assert s.subject_info("s.1").count == 4 and s.subject_info("s.1").last == 10
    s.stage([Remove((5, 6, 99))])
    assert (s.state().msgs, s.state().deleted) == (8, 2)
    assert s.load(5) is None and s.load(7).data == b"7"
    s.stage([Remove((1,))])
    assert s.state().first_seq == 2
    s.stage([Compact(7)])  # drops 2, 3, 4: the interior gap 5-6 goes with them
    await s.commit()
    st = s.state()
    assert (st.msgs, st.first_seq, st.last_seq, st.deleted) == (4, 7, 10, 0)
    assert s.next_matching(0, "s.0").seq == 9 and s.last_matching("s.*").seq == 10
    assert dict((k, v.count) for k, v in s.subjects("s.*")) == {"s.1": 2, "s.2": 1, "s.0": 1}
    s.stage([Compact(20)])  # a purge of everything: the next sequence is kept
    await s.commit()
    st = s.state()
    assert (st.msgs, st.first_seq, st.last_seq) == (0, 20, 19)


async def test_rocks_streams_come_back_after_a_restart(tmp_path: Path) -> None:
    backend = RocksBackend(str(tmp_path / "db"))
    await backend.open()
    s = backend.stream("ACC", "ORDERS")
    s.save_meta({"config": {"name": "ORDERS"}, "created": "then"})
    s.stage([Append(msg(i, f"o.{i % 2}")) for i in range(1, 6)] + [Remove((2,))])
    await s.commit()
    s.stage([Compact(2)])
    await s.commit()
    await backend.close()

    again = RocksBackend(str(tmp_path / "db"))
    await again.open()
    assert again.saved() == [("ACC", "ORDERS", {"config": {"name": "ORDERS"}, "created": "then",
                                                "first_seq": 3})]
    s = again.stream("ACC", "ORDERS")
    st = s.state()
    assert (st.msgs, st.first_seq, st.last_seq) == (3, 3, 5)
    assert s.load(4).subject == "o.0"
    await again.close()


async def test_a_damaged_record_is_reported_and_never_served(tmp_path: Path, caplog: Any) -> None:
    backend = RocksBackend(str(tmp_path / "db"))
    await backend.open()
    s = backend.stream("$G", "S")
    s.save_meta({"config": {"name": "S"}})
    s.stage([Append(msg(i, data=b"payload-%d" % i)) for i in range(1, 4)])
    await s.commit()
    key = s._key(2)
    raw = bytearray(backend.db.get(key))
    raw[-1] ^= 0x01  # one flipped bit in the payload
    backend.db.put(key, bytes(raw))
    assert s.load(2).data == b"payload-2"  # the last writes are still in memory, as written
    s.recent.clear()  # as once later writes pushed them out: read from the database
    assert s.load(2) is None and s.load(3).data == b"payload-3"
    assert backend.corrupt == 1 and "damaged" in caplog.text
    await backend.close()
    again = RocksBackend(str(tmp_path / "db"))
    await again.open()
    s = again.stream("$G", "S")
    assert s.state().msgs == 2 and again.corrupt == 1  # left out of the index at start-up
    await again.close()


async def test_group_commit_covers_everything_staged_while_a_sync_runs(tmp_path: Path) -> None:
    backend = RocksBackend(str(tmp_path / "db"))
    await backend.open()
    s = backend.stream("$G", "S")
    s.save_meta({"config": {"name": "S"}})
    commits = []
    for i in range(1, 2001):
        s.stage([Append(msg(i))])
        commits.append(s.commit())
    syncs = backend.syncs
    await asyncio.gather(*commits)
    assert len({id(c) for c in commits}) == 1 and backend.syncs == syncs + 1  # one loop pass, one batch
    assert all(s.load(i) is not None for i in (1, 1000, 2000)) and not s.unsynced
    await backend.close()


async def test_a_commit_waits_for_the_batch_being_written(tmp_path: Path) -> None:
    """A commit asked while the writer is busy with a batch resolves after that batch, even
    with nothing new staged: what was enqueued before it is not durable yet."""
    backend = RocksBackend(str(tmp_path / "db"))
    await backend.open()
    writing, release = threading.Event(), threading.Event()

    class Held:
        def __init__(self, db: Any) -> None:
            self.db = db

        def write(self, batch: Any, options: Any) -> None:
            writing.set()
            release.wait(10)
            self.db.write(batch, options)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.db, name)

    real, backend.db = backend.db, Held(backend.db)
    try:
        s = backend.stream("$G", "S")
        s.stage([Append(msg(1))])
        first = s.commit()
        await asyncio.to_thread(writing.wait, 10)  # the writer holds the batch with message 1
        second = s.commit()  # nothing staged since
        await asyncio.sleep(0.05)
        assert not first.done() and not second.done()
        release.set()
        await asyncio.wait_for(second, 10)
        assert first.done() and not s.unsynced
    finally:
        release.set()
        backend.db = real
        await backend.close()


async def test_the_last_writes_stay_in_memory_within_their_bounds(tmp_path: Path) -> None:
    """A consumer reads what was just stored without a database read; what is removed, or pushed
    out by later writes beyond ``RECENT_BYTES``, leaves memory."""
    backend = RocksBackend(str(tmp_path / "db"))
    await backend.open()
    s = backend.stream("$G", "S")
    s.save_meta({"config": {"name": "S"}})
    big = b"x" * (RECENT_BYTES // 8)
    s.stage([Append(msg(i, data=big)) for i in range(1, 11)])
    await s.commit()
    assert not s.unsynced and list(s.recent) == list(range(3, 11))  # 8 fit, the oldest 2 went
    assert s._recent_bytes == sum(len(m.hdrs) + len(m.data) for m in s.recent.values()) <= RECENT_BYTES
    s.stage([Remove((5,))])
    assert 5 not in s.recent and s.load(5) is None
    assert s.load(1).data == big and s.load(10) is s.recent[10]  # from the database, and from memory
    await backend.close()


async def test_an_atomic_stage_reaches_the_writer_as_one_write(tmp_path: Path) -> None:
    """What is staged inside ``atomic()`` is one entry of the writer's queue, so one ``WriteBatch``
    holds all of it or none: however the writer thread interleaves, no crash leaves half a batch."""
    backend = RocksBackend(str(tmp_path / "db"))
    await backend.open()
    try:
        s = backend.stream("$G", "B")
        s.save_meta({"config": {"name": "B"}})
        await s.commit()
        before = len(backend._staged)  # the writer gets this pass's writes when it ends
        with s.atomic():
            for i in range(1, 51):
                s.stage([Append(msg(i, f"b.{i % 3}"))])
            s.stage([Remove((3,))])
            assert len(backend._staged) == before  # held until the block ends
        assert len(backend._staged) == before + 1
        entry = backend._staged[-1][1]
        assert sum(1 for kind, _, _ in entry if kind == "put") == 50
        await s.commit()
        assert s.state().msgs == 49 and s.load(50).subject == "b.2"
    finally:
        await backend.close()


async def test_a_commit_after_close_fails_instead_of_waiting_forever(tmp_path: Path) -> None:
    backend = RocksBackend(str(tmp_path / "db"))
    await backend.open()
    s = backend.stream("$G", "S")
    s.stage([Append(msg(1))])
    await backend.close()  # what was staged before goes with the last batch
    s.stage([Append(msg(2))])
    with pytest.raises(OSError, match="closed"):
        await asyncio.wait_for(s.commit(), 5)
    again = RocksBackend(str(tmp_path / "db"))
    await again.open()
    try:
        assert again.db.get(s._key(1)) is not None and again.db.get(s._key(2)) is None
    finally:
        await again.close()
