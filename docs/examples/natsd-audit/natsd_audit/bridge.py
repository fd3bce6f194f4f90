"""Bridges: natsd -> a JSON-lines audit file, and a request/reply stats service.

Both talk to the broker through ``server.connect_internal(name, account)``,
an in-process client whose subscription callbacks run synchronously on the
event loop while the publisher's message is being routed: they must be quick
and must not block, so file writes are batched with ``loop.call_soon``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import IO, Any

from natsd.config import config_error

from .observer import Stats
from .settings import Settings
from .storage import MemoryStore


class JsonLog:
    """An append-only JSON-lines file, opened at start-up and closed at shutdown.

    Lines are queued and written once per event-loop iteration. A busier
    audit log would hand them to a thread; for an example, a buffered
    ``write`` and ``flush`` per batch is quick enough.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.file: IO[str] | None = None
        self.pending: list[str] = []
        self._scheduled = False

    async def open(self) -> None:
        self.file = await asyncio.to_thread(open, self.path, "a", encoding="utf-8")
        self.write_pending()  # anything that arrived before the file was open

    def append(self, record: dict[str, Any]) -> None:
        self.pending.append(json.dumps(record) + "\n")
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.write_pending)

    def write_pending(self) -> None:
        self._scheduled = False
        if self.file is None or not self.pending:
            return
        self.file.writelines(self.pending)
        self.pending.clear()
        self.file.flush()

    async def close(self) -> None:
        self.write_pending()
        if self.file is not None:
            file, self.file = self.file, None
            await asyncio.to_thread(file.close)


class AuditBridge:
    """A ``natsd.plugin.contracts.Bridge``: copies every message on ``bridge_subject``.

    Each message is kept in a store of the configured storage backend (the
    ``audit-memory`` one this plugin offers, by default) and, when
    ``log_file`` is set, appended to it as one JSON line.
    """

    def __init__(self, settings: Settings, journal: JsonLog | None) -> None:
        self.settings = settings
        self.journal = journal
        self.store: MemoryStore | None = None
        self.client: Any = None

    async def start(self, server: Any) -> None:
        name = self.settings.store
        backend = server.storage_backends.get(name)
        if backend is None:  # backends are only known now, after every plugin offered its own
            raise config_error(self.settings.block, "store", (
                f"no storage backend {name!r} (available: {', '.join(server.storage_backends)})"))
        self.store = backend.open("audit", {})
        self.client = server.connect_internal("audit-bridge", self.settings.account)
        self.client.subscribe(self.settings.bridge_subject, self.on_message)

    def on_message(self, subject: bytes, reply: bytes | None, headers: bytes | None,
                   payload: bytes) -> None:
        assert self.store is not None
        seq = self.store.store(subject, headers, payload)
        if self.journal is not None:
            self.journal.append({
                "seq": seq,
                "time": round(time.time(), 6),
                "account": self.settings.account,
                "subject": subject.decode(),
                "reply": reply.decode() if reply else None,
                "headers": headers.decode("utf-8", "replace") if headers else None,
                "payload": payload.decode("utf-8", "backslashreplace"),
            })

    async def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def __repr__(self) -> str:
        return f"<AuditBridge {self.settings.bridge_subject} -> {self.settings.log_file}>"


class StatsService:
    """A service in ``account`` answering requests on ``stats_subject`` with JSON counters."""

    def __init__(self, settings: Settings, stats: Stats, bridge: AuditBridge) -> None:
        self.settings = settings
        self.stats = stats
        self.bridge = bridge
        self.server: Any = None
        self.client: Any = None

    async def start(self, server: Any) -> None:
        self.server = server
        self.client = server.connect_internal("audit-stats", self.settings.account)
        self.client.subscribe(self.settings.stats_subject, self.on_request)

    def on_request(self, subject: bytes, reply: bytes | None, headers: bytes | None,
                   payload: bytes) -> None:
        if reply is None:
            return  # a plain publish, not a request
        answer = self.stats.as_dict()
        answer["storage_backends"] = sorted(self.server.storage_backends)
        answer["stored"] = self.bridge.store.last_seq() if self.bridge.store else 0
        self.client.publish(reply, json.dumps(answer).encode())

    async def stop(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None

    def __repr__(self) -> str:
        return f"<StatsService {self.settings.stats_subject}>"
