"""Storage: a storage backend offering in-memory message stores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MemoryStore:
    """A ``natsd.plugin.contracts.MessageStore``: an append-only log, sequence numbers from 1.

    Kept in a list, so it is exactly as durable as the process.
    """

    def __init__(self, name: str, max_msgs: int = 0) -> None:
        self.name = name
        self.max_msgs = max_msgs  # 0: unlimited; otherwise drop the oldest
        self.first_seq = 1
        self._msgs: list[tuple[bytes, bytes | None, bytes]] = []

    def store(self, subject: bytes, headers: bytes | None, payload: bytes) -> int:
        self._msgs.append((subject, headers, payload))
        if self.max_msgs and len(self._msgs) > self.max_msgs:
            del self._msgs[0]
            self.first_seq += 1
        return self.last_seq()

    def load(self, seq: int) -> tuple[bytes, bytes | None, bytes] | None:
        index = seq - self.first_seq
        return self._msgs[index] if 0 <= index < len(self._msgs) else None

    def last_seq(self) -> int:
        return self.first_seq + len(self._msgs) - 1

    def close(self) -> None:
        self._msgs.clear()


class MemoryBackend:
    """A ``natsd.plugin.contracts.StorageBackend``: opening a name twice gives the same store."""

    def __init__(self) -> None:
        self.stores: dict[str, MemoryStore] = {}

    def open(self, name: str, options: Mapping[str, Any]) -> MemoryStore:
        store = self.stores.get(name)
        if store is None:
            store = self.stores[name] = MemoryStore(name, int(options.get("max_msgs", 0)))
        return store
