"""Per-server plugin state: a stash with typed keys, as pytest's ``config.stash``.

A plugin keeps what it built for one server (its settings, its listener, its
connections) in ``server.stash`` under a key it owns, instead of a
module-level dict keyed by ``id(server)``::

    SETTINGS = natsd.StashKey[MySettings]()

    @natsd.hookimpl
    def natsd_configure(server, block):
        server.stash[SETTINGS] = MySettings.load(block)

    @natsd.hookimpl
    def natsd_listeners(server):
        settings = server.stash.get(SETTINGS, None)

The state lives and dies with the server; two servers in one process never
see each other's.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")
D = TypeVar("D")


class StashKey(Generic[T]):
    """A key of a :class:`Stash`; its type parameter is the type of the value."""

    __slots__ = ()


class Stash:
    """A mapping from :class:`StashKey` objects to values of their type."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: dict[StashKey[Any], object] = {}

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._items[key] = value

    def __getitem__(self, key: StashKey[T]) -> T:
        return cast(T, self._items[key])

    def get(self, key: StashKey[T], default: D) -> T | D:
        try:
            return self[key]
        except KeyError:
            return default

    def setdefault(self, key: StashKey[T], default: T) -> T:
        try:
            return self[key]
        except KeyError:
            self[key] = default
            return default

    def pop(self, key: StashKey[T], default: D) -> T | D:
        return cast("T | D", self._items.pop(key, default))

    def __delitem__(self, key: StashKey[T]) -> None:
        del self._items[key]

    def __contains__(self, key: StashKey[T]) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)
