"""Hooks the jetstream plugin offers to other plugins: storage backends.

Declared through ``natsd_addhooks`` when ``natsd_plugins.jetstream`` is
registered. Implementations should be marked
``@natsd.hookimpl(optionalhook=True)`` so that a package still loads when
JetStream is not installed or denied.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from natsd.plugin.hookspecs import hookspec

if TYPE_CHECKING:
    from natsd.plugin.contracts import ServerAPI

    from .settings import JetStreamSettings


@hookspec(firstresult=True)
def natsd_jetstream_backends(server: ServerAPI, settings: JetStreamSettings) -> Mapping[str, Any] | None:
    """Return the stores for ``file`` and ``memory`` streams: ``{"file": backend, "memory": backend}``.

    Each backend follows :class:`natsd_plugins.jetstream.store.base.StoreBackend`
    (its streams, :class:`~natsd_plugins.jetstream.store.base.StreamStore`:
    an ordered log of staged operations, commits that resolve only once the
    data is durable, synchronous point reads). The first plugin to answer
    wins; the jetstream plugin's own answer (RocksDB under ``store_dir`` for
    ``file``, a dict for ``memory``) comes last. A backend may serve one kind
    only: the other falls back to the built-in one.

    Called once, when JetStream starts.
    """
