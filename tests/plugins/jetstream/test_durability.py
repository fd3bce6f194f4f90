"""No acknowledged write is lost: acks follow syncs, and a SIGKILL loses nothing that was acked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nats
import pytest

from natsd import Server
from natsd.config.conf import parse
from natsd.server import free_port
from natsd.testing import spawn
from natsd_plugins.jetstream import JETSTREAM

pytestmark = pytest.mark.timeout(120)


class SyncedWrites:
    """A stand-in for the RocksDB handle that records every write's sync flag and what it held."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.synced_batches = 0
        self.unsynced_batches = 0

    def write(self, batch: Any, options: Any) -> None:
        self.db.write(batch, options)
        if options.sync:
            self.synced_batches += 1
        else:
            self.unsynced_batches += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


async def test_no_pub_ack_leaves_before_the_sync_that_covers_it(tmp_path: Path) -> None:
    server = Server(parse(f'host: 127.0.0.1\nport: -1\njetstream {{ store_dir: "{tmp_path}" }}'))
    await server.start()
    backend = server.stash[JETSTREAM].backends["file"]
    proxy = SyncedWrites(backend.db)
    backend.db = proxy
    early: list[int] = []
    acked: list[int] = []

    def check(seq: int) -> None:
        """Where an acknowledgement leaves: a message leaves the unsynced set only when the
        write holding it has returned, and every write is a synced one (checked below)."""
        acked.append(seq)
        stream = server.stash[JETSTREAM].local_stream("$G", "S")
        if seq in stream.store.unsynced:  # type: ignore[union-attr]
            early.append(seq)

    # PubAcks are published to the publishers' inboxes as the commit resolves: a subscriber in
    # the server's process sees each one as it is sent, not when a client reads it
    watcher = server.connect_internal("ack-watcher", "$G")
    def answered(subject: bytes, reply: bytes | None, headers: bytes | None, payload: bytes) -> None:
        body = json.loads(payload)
        if "seq" in body:  # a PubAck (not an API answer)
            check(body["seq"])

    watcher.subscribe("_INBOX.>", answered)
    nc = await nats.connect(server.client_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="S", subjects=["s.>"])
        acks = await asyncio.gather(*(js.publish(f"s.{i % 7}", b"m%d" % i) for i in range(3000)))
        assert sorted(a.seq for a in acks) == list(range(1, 3001))
        # a plugin's in-process publishes (the MQTT plugin's QoS 1 messages) are told the same way
        stream = server.stash[JETSTREAM].local_stream("$G", "S")
        assert stream is not None
        told: list[tuple[int, str | None]] = []
        all_told = asyncio.get_running_loop().create_future()

        def tell(seq: int, error: str | None) -> None:
            check(seq)
            told.append((seq, error))
            if len(told) == 1000:
                all_told.set_result(None)

        for i in range(1000):
            stream.store_local(f"s.{i % 7}", b"p%d" % i, None, tell)
        await asyncio.wait_for(all_told, 10)
        assert sorted(told) == [(seq, None) for seq in range(3001, 4001)]
        # a duplicate that arrives before its original is durable is acknowledged with it, not before
        twice: list[tuple[int, str | None, bool]] = []
        both_told = asyncio.get_running_loop().create_future()

        def tell_twice(seq: int, error: str | None) -> None:
            check(seq)
            twice.append((seq, error, seq in stream.store.unsynced))  # type: ignore[attr-defined]
            if len(twice) == 2:
                both_told.set_result(None)

        once = b"NATS/1.0\r\nNats-Msg-Id: once\r\n\r\n"
        stream.store_local("s.1", b"once", once, tell_twice)
        stream.store_local("s.1", b"once", once, tell_twice)
        assert twice == []
        await asyncio.wait_for(both_told, 10)
        assert twice == [(4001, None, False)] * 2
        assert sorted(acked) == [*range(1, 4001), 4001, 4001] and early == []
        assert proxy.unsynced_batches == 0 and 0 < proxy.synced_batches < 3000  # group commit
    finally:
        await nc.close()
        await server.shutdown()


def _start(store: Path, port: int) -> subprocess.Popen[bytes]:
    return spawn([sys.executable, "-m", "natsd", "-js", "-sd", str(store), "-a", "127.0.0.1", "-p", str(port)],
                 port, open(store / "natsd.log", "ab"))


def test_sigkill_during_a_publish_storm_loses_no_acknowledged_message(tmp_path: Path) -> None:
    port = free_port()
    proc = _start(tmp_path, port)
    acked: dict[int, bytes] = {}
    try:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.recv(65536)
        create = b'{"name":"STORM","subjects":["storm.>"]}'
        sock.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nSUB _ack.* 1\r\n'
                     b"PUB $JS.API.STREAM.CREATE.STORM _ack.create %d\r\n%s\r\nPING\r\n" % (len(create), create))
        buf = b""
        while b'"did_create":true' not in buf:
            buf += sock.recv(65536)
        # thousands of publishes in flight, each with its own reply subject: one thread sends them
        # (200 at a time, 5 ms apart, so that the storm outlasts the first syncs however fast
        # the server is), another reads the acks as they come, and the server is killed once
        # 2,000 are in
        total = 20000
        payloads = {i: os.urandom(24).hex().encode() for i in range(total)}
        wire = [b"PUB storm.%d _ack.%d %d\r\n%s\r\n" % (i % 50, i, len(p), p) for i, p in payloads.items()]
        enough = threading.Event()

        def send() -> None:
            with contextlib.suppress(OSError):
                for start in range(0, total, 200):
                    sock.sendall(b"".join(wire[start:start + 200]))
                    time.sleep(0.005)

        def read_acks() -> None:
            received = b""
            with contextlib.suppress(OSError):
                while True:
                    chunk = sock.recv(1 << 20)
                    if not chunk:
                        return
                    received += chunk
                    while (head_end := received.find(b"\r\n")) >= 0:
                        head = received[:head_end].split()
                        if head[0] != b"MSG":
                            received = received[head_end + 2:]
                            continue
                        size = int(head[-1])
                        if len(received) < head_end + 2 + size + 2:
                            break
                        body = json.loads(received[head_end + 2:head_end + 2 + size])
                        received = received[head_end + 2 + size + 2:]
                        assert "error" not in body, body
                        acked[body["seq"]] = payloads[int(head[1].split(b".")[1])]
                        if len(acked) >= 2000:
                            enough.set()

        threads = [threading.Thread(target=send), threading.Thread(target=read_acks)]
        for thread in threads:
            thread.start()
        assert enough.wait(30), f"only {len(acked)} acks"
        os.kill(proc.pid, signal.SIGKILL)  # mid-storm: acks and syncs in flight
        proc.wait(10)
        with contextlib.suppress(OSError):  # the kill may have reset the connection already
            sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(10)
        sock.close()
        assert len(acked) < total  # the kill came while publishes were outstanding
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    proc = _start(tmp_path, port)
    try:
        async def check() -> None:
            nc = await nats.connect(f"nats://127.0.0.1:{port}")
            js = nc.jetstream()
            info = await js.stream_info("STORM")
            state = info.state
            assert state.messages >= len(acked) and state.last_seq >= max(acked)
            assert state.first_seq == 1 and state.messages == state.last_seq  # no gaps
            for seq in sorted(acked):  # every acknowledged message, with its payload
                msg = await js.get_msg("STORM", seq)
                assert msg.data == acked[seq], seq
            await nc.close()

        asyncio.run(check())
    finally:
        proc.terminate()
        proc.wait(10)
