"""The ``gateway {}`` block, validated as nats-server reads it.

``gateway { name, listen (or host and port), advertise, authorization { user,
password, timeout }, tls {}, connect_retries, connect_backoff,
reject_unknown_cluster, write_deadline, gateways: [ { name, url(s), tls {} } ] }``.
Errors name the file, line and key, with nats-server's texts where it has one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from natsd.config import config_error
from natsd.config import fields as value_of
from natsd.config.tls import TLSSettings, load_tls, require_peer_certificates


@dataclass(frozen=True)
class RemoteGateway:
    """One entry of ``gateways``: another cluster and where to reach it."""

    name: str
    urls: tuple[str, ...]
    tls: TLSSettings | None = None
    implicit: bool = False
    """Learned from gossip or an inbound connection, not configured."""


@dataclass(frozen=True)
class GatewaySettings:
    """A validated ``gateway {}`` block."""

    name: str
    host: str = "0.0.0.0"
    port: int = 0
    advertise: str | None = None
    user: str | None = None
    password: str | None = None
    auth_timeout: float = 2.0
    tls: TLSSettings | None = None
    connect_retries: int = 0
    connect_backoff: bool = False
    reject_unknown: bool = False
    write_deadline: float = 0.0
    gateways: tuple[RemoteGateway, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


def load(block: Any) -> GatewaySettings:
    """Validate a ``gateway {}`` block (raises ``ConfigError`` naming file, line and key)."""
    if not isinstance(block, Mapping):
        raise config_error(None, "gateway", "Expected gateway to be a map")
    values: dict[str, Any] = {}
    port_given = False
    for key, value in block.items():
        k = key.lower()
        if k == "name":
            values["name"] = value_of.string(block, key, value)
            if " " in values["name"]:
                raise config_error(block, key, "gateway name cannot contain spaces")
        elif k == "listen":
            values["host"], values["port"] = _listen(block, key, value)
            port_given = True
        elif k == "port":
            values["port"] = _port(block, key, value)
            port_given = True
        elif k in ("host", "net"):
            values["host"] = value_of.string(block, key, value)
        elif k in ("advertise", "gateway_advertise"):
            values["advertise"] = value_of.string(block, key, value)
        elif k == "authorization":
            _authorization(value, values, block, key)
        elif k == "tls":
            values["tls"] = require_peer_certificates(load_tls(block, key, known_urls=True))
        elif k == "connect_retries":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise config_error(block, key, "expected a number")
            values["connect_retries"] = value
        elif k == "connect_backoff":
            values["connect_backoff"] = value_of.boolean(block, key, value)
        elif k in ("reject_unknown_cluster", "reject_unknown"):
            values["reject_unknown"] = value_of.boolean(block, key, value)
        elif k == "write_deadline":
            values["write_deadline"] = value_of.duration(block, key, value)
        elif k == "write_timeout":
            values.setdefault("extra", {})["write_timeout"] = value_of.string(block, key, value)
        elif k == "gateways":
            values["gateways"] = _remotes(block, key, value)
        else:
            raise config_error(block, key, f"unknown field {key!r} in gateway")
    if not values.get("name"):
        raise config_error(block, next(iter(block), "name"), "gateway has no name")
    if not port_given:
        raise config_error(block, "name", f"gateway {values['name']!r} has no port specified "
                           "(select -1 for random port)")
    own = values["name"]
    values["gateways"] = tuple(g for g in values.get("gateways", ()) if g.name != own)
    return GatewaySettings(**values)


def _remotes(block: Any, key: str, value: Any) -> tuple[RemoteGateway, ...]:
    if not isinstance(value, list):
        raise config_error(block, key, "Expected gateways field to be an array")
    out = []
    for index, entry in enumerate(value):
        if not isinstance(entry, Mapping):
            raise config_error(block, key, f"Expected gateway entry to be a map/struct, got {entry!r}")
        fields: dict[str, Any] = {}
        urls: list[str] = []
        for k, v in entry.items():
            lk = k.lower()
            if lk == "name":
                fields["name"] = value_of.string(entry, k, v)
            elif lk in ("url", "urls"):
                items = [v] if isinstance(v, str) else v
                if not isinstance(items, list) or not all(isinstance(u, str) for u in items):
                    raise config_error(entry, k, "expected a URL or a list of URLs")
                for url in items:
                    parts = urlsplit(url if "://" in url else "nats://" + url)
                    if not parts.hostname:
                        raise config_error(entry, k, f"invalid gateway URL {url!r}")
                    urls.append(url if "://" in url else "nats://" + url)
            elif lk == "tls":
                fields["tls"] = require_peer_certificates(load_tls(entry, k, known_urls=True))
            else:
                raise config_error(entry, k, f"unknown field {k!r} in a gateway")
        if not fields.get("name"):
            raise config_error(block, key, f"gateway in the list {index} has no name")
        if not urls:
            raise config_error(entry, next(iter(entry), "name"), f"gateway {fields['name']!r} has no URL")
        out.append(RemoteGateway(urls=tuple(urls), **fields))
    return tuple(out)


def _authorization(value: Any, values: dict[str, Any], block: Any, key: str) -> None:
    if not isinstance(value, Mapping):
        raise config_error(block, key, "expected a block { user: ..., password: ... }")
    for k, v in value.items():
        lk = k.lower()
        if lk in ("user", "username"):
            values["user"] = str(v)
        elif lk in ("password", "pass"):
            values["password"] = str(v)
        elif lk == "timeout":
            values["auth_timeout"] = value_of.duration(value, k, v)
        elif lk == "users":
            raise config_error(value, k, "Gateway authorization does not allow multiple users")
        elif lk == "token":
            raise config_error(value, k, "Gateway authorization does not support tokens")
        elif lk == "auth_callout":
            raise config_error(value, k, "Gateway authorization does not support callouts")
        else:
            raise config_error(value, k, "unknown gateway authorization option")


def _listen(block: Any, key: str, value: Any) -> tuple[str, int]:
    host, port = value_of.listen(block, key, value)
    return host, _port(block, key, port)


def _port(block: Any, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= 65535 or value == 0:
        raise config_error(block, key, "expected a port number (-1: a free port)")
    return value



