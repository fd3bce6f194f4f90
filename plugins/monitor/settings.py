"""The monitoring port's settings: nats-server's ``http``, ``http_port``, ``monitor_port``, ``http_base_path``.

``http: "host:port"`` (or a port) sets both; ``monitor_port`` and then
``http_port`` (also ``-m``) override the port. Port ``0`` or ``-1`` picks a
free port (nats-server: ``-1``). ``https: "host:port"`` and ``https_port``
(also ``-ms``) do the same for HTTPS, which uses the server's ``tls {}``
certificate, as nats-server does; one port serves either HTTP or HTTPS.
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
    https: bool = False
    """Serve HTTPS with the client port's ``tls {}`` (nats-server's ``https_port``)."""


def _port(blocks: Mapping[str, Any], key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise config_error(blocks, key, f"expected a port number, got {value!r}")
    if not -1 <= value <= 65535:
        raise config_error(blocks, key, f"port {value} out of range")
    return max(value, 0)


def _address(blocks: Mapping[str, Any], key: str) -> tuple[str, int]:
    value = blocks[key]
    if isinstance(value, str):
        h, sep, p = value.rpartition(":")
        if not sep or not p.lstrip("-").isdigit():
            raise config_error(blocks, key, f"could not parse address string {value!r}")
        return h.strip("[]"), _port(blocks, key, int(p))
    return "", _port(blocks, key, value)


def load(blocks: Mapping[str, Any], tls: Any = None) -> MonitorSettings:
    """Settings from the top-level keys in ``blocks`` (``ServerConfig.blocks``);
    ``tls`` is the server's TLS settings (needed for HTTPS)."""
    plain = [k for k in ("http", "monitor_port", "http_port") if k in blocks]
    secure = [k for k in ("https", "https_port") if k in blocks]
    if plain and secure:
        raise config_error(blocks, secure[0], f"{secure[0]} and {plain[0]} both set: the "
                           "monitoring port serves either HTTP or HTTPS")
    if secure and tls is None:
        raise config_error(blocks, secure[0], "HTTPS monitoring uses the server's certificate: "
                           "add a tls { cert_file, key_file } block")
    host, port = "", None
    for key in ("http", "https"):
        if key in blocks:
            host, port = _address(blocks, key)
    for key in ("monitor_port", "http_port", "https_port"):
        if key in blocks:
            port = _port(blocks, key, blocks[key])
    base = blocks.get("http_base_path", "")
    if not isinstance(base, str):
        raise config_error(blocks, "http_base_path", f"expected a path, got {base!r}")
    base = base.strip("/")
    return MonitorSettings(host, port, "/" + base if base else "", https=bool(secure))
