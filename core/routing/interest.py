"""Interest changes: which subjects an account has subscribers for, told as events.

Routes announce interest with ``RS+``/``RS-``, leaf nodes with
``LS+``/``LS-``, gateways in interest-only mode with ``RS+``: each needs to
hear "account A now has (or no longer has) interest in subject S, queue Q,
weight W". Every subscription change of an account goes through
``Account.add_sub`` / ``remove_sub`` / ``reweigh``, which hand it to the
account's :class:`InterestTable` objects, one per distinct set of counted
kinds (a route counts clients, in-process clients and leaf nodes, not other
routes).

A table counts, per ``(subject, queue)``, the subscriptions of the kinds it
counts; a queue subscription counts with its weight. Its listeners hear:

- for a plain subject, the first subscription (weight 1) and the last one
  going away (weight 0);
- for a queue group, every change of its total weight (0 when it is gone).

An account without listeners has no tables: subscribing costs nothing more.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .account import Account
    from .sublist import Subscription

log = logging.getLogger("natsd.interest")

Key = tuple[bytes, "bytes | None"]


class InterestTable:
    """Subscription weights of one account per ``(subject, queue)``, for some kinds."""

    __slots__ = ("kinds", "listeners", "weights")

    def __init__(self, kinds: frozenset[int], listeners: list[Any]) -> None:
        self.kinds = kinds
        self.listeners = listeners  # shared with the registry: listeners added later are heard
        self.weights: dict[Key, int] = {}

    def seed(self, subs: Iterable[Subscription]) -> None:
        """Count subscriptions that existed before the table (no events)."""
        weights = self.weights
        for sub in subs:
            if sub.client.kind in self.kinds:
                key = (sub.subject, sub.queue)
                weights[key] = weights.get(key, 0) + (sub.weight if sub.queue is not None else 1)

    def added(self, account: Account, sub: Subscription) -> None:
        if sub.client.kind not in self.kinds:
            return
        key = (sub.subject, sub.queue)
        delta = sub.weight if sub.queue is not None else 1
        weight = self.weights.get(key, 0) + delta
        self.weights[key] = weight
        if sub.queue is not None or weight == delta:
            self._tell(account, sub.subject, sub.queue, weight)

    def removed(self, account: Account, sub: Subscription, delta: int | None = None) -> None:
        if sub.client.kind not in self.kinds:
            return
        key = (sub.subject, sub.queue)
        if delta is None:
            delta = sub.weight if sub.queue is not None else 1
        weight = self.weights.get(key, 0) - delta
        if weight > 0:
            self.weights[key] = weight
            if sub.queue is not None:
                self._tell(account, sub.subject, sub.queue, weight)
            return
        self.weights.pop(key, None)
        self._tell(account, sub.subject, sub.queue, 0)

    def reweighed(self, account: Account, sub: Subscription, old: int) -> None:
        """A queue subscription's weight changed from ``old`` to ``sub.weight``."""
        if sub.client.kind not in self.kinds or sub.queue is None or old == sub.weight:
            return
        key = (sub.subject, sub.queue)
        weight = self.weights.get(key, 0) - old + sub.weight
        self.weights[key] = weight
        self._tell(account, sub.subject, sub.queue, weight)

    def _tell(self, account: Account, subject: bytes, queue: bytes | None, weight: int) -> None:
        for listener in self.listeners:
            try:
                listener.interest_changed(account, subject, queue, weight)
            except Exception:
                log.exception("interest listener %r failed", listener)


class InterestRegistry:
    """The server's interest listeners, grouped by the kinds they count; tables per account."""

    def __init__(self, accounts: Mapping[str, Account]) -> None:
        self._groups: dict[frozenset[int], list[Any]] = {}
        self._accounts = accounts

    def listen(self, listener: Any, kinds: Iterable[int]) -> None:
        """Add ``listener``; every known account gets a table for ``kinds`` (seeded silently)."""
        key = frozenset(kinds)
        group = self._groups.get(key)
        if group is not None:
            group.append(listener)
            return
        self._groups[key] = [listener]
        for account in self._accounts.values():
            self._attach(account, key)

    def account_created(self, account: Account) -> None:
        """Give a new account its tables."""
        for key in self._groups:
            self._attach(account, key)

    def _attach(self, account: Account, key: frozenset[int]) -> None:
        table = InterestTable(key, self._groups[key])
        table.seed(account.sublist.all())
        account.interest = (*account.interest, table)

    def weights(self, account: Account, kinds: Iterable[int]) -> Mapping[Key, int]:
        """The current weights of ``account`` for a registered set of ``kinds``."""
        key = frozenset(kinds)
        for table in account.interest:
            if table.kinds == key:
                return dict(table.weights)
        raise KeyError(f"no interest listener counts kinds {sorted(key)}")
