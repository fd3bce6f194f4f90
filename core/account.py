"""Accounts: isolated subject spaces inside one server.

Every client belongs to exactly one account, and messages never cross
accounts unless an export/import says so (account configuration arrives with
the security work). The default account, used when nothing else is
configured, is ``$G`` as in nats-server.
"""

from __future__ import annotations

from typing import Any

from .sublist import Sublist

GLOBAL_ACCOUNT = "$G"


class Account:
    """One account: its name, its subscriptions and its connected clients."""

    __slots__ = ("name", "sublist", "clients", "__weakref__")

    def __init__(self, name: str) -> None:
        self.name = name
        self.sublist = Sublist()
        self.clients: set[Any] = set()

    def __repr__(self) -> str:
        return f"<Account {self.name} clients={len(self.clients)} subs={self.sublist.count}>"
