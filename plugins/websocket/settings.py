"""The ``websocket {}`` block, validated as nats-server 2.15 reads it.

``websocket { listen (or host and port), advertise, no_tls, tls {}, same_origin,
allowed_origins, compression, handshake_timeout, authorization { user,
password, token, timeout }, jwt_cookie, user_cookie, pass_cookie,
token_cookie, headers }``. Without ``tls {}``, ``no_tls: true`` is required
(nats-server's "websocket requires TLS configuration"). Errors name the file,
line and key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from natsd.config import config_error
from natsd.config import fields as value_of
from natsd.config.tls import TLSSettings, load_tls

FORBIDDEN_HEADERS = frozenset({"upgrade", "connection", "sec-websocket-accept", "sec-websocket-extensions",
                               "sec-websocket-protocol", "nats-no-masking"})
"""Response headers the handshake sets itself (nats-server refuses them in ``headers``)."""
NOT_SUPPORTED = frozenset({"ping_interval"})


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int


@dataclass(frozen=True)
class WebSocketSettings:
    """A validated ``websocket {}`` block."""

    host: str = "0.0.0.0"
    port: int = 0
    advertise: str | None = None
    no_tls: bool = False
    tls: TLSSettings | None = None
    same_origin: bool = False
    allowed_origins: tuple[Origin, ...] = ()
    allowed_origin_texts: tuple[str, ...] = ()
    compression: bool = False
    handshake_timeout: float = 0.0
    user: str | None = None
    password: str | None = None
    token: str | None = None
    auth_timeout: float = 0.0
    no_auth_user: str | None = None
    jwt_cookie: str | None = None
    user_cookie: str | None = None
    pass_cookie: str | None = None
    token_cookie: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def auth_override(self) -> bool:
        """The block's own credentials (or ``no_auth_user``) replace the server's for WebSocket
        clients, who must then authenticate even when TCP clients need not."""
        return bool(self.user or self.token or self.no_auth_user)


def check_users(settings: WebSocketSettings, block: Mapping[str, Any], config: Any) -> None:
    """nats-server's checks of the block's credentials against the server's users."""
    value_of.check_listener_auth(block, config, "websocket", user=settings.user, token=settings.token,
                                 no_auth_user=settings.no_auth_user)


def load(block: Any) -> WebSocketSettings:
    """Validate a ``websocket {}`` block (raises ``ConfigError`` naming file, line and key)."""
    if not isinstance(block, Mapping):
        raise config_error(None, "websocket", "Expected websocket to be a map")
    values: dict[str, Any] = {}
    for key, value in block.items():
        k = key.lower()
        if k == "listen":
            values["host"], values["port"] = value_of.listen(block, key, value)
        elif k == "port":
            values["port"] = value_of.port(block, key, value)
        elif k in ("host", "net"):
            values["host"] = value_of.string(block, key, value)
        elif k == "advertise":
            values["advertise"] = value_of.string(block, key, value)
        elif k == "no_tls":
            values["no_tls"] = value_of.boolean(block, key, value)
        elif k == "tls":
            values["tls"] = load_tls(block, key)
        elif k == "same_origin":
            values["same_origin"] = value_of.boolean(block, key, value)
        elif k in ("allowed_origins", "allowed_origin", "allow_origins", "allow_origin", "origins", "origin"):
            texts = [value] if isinstance(value, str) else value
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise config_error(block, key, "expected an origin or a list of origins")
            values["allowed_origins"] = tuple(_origin(block, key, t) for t in texts)
            values["allowed_origin_texts"] = tuple(texts)
        elif k in ("compression", "compress"):
            values["compression"] = value_of.boolean(block, key, value)
        elif k == "handshake_timeout":
            if isinstance(value, bool) or isinstance(value, float):
                raise config_error(block, key, "error parsing handshake_timeout: expected a number "
                                   "of seconds or a duration")
            values["handshake_timeout"] = (float(value) if isinstance(value, int)
                                           else value_of.duration(block, key, value))
        elif k in ("authorization", "authentication"):
            values.update(value_of.listener_authorization(block, key, value, "websocket"))
        elif k == "no_auth_user":
            values["no_auth_user"] = value_of.string(block, key, value)
        elif k in ("jwt_cookie", "user_cookie", "pass_cookie", "token_cookie"):
            values[k] = value_of.string(block, key, value)
        elif k == "headers":
            values["headers"] = _headers(block, key, value)
        elif k in NOT_SUPPORTED:
            raise config_error(block, key, f"websocket option {key!r} is not supported by natsd")
        else:
            raise config_error(block, key, f"unknown field {key!r}")
    settings = WebSocketSettings(**values)
    if settings.port and settings.tls is None and not settings.no_tls:
        raise config_error(block, next(iter(block), "port"), "websocket requires TLS configuration")
    return settings


def _origin(block: Any, key: str, text: str) -> Origin:
    parts = urlsplit(text)
    if not parts.scheme or not parts.hostname:
        raise config_error(block, key, f"unable to parse allowed origin {text!r}")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise config_error(block, key, f"unable to parse allowed origin {text!r}") from None
    return Origin(parts.scheme, parts.hostname.lower(), port)


def _headers(block: Any, key: str, value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise config_error(block, key, "expected a map of header names to values")
    out = []
    for name, text in value.items():
        if name.lower() in FORBIDDEN_HEADERS:
            raise config_error(block, key, f"websocket: invalid header {name!r}, can not be set")
        out.append((str(name), str(text)))
    return tuple(out)
