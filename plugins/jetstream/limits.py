"""What an account's JetStream may hold, and what the server may: nats-server's checks and errors.

An account's ``jetstream {}`` block (``max_mem``, ``max_file``,
``max_streams``, ``max_consumers``, ``max_ack_pending``,
``memory_max_stream_bytes``, ``store_max_stream_bytes``,
``max_bytes_required``, with nats-server's other spellings) sets its
:class:`AccountLimits`; ``jetstream: enabled`` leaves everything unlimited
(``-1``). The server's ``max_memory_store``/``max_file_store`` bound what all
accounts reserve together.

A stream's ``max_bytes`` is a *reservation*: creating or growing a stream
checks the reservations of the account's other streams of that storage, and
of every stream on the server, against the limits (a stream without
``max_bytes`` reserves a byte). A publish checks what is *used*: the
account's stored bytes plus the new message's against its limit
(``resource limits exceeded for account``), and the server's against its own
(``insufficient resources``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from natsd.config import config_error, fields

from .errors import api_error

_KEYS = {
    **dict.fromkeys(("max_memory", "max_mem", "mem", "memory"), ("max_memory", fields.size)),
    **dict.fromkeys(("max_store", "max_file", "max_disk", "store", "disk"), ("max_storage", fields.size)),
    **dict.fromkeys(("max_streams", "streams"), ("max_streams", fields.integer)),
    **dict.fromkeys(("max_consumers", "consumers"), ("max_consumers", fields.integer)),
    "max_ack_pending": ("max_ack_pending", fields.integer),
    **dict.fromkeys(("mem_max_stream_bytes", "memory_max_stream_bytes"), ("memory_max_stream_bytes", fields.size)),
    **dict.fromkeys(("disk_max_stream_bytes", "store_max_stream_bytes"), ("storage_max_stream_bytes", fields.size)),
    **dict.fromkeys(("max_bytes_required", "max_stream_bytes", "max_bytes"), ("max_bytes_required", fields.boolean)),
}


@dataclass(frozen=True)
class AccountLimits:
    """An account's JetStream limits (``-1``: none), in the order ``$JS.API.INFO`` shows them."""

    max_memory: int = -1
    max_storage: int = -1
    max_streams: int = -1
    max_consumers: int = -1
    max_ack_pending: int = -1
    memory_max_stream_bytes: int = -1
    storage_max_stream_bytes: int = -1
    max_bytes_required: bool = False

    def json(self) -> dict[str, Any]:
        return asdict(self)

    def max_bytes(self, storage: str) -> int:
        return self.max_memory if storage == "memory" else self.max_storage


UNLIMITED = AccountLimits()


def account_limits(value: Any, block: Mapping[str, Any], key: str = "jetstream") -> AccountLimits | None:
    """The limits an account's ``jetstream`` value sets, or ``None`` when it has no JetStream."""
    if isinstance(value, bool):
        return UNLIMITED if value else None
    if isinstance(value, str):
        if value.lower() in ("enabled", "enable"):
            return UNLIMITED
        if value.lower() in ("disabled", "disable"):
            return None
        raise config_error(block, key, f"expected 'enabled' or 'disabled' for string value, got {value!r}")
    if not isinstance(value, Mapping):
        raise config_error(block, key, "expected a map, a boolean or a string to define JetStream")
    values: dict[str, Any] = {}
    for name, v in value.items():
        known = _KEYS.get(name.lower())
        if known is None:
            if name.lower() == "cluster_traffic":
                continue  # a clustering setting: nothing to do on one server
            raise config_error(value, name, f"unknown field {name!r}")
        field, parse = known
        values[field] = parse(value, name, v)
    return AccountLimits(**values)


def limits_from_claims(claims: Any) -> AccountLimits | None:
    """The limits an account JWT's claims give (``None``: no JetStream), as nats-server reads them:
    ``mem_storage``/``disk_storage`` (either non-zero turns JetStream on), ``streams``, ``consumer``,
    ``max_ack_pending``, ``mem_max_stream_bytes``, ``disk_max_stream_bytes`` (0: unlimited),
    ``max_bytes_required``; without those, the ``R1`` tier of ``tiered_limits``."""
    given: Mapping[str, Any] = getattr(getattr(claims, "limits", None), "jetstream", None) or {}
    if not (given.get("mem_storage") or given.get("disk_storage")):
        given = (given.get("tiered_limits") or {}).get("R1") or {}
        if not isinstance(given, Mapping) or not (given.get("mem_storage") or given.get("disk_storage")):
            return None

    def number(key: str, unlimited_at_zero: bool = False) -> int:
        value = given.get(key, 0)  # absent is Go's zero: no memory at all when only disk is given
        if isinstance(value, bool) or not isinstance(value, int):
            value = 0
        return -1 if unlimited_at_zero and value <= 0 else value

    return AccountLimits(
        max_memory=number("mem_storage"), max_storage=number("disk_storage"), max_streams=number("streams"),
        max_consumers=number("consumer"), max_ack_pending=number("max_ack_pending", True),
        memory_max_stream_bytes=number("mem_max_stream_bytes", True),
        storage_max_stream_bytes=number("disk_max_stream_bytes", True),
        max_bytes_required=bool(given.get("max_bytes_required")))


def check_stream_config(limits: AccountLimits, config: Mapping[str, Any]) -> None:
    """``max_bytes`` as the account wants it (nats-server's ``checkStreamCfg``)."""
    limit = (limits.memory_max_stream_bytes if config["storage"] == "memory"
             else limits.storage_max_stream_bytes)
    if limits.max_bytes_required and config["max_bytes"] <= 0:
        raise api_error("JSStreamMaxBytesRequired")
    if limit > 0 and config["max_bytes"] > limit:
        raise api_error("JSStreamMaxStreamBytesExceeded")


def reserved(streams: Iterable[Mapping[str, Any]], storage: str, but: str = "") -> int:
    """The bytes the stream configs reserve in ``storage`` (those with a ``max_bytes``), ``but`` one."""
    return sum(c["max_bytes"] for c in streams if c["storage"] == storage and c["max_bytes"] > 0 and c["name"] != but)


def check_reservation(limits: AccountLimits, config: Mapping[str, Any], adding: int, account_reserved: int,
                      server_reserved: int, server_max: int) -> None:
    """Whether ``adding`` more reserved bytes for the stream ``config`` fit the account's limit beside
    ``account_reserved`` and the server's ``server_max`` beside ``server_reserved`` (``checkAllLimits``)."""
    if 0 < limits.max_consumers < config.get("max_consumers", 0):
        raise api_error("JSMaximumConsumersLimitErr")
    storage = config["storage"]
    if storage not in ("file", "memory"):
        return
    error = "JSMemoryResourcesExceededErr" if storage == "memory" else "JSStorageResourcesExceededErr"
    adding = adding if adding >= 0 else 1
    account_max = limits.max_bytes(storage)
    if account_max >= 0 and (account_reserved > account_max or adding > account_max - account_reserved):
        raise api_error(error)
    if server_max >= 0 and (server_reserved > server_max or adding > server_max - server_reserved):
        raise api_error(error)
