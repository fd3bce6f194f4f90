"""The monitoring port's settings: nats-server's ``http``, ``http_port``, ``monitor_port``, ``http_base_path``.

``http: "host:port"`` (or a port) sets both; ``monitor_port`` and then
``http_port`` (also ``-m``) override the port. Port ``0`` or ``-1`` picks a
free port (nats-server: ``-1``). ``https``/``https_port`` are refused until
natsd serves TLS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from natsd.config import config_error

KEYS = ("http", "http_port", "monitor_port", "https", "https_port", "http_base_path")


@dataclass(frozen=True)
class MonitorSettings:
    """Where the HTTP monitoring port listens; ``port`` ``None``: it does not."""

    host: str = ""
    """Interface to bind; empty: the client port's ``host``, as nats-server does."""
    port: int | None = None
    base_path: str = ""
    """Prefix of every endpoint (``/nats`` serves ``/nats/varz``); empty: none."""


def _port(blocks: Mapping[str, Any], key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise config_error(blocks, key, f"expected a port number, got {value!r}")
    if not -1 <= value <= 65535:
        raise config_error(blocks, key, f"port {value} out of range")
    return max(value, 0)


def load(blocks: Mapping[str, Any]) -> MonitorSettings:
    """Settings from the top-level keys in ``blocks`` (``ServerConfig.blocks``)."""
    for key in ("https", "https_port"):
        if key in blocks:
            raise config_error(blocks, key, "HTTPS monitoring needs TLS, which natsd does not "
                               "serve yet; use http_port")
    host, port = "", None
    if "http" in blocks:
        value = blocks["http"]
        if isinstance(value, str):
            h, sep, p = value.rpartition(":")
            if not sep or not p.lstrip("-").isdigit():
                raise config_error(blocks, "http", f"could not parse address string {value!r}")
            host, port = h.strip("[]"), _port(blocks, "http", int(p))
        else:
            port = _port(blocks, "http", value)
    for key in ("monitor_port", "http_port"):
        if key in blocks:
            port = _port(blocks, key, blocks[key])
    base = blocks.get("http_base_path", "")
    if not isinstance(base, str):
        raise config_error(blocks, "http_base_path", f"expected a path, got {base!r}")
    base = base.strip("/")
    return MonitorSettings(host, port, "/" + base if base else "")
