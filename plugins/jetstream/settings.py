"""The ``jetstream {}`` block (and ``-js``/``-sd``), validated as nats-server 2.15 reads it.

``jetstream: enabled`` (or ``true``), or a block: ``store_dir``,
``max_memory_store``, ``max_file_store``, ``sync_interval`` (a duration or
``always``), ``domain``. natsd syncs before every acknowledgement unless
``sync_interval`` says otherwise (nats-server's default is every 2 minutes).
Errors name the file, line and key.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from natsd.config import config_error, fields
from natsd.config.conf import ConfError, parse_duration

NOT_SUPPORTED = frozenset({"cipher", "key", "prev_encryption_key", "encryption_key", "unique_tag",
                           "max_outstanding_catchup", "tpm", "extension_hint"})
"""nats-server keys natsd refuses by name (encryption at rest, clustering placement)."""
IGNORED = frozenset({"strict", "max_buffered_msgs", "max_buffered_size", "request_queue_limit",
                     "max_ha_assets", "compress_ok", "max_catchup", "limits"})
"""Accepted for compatibility; nothing in natsd depends on them yet."""


@dataclass(frozen=True)
class JetStreamSettings:
    enabled: bool = True
    store_dir: str = ""
    max_memory: int = -1
    max_store: int = -1
    sync_interval: float | None = None
    """``None``: sync before every acknowledgement (``sync_interval: always``, natsd's default)."""
    domain: str = ""

    @property
    def storage_path(self) -> str:
        """Where the RocksDB database lives: ``<store_dir>/jetstream``, as nats-server's layout."""
        return os.path.join(self.store_dir or os.path.join(tempfile.gettempdir(), "natsd-store"), "jetstream")


def load(value: Any, store_dir: Any = None) -> JetStreamSettings:
    """Validate the ``jetstream`` value (a block, a boolean or ``enabled``/``disabled``)."""
    values: dict[str, Any] = {}
    if isinstance(value, bool):
        values["enabled"] = value
    elif isinstance(value, str):
        if value.lower() not in ("enabled", "enable", "true", "disabled", "disable", "false"):
            raise config_error(None, "jetstream", f"expected jetstream to be a boolean or a map, got {value!r}")
        values["enabled"] = value.lower() in ("enabled", "enable", "true")
    elif isinstance(value, Mapping):
        for key, v in value.items():
            _key(value, key, v, values)
    else:
        raise config_error(None, "jetstream", f"expected jetstream to be a boolean or a map, got {value!r}")
    if store_dir is not None and not values.get("store_dir"):
        if not isinstance(store_dir, str):
            raise config_error(None, "store_dir", "expected a directory name")
        values["store_dir"] = store_dir
    return JetStreamSettings(**values)


def _key(block: Mapping[str, Any], key: str, v: Any, values: dict[str, Any]) -> None:
    k = key.lower()
    if k in ("store_dir", "storedir", "store"):
        if not isinstance(v, str):
            raise config_error(block, key, "expected a directory name")
        values["store_dir"] = v
    elif k in ("max_memory_store", "max_mem_store", "max_mem"):
        values["max_memory"] = fields.size(block, key, v)
    elif k in ("max_file_store", "max_file"):
        values["max_store"] = fields.size(block, key, v)
    elif k in ("sync_interval", "sync"):
        if isinstance(v, str) and v.lower() == "always":
            values["sync_interval"] = None
        else:
            try:
                seconds = parse_duration(v)
            except ConfError as exc:
                raise config_error(block, key, exc.reason) from None
            values["sync_interval"] = seconds or None
    elif k == "domain":
        if not isinstance(v, str) or any(c in v for c in " .*>\t"):
            raise config_error(block, key, f"invalid domain name: {v!r}")
        values["domain"] = v
    elif k == "enabled" or k == "enable":
        if not isinstance(v, bool):
            raise config_error(block, key, "expected true or false")
        values["enabled"] = v
    elif k in NOT_SUPPORTED:
        raise config_error(block, key, f"jetstream option {key!r} is not supported by natsd")
    elif k not in IGNORED:
        raise config_error(block, key, f"unknown field {key!r}")

