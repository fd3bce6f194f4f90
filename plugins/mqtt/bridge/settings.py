"""The ``mqtt_bridge {}`` block: the external MQTT brokers natsd connects to, and what crosses.

::

    mqtt_bridge {
      remotes: [
        {
          name: plant                           # in logs and metrics (default: the URL's host)
          url: "mqtt://bridge:secret@10.0.0.5:1883"   # mqtts:// for TLS
          client_id: natsd-plant                # default: natsd-<name>
          protocol: 5                           # 5 (default) or 3.1.1
          keep_alive: 30s
          tls { ca_file: ..., cert_file: ..., key_file: ... }
          account: FACTORY                      # the natsd account messages cross in (default $G)
          in:  [ { topic: "devices/+/telemetry", subject: "plant.telemetry.*", qos: 1 } ]
          out: [ { subject: "plant.commands.>", topic: "devices/commands/#", qos: 1 } ]
          buffer: 10000                         # messages kept for the remote while it is away
          reconnect: { min: 500ms, max: 30s }
        }
      ]
    }

``in`` entries take messages from the remote's ``topic`` filter into natsd:
without ``subject`` a topic lands on the subject nats-server's MQTT mapping
gives it (``devices/a/telemetry`` → ``devices.a.telemetry``); with one, the
filter's wildcards fill the subject's in order, as an import's ``to`` does.
``out`` entries send natsd's ``subject`` to the remote likewise. Errors name
the file, line and key.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from natsd.config import config_error
from natsd.config import fields as value_of
from natsd.config.tls import dialing_context, load_tls
from natsd.routing.subjects import valid_subject

DEFAULT_BUFFER = 10_000
MIN_RECONNECT, MAX_RECONNECT = 0.5, 30.0


@dataclass(frozen=True)
class Route:
    """One ``in`` or ``out`` entry: a topic filter and a subject (pattern), with a QoS."""

    topic: str
    subject: str
    qos: int = 0


@dataclass(frozen=True)
class Remote:
    name: str
    host: str
    port: int
    tls: ssl.SSLContext | None
    username: str | None
    password: str | None
    client_id: str
    protocol: int
    keep_alive: int
    account: str
    inbound: tuple[Route, ...]
    outbound: tuple[Route, ...]
    buffer: int
    reconnect_min: float
    reconnect_max: float


def load(block: Any) -> tuple[Remote, ...]:
    """Validate an ``mqtt_bridge {}`` block (raises ``ConfigError`` naming file, line and key)."""
    if not isinstance(block, Mapping):
        raise config_error(None, "mqtt_bridge", "expected a block with remotes: [...]")
    remotes: list[Remote] = []
    for key, value in block.items():
        if key.lower() != "remotes":
            raise config_error(block, key, f"unknown field {key!r}")
        if not isinstance(value, list) or not value:
            raise config_error(block, key, "expected a list of remotes")
        for entry in value:
            remotes.append(_remote(block, key, entry))
    names = [r.name for r in remotes]
    for name in names:
        if names.count(name) > 1:
            raise config_error(block, "remotes", f"two remotes are named {name!r}")
    return tuple(remotes)


def _remote(block: Any, key: str, entry: Any) -> Remote:
    if not isinstance(entry, Mapping):
        raise config_error(block, key, "expected each remote to be a block { url: ..., in: [...], out: [...] }")
    values: dict[str, Any] = {"protocol": 5, "keep_alive": 30, "account": "$G", "buffer": DEFAULT_BUFFER,
                              "reconnect_min": MIN_RECONNECT, "reconnect_max": MAX_RECONNECT,
                              "inbound": (), "outbound": (), "tls": None, "name": "", "client_id": ""}
    url = None
    tls_block = None
    for k, v in entry.items():
        lk = k.lower()
        if lk == "url":
            url = value_of.string(entry, k, v)
            parts = urlsplit(url)
            if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl", "tls") or not parts.hostname:
                raise config_error(entry, k, f"expected mqtt://host:port or mqtts://host:port, got {url!r}")
            try:
                port = parts.port
            except ValueError:
                raise config_error(entry, k, f"invalid port in {url!r}") from None
            secure = parts.scheme in ("mqtts", "ssl", "tls")
            values["host"], values["port"] = parts.hostname, port or (8883 if secure else 1883)
            values["username"] = unquote(parts.username) if parts.username else None
            values["password"] = unquote(parts.password) if parts.password else None
            values["secure"] = secure
        elif lk == "name":
            values["name"] = value_of.string(entry, k, v)
        elif lk == "client_id":
            values["client_id"] = value_of.string(entry, k, v)
        elif lk == "protocol":
            text = str(v)
            if text not in ("5", "3.1.1", "4"):
                raise config_error(entry, k, f"expected protocol 5 or 3.1.1, got {v!r}")
            values["protocol"] = 5 if text == "5" else 4
        elif lk == "keep_alive":
            values["keep_alive"] = max(1, int(value_of.duration(entry, k, v)))
        elif lk == "account":
            values["account"] = value_of.string(entry, k, v)
        elif lk == "tls":
            tls_block = k
        elif lk in ("in", "out"):
            values["inbound" if lk == "in" else "outbound"] = _routes(entry, k, v, lk)
        elif lk == "buffer":
            number = value_of.integer(entry, k, v)
            if number < 0:
                raise config_error(entry, k, "expected a number of messages (0: keep none)")
            values["buffer"] = number
        elif lk == "reconnect":
            if not isinstance(v, Mapping):
                raise config_error(entry, k, "expected { min: ..., max: ... }")
            for rk, rv in v.items():
                if rk.lower() not in ("min", "max"):
                    raise config_error(v, rk, f"unknown field {rk!r}")
                values["reconnect_" + rk.lower()] = value_of.duration(v, rk, rv)
        else:
            raise config_error(entry, k, f"unknown field {k!r}")
    if url is None:
        raise config_error(block, key, "a remote needs a url")
    if not values["inbound"] and not values["outbound"]:
        raise config_error(entry, "url", "a remote needs in: [...] or out: [...] (nothing would cross)")
    secure = values.pop("secure")
    if tls_block is not None:
        settings = load_tls(entry, tls_block)
        values["tls"] = dialing_context(settings)
    elif secure:
        values["tls"] = ssl.create_default_context()
    if not values["name"]:
        values["name"] = values["host"]
    if not values["client_id"]:
        values["client_id"] = f"natsd-{values['name']}"
    return Remote(**values)


def _routes(entry: Any, key: str, value: Any, direction: str) -> tuple[Route, ...]:
    from ..topics import TopicError, check_topic_filter

    if not isinstance(value, list) or not value:
        raise config_error(entry, key, f"expected a list of {{ topic: ..., subject: ..., qos: ... }} for {direction}")
    routes = []
    for item in value:
        if not isinstance(item, Mapping):
            raise config_error(entry, key, "expected { topic: ..., subject: ..., qos: ... }")
        fields: dict[str, Any] = {"topic": "", "subject": "", "qos": 0}
        for k, v in item.items():
            lk = k.lower()
            if lk not in fields:
                raise config_error(item, k, f"unknown field {k!r}")
            if lk == "qos":
                if v not in (0, 1, 2) or isinstance(v, bool):
                    raise config_error(item, k, "expected QoS 0, 1 or 2")
                fields["qos"] = v
            else:
                fields[lk] = value_of.string(item, k, v)
        main = "topic" if direction == "in" else "subject"
        if not fields[main]:
            raise config_error(item, next(iter(item), key), f"an {direction} entry needs a {main}")
        if fields["topic"]:
            try:
                check_topic_filter(fields["topic"])
            except TopicError as exc:
                raise config_error(item, "topic", str(exc)) from None
        if fields["subject"] and not valid_subject(fields["subject"].encode()):
            raise config_error(item, "subject", f"invalid subject {fields['subject']!r}")
        routes.append(Route(**fields))
    return tuple(routes)
