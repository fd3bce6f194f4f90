"""The ``mqtt {}`` block, with nats-server's keys.

``mqtt { listen (or host and port), tls {}, authorization { user, password,
token, timeout }, no_auth_user, ack_wait, max_ack_pending, js_domain,
stream_replicas, consumer_replicas, consumer_memory_storage,
consumer_inactive_threshold, reject_qos2_publish, downgrade_qos2_subscribe,
js_api_timeout }`` with nats-server's aliases. ``consumer_replicas`` is accepted
and ignored with nats-server's warning. Errors name the file, line and key.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from natsd.config import config_error
from natsd.config import fields as value_of
from natsd.config.tls import TLSSettings, load_tls

log = logging.getLogger("natsd.mqtt")

DEFAULT_PORT = 1883
DEFAULT_ACK_WAIT = 30.0
DEFAULT_MAX_ACK_PENDING = 1024
MAX_ACK_PENDING_LIMIT = 0xFFFF
"""The most QoS 1/2 messages in flight per subscription (MQTT packet identifiers are 16 bits)."""
NOT_NEGATIVE = {"ack_wait": "ack wait must be a positive value",
                "js_api_timeout": "JS API timeout must be a positive value"}
DURATIONS = {"ackwait": "ack_wait", "consumer_auto_cleanup": "consumer_inactive_threshold",
             "api_timeout": "js_api_timeout"}


@dataclass(frozen=True)
class MQTTSettings:
    """A validated ``mqtt {}`` block."""

    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    tls: TLSSettings | None = None
    user: str | None = None
    password: str | None = None
    token: str | None = None
    auth_timeout: float = 0.0
    no_auth_user: str | None = None
    ack_wait: float = DEFAULT_ACK_WAIT
    max_ack_pending: int = DEFAULT_MAX_ACK_PENDING
    js_domain: str = ""
    stream_replicas: int = 0
    consumer_memory_storage: bool = False
    consumer_inactive_threshold: float = 0.0
    reject_qos2_publish: bool = False
    downgrade_qos2_subscribe: bool = False
    js_api_timeout: float = 5.0
    given: frozenset[str] = frozenset()
    """The fields the block set itself (``/varz`` shows some only then, as nats-server)."""


def load(block: Any) -> MQTTSettings:
    """Validate an ``mqtt {}`` block (raises ``ConfigError`` naming file, line and key)."""
    if not isinstance(block, Mapping):
        raise config_error(None, "mqtt", "Expected mqtt to be a map/struct")
    values: dict[str, Any] = {}
    for key, value in block.items():
        k = key.lower()
        if k == "listen":
            values["host"], values["port"] = value_of.listen(block, key, value, DEFAULT_PORT)
        elif k == "port":
            values["port"] = value_of.port(block, key, value)
        elif k in ("host", "net"):
            values["host"] = value_of.string(block, key, value)
        elif k == "tls":
            values["tls"] = load_tls(block, key)
        elif k in ("authorization", "authentication"):
            values.update(value_of.listener_authorization(block, key, value, "mqtt"))
        elif k == "no_auth_user":
            values["no_auth_user"] = value_of.string(block, key, value)
        elif k in ("ack_wait", "ackwait", "consumer_inactive_threshold", "consumer_auto_cleanup", "js_api_timeout",
                   "api_timeout"):
            seconds = value_of.duration(block, key, value)
            field = DURATIONS.get(k, k)
            if seconds < 0 and field in NOT_NEGATIVE:
                raise config_error(block, key, NOT_NEGATIVE[field])
            values[field] = seconds
        elif k in ("max_ack_pending", "max_pending", "max_inflight"):
            number = value_of.integer(block, key, value)
            if not 0 <= number <= MAX_ACK_PENDING_LIMIT:
                raise config_error(block, key, f"invalid value {number}, should in [0..{MAX_ACK_PENDING_LIMIT}] range")
            values["max_ack_pending"] = number or DEFAULT_MAX_ACK_PENDING
        elif k in ("js_domain",):
            values["js_domain"] = value_of.string(block, key, value)
        elif k == "stream_replicas":
            values[k] = value_of.integer(block, key, value)
        elif k == "consumer_replicas":
            log.warning('invalid use of field "consumer_replicas": consumer replicas setting ignored in this '
                        "server version")
        elif k in ("consumer_memory_storage", "reject_qos2_publish", "downgrade_qos2_subscribe"):
            values[k] = value_of.boolean(block, key, value)
        else:
            raise config_error(block, key, f"unknown field {key!r}")
    return MQTTSettings(**values, given=frozenset(values))
