"""The ``cluster {}`` block and the clustering flags, validated as nats-server reads them.

``cluster { name, listen (or host and port), routes, authorization { user,
password, timeout }, tls {}, advertise, no_advertise, connect_retries,
pool_size, accounts, compression, ping_interval, ping_max }``. natsd speaks one route
connection per remote server (nats-server's ``pool_size: -1``): a configured
pool size is accepted and logged, pinned ``accounts`` are refused, and
compression is declined whatever is configured (routes stay uncompressed;
nats-server follows a peer that declines).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from natsd.config import config_error
from natsd.config import fields as value_of
from natsd.config.conf import ConfError, parse_duration
from natsd.config.tls import TLSSettings, load_tls, require_peer_certificates

log = logging.getLogger("natsd.cluster")

KEYS = ("name", "listen", "host", "port", "routes", "authorization", "advertise",
        "cluster_advertise", "no_advertise", "connect_retries", "pool_size", "accounts",
        "compression", "ping_interval", "ping_max", "connect_backoff", "tls")
DEFAULT_PORT = 6222


@dataclass(frozen=True)
class ClusterSettings:
    """A validated ``cluster {}`` block."""

    name: str = ""
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT  # 0 or -1: a free port
    routes: tuple[str, ...] = ()
    user: str | None = None
    password: str | None = None
    auth_timeout: float = 2.0
    advertise: str | None = None
    no_advertise: bool = False
    connect_retries: int = 0
    ping_interval: float = 30.0
    ping_max: int = 2
    connect_backoff: bool = False
    pool_size: int = -1
    tls: TLSSettings | None = None
    """Route TLS: both ends present the certificate and verify the other's (nats-server's rule)."""
    extra: Mapping[str, Any] = field(default_factory=dict)


def _routes(block: Any, key: str, value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(u, str) for u in items):
        raise config_error(block, key, "expected a list of route URLs")
    out = []
    for url in (u.strip() for u in items):
        if not url:
            continue
        parts = urlsplit(url if "://" in url else "nats-route://" + url)
        if not parts.hostname:
            raise config_error(block, key, f"invalid route URL {url!r}")
        out.append(url if "://" in url else "nats-route://" + url)
    return tuple(out)


def load(block: Mapping[str, Any]) -> ClusterSettings:
    """Validate a ``cluster {}`` block (raises ``ConfigError`` naming file, line and key)."""
    if not isinstance(block, Mapping):
        raise config_error(None, "cluster", "expected a block cluster { ... }")
    values: dict[str, Any] = {}
    for key, value in block.items():
        k = key.lower()
        if k == "name":
            if not isinstance(value, str) or not value or " " in value:
                raise config_error(block, key, "a cluster name is a word without spaces")
            values["name"] = value
        elif k == "listen":
            values["host"], values["port"] = value_of.listen(block, key, value, DEFAULT_PORT)
        elif k == "host":
            if not isinstance(value, str):
                raise config_error(block, key, "expected a host")
            values["host"] = value
        elif k == "port":
            if not isinstance(value, int) or isinstance(value, bool) or value < -1 or value > 65535:
                raise config_error(block, key, "expected a port number (-1: a free port)")
            values["port"] = value
        elif k == "routes":
            values["routes"] = _routes(block, key, value)
        elif k == "authorization":
            _authorization(value, values, block, key)
        elif k in ("advertise", "cluster_advertise"):
            if not isinstance(value, str):
                raise config_error(block, key, "expected host:port")
            values["advertise"] = value
        elif k == "no_advertise":
            values["no_advertise"] = value_of.boolean(block, key, value)
        elif k == "connect_backoff":
            values["connect_backoff"] = value_of.boolean(block, key, value)
        elif k in ("connect_retries", "ping_max"):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise config_error(block, key, "expected a number")
            values[k] = value
        elif k == "ping_interval":
            try:
                values["ping_interval"] = parse_duration(value)
            except ConfError as exc:
                raise config_error(block, key, exc.reason) from None
        elif k == "pool_size":
            if not isinstance(value, int) or isinstance(value, bool):
                raise config_error(block, key, "expected a number")
            if value not in (0, -1):
                log.info("cluster pool_size %d: natsd keeps one route connection per server "
                         "(nats-server's pool_size -1), which every nats-server accepts", value)
            values["pool_size"] = -1
        elif k == "accounts":
            if value:
                raise config_error(block, key, "natsd does not pin accounts to dedicated routes "
                                   "(it runs nats-server's pool_size -1)")
        elif k == "tls":
            values["tls"] = require_peer_certificates(load_tls(block, key, known_urls=True))
        elif k == "compression":
            values.setdefault("extra", {})["compression"] = value  # declined on the wire
        else:
            raise config_error(block, key, "unknown cluster option")
    return ClusterSettings(**values)



def _authorization(value: Any, values: dict[str, Any], block: Any, key: str) -> None:
    if not isinstance(value, Mapping):
        raise config_error(block, key, "expected a block { user: ..., password: ... }")
    for k, v in value.items():
        lk = k.lower()
        if lk == "user":
            values["user"] = str(v)
        elif lk in ("password", "pass"):
            values["password"] = str(v)
        elif lk == "timeout":
            try:
                values["auth_timeout"] = parse_duration(v)
            except ConfError as exc:
                raise config_error(value, k, exc.reason) from None
        elif lk == "users":
            raise config_error(value, k, "Cluster authorization does not allow multiple users")
        elif lk == "token":
            raise config_error(value, k, "Cluster authorization does not support tokens")
        else:
            raise config_error(value, k, "unknown cluster authorization option")
