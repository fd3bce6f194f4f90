"""Observation: counting connections and messages, logging who came and went."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

# A child of the "natsd" logger, so lines land wherever natsd logs (stderr, -l FILE).
log = logging.getLogger("natsd.audit")


@dataclass
class Stats:
    """The counters shared by the observer, the authenticator and the stats service."""

    connections: int = 0
    open: int = 0
    refused: int = 0
    # account name -> subject (bytes, as on the wire) -> messages published
    messages: defaultdict[str, Counter[bytes]] = field(default_factory=lambda: defaultdict(Counter))

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": {"total": self.connections, "open": self.open, "refused": self.refused},
            "messages": {account: {subject.decode(): n for subject, n in sorted(counts.items())}
                         for account, counts in sorted(self.messages.items())},
        }


class AuditObserver:
    """An observer defines only the events it wants (see ``natsd.plugin.contracts.Observer``).

    natsd collects these bound methods once at start-up and calls them
    synchronously on the event loop, so each must be quick and must not block.
    ``subscribed``/``unsubscribed`` are not defined here, so they cost nothing.
    """

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def client_connected(self, client: Any) -> None:
        # Called when the socket is accepted, *before* CONNECT: the client is
        # not authenticated yet (its account is still the default one).
        self.stats.connections += 1
        self.stats.open += 1

    def client_closed(self, client: Any, reason: str) -> None:
        self.stats.open -= 1
        log.info("audit: %s client cid=%d user=%s account=%s closed (%s) after %d messages in",
                 client.transport, client.cid, client.user or "-", client.account.name, reason,
                 client.in_msgs)

    def message_published(self, client: Any, account: Any, subject: bytes, reply: bytes | None,
                          headers: bytes | None, payload: bytes) -> None:
        # The one per-message hook. Defining it switches every connection to
        # natsd's observed client class, so it costs a Python call for each
        # PUB of each client; keep it to a counter update. (Messages published
        # by in-process clients, such as bridges, are not reported.)
        self.stats.messages[account.name][subject] += 1
