"""The ``leafnodes {}`` block, validated as nats-server reads it.

The hub side: ``listen`` (or ``host``/``port``), ``authorization { user,
password, nkey, account, timeout, users: [ {user, password, account} ] }``,
``tls {}``, ``advertise``, ``no_advertise``. The leaf side: ``remotes: [ {
url(s), account, credentials, nkey, tls {}, deny_imports, deny_exports, hub,
first_info_timeout, dial_timeout, disabled, no_randomize } ]`` and
``reconnect`` (the pause between attempts). ``compression`` is accepted and
declined on the wire; nats-server keys natsd does not implement are refused
by name; anything else is an unknown key. Errors name the file, line and key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from natsd.config import config_error
from natsd.config import fields as value_of
from natsd.config.tls import TLSSettings, load_tls

DEFAULT_PORT = 7422
RECONNECT_INTERVAL = 1.0
"""nats-server's default pause between a remote's connection attempts (``reconnect``)."""
FIRST_INFO_TIMEOUT = 1.0
DIAL_TIMEOUT = 1.0
SCHEMES = ("nats-leaf", "nats", "tls", "leafnode", "ws", "wss")
"""URL schemes of a remote (``ws``/``wss``: the link is carried over WebSocket)."""

NOT_SUPPORTED = frozenset({"isolate_leafnode_interest", "isolate", "min_version", "minimum_version",
                           "proxy_required"})
REMOTE_NOT_SUPPORTED = frozenset({"jetstream_cluster_migrate", "js_cluster_migrate",
                                  "isolate_leafnode_interest", "isolate", "request_isolation",
                                  "proxy"})


@dataclass(frozen=True)
class LeafUser:
    """One entry of ``authorization { users: [...] }``: who may connect, bound to which account."""

    user: str
    password: str
    account: str | None = None


@dataclass(frozen=True)
class Remote:
    """One entry of ``remotes``: a hub this server connects to as a leaf."""

    urls: tuple[str, ...]
    account: str | None = None
    """The local account the link binds (default: the global account)."""
    credentials: str | None = None
    nkey_seed: str | None = None
    tls: TLSSettings | None = None
    hub: bool = False
    deny_imports: tuple[str, ...] = ()
    deny_exports: tuple[str, ...] = ()
    first_info_timeout: float = FIRST_INFO_TIMEOUT
    dial_timeout: float = DIAL_TIMEOUT
    disabled: bool = False
    no_randomize: bool = False
    ignore_discovered_servers: bool = False
    ws_compression: bool = False
    """Ask a WebSocket hub for permessage-deflate (``ws://``/``wss://`` URLs)."""

    @property
    def websocket(self) -> bool:
        """The remote's URLs are ``ws://`` or ``wss://``: the link is carried over WebSocket."""
        return urlsplit(self.urls[0]).scheme in ("ws", "wss")


@dataclass(frozen=True)
class LeafSettings:
    """A validated ``leafnodes {}`` block."""

    host: str = "0.0.0.0"
    port: int = 0
    """0: no listener (a leaf that only dials); -1: a free port."""
    user: str | None = None
    password: str | None = None
    nkey: str | None = None
    account: str | None = None
    """The account a single ``user``/``nkey`` binds to."""
    users: tuple[LeafUser, ...] = ()
    auth_timeout: float = 0.0
    tls: TLSSettings | None = None
    advertise: str | None = None
    no_advertise: bool = False
    reconnect: float = RECONNECT_INTERVAL
    dial_timeout: float = DIAL_TIMEOUT
    write_deadline: float = 0.0
    remotes: tuple[Remote, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def listening(self) -> bool:
        return self.port != 0

    @property
    def auth_required(self) -> bool:
        return self.user is not None or self.nkey is not None or bool(self.users)


def load(block: Any) -> LeafSettings:
    """Validate a ``leafnodes {}`` block (raises ``ConfigError`` naming file, line and key)."""
    if not isinstance(block, Mapping):
        raise config_error(None, "leafnodes", "Expected map to define a leafnode")
    values: dict[str, Any] = {}
    for key, value in block.items():
        k = key.lower()
        if k == "listen":
            values["host"], values["port"] = value_of.listen(block, key, value, DEFAULT_PORT)
        elif k == "port":
            values["port"] = value_of.port(block, key, value)
        elif k in ("host", "net"):
            values["host"] = value_of.string(block, key, value)
        elif k == "authorization":
            _authorization(value, values, block, key)
        elif k == "remotes":
            values["remotes"] = _remotes(block, key, value)
        elif k in ("reconnect", "reconnect_delay", "reconnect_interval"):
            values["reconnect"] = value_of.duration(block, key, value)
        elif k == "dial_timeout":
            values["dial_timeout"] = value_of.duration(block, key, value)
        elif k == "write_deadline":
            values["write_deadline"] = value_of.duration(block, key, value)
        elif k == "tls":
            values["tls"] = load_tls(block, key, known_urls=True)
        elif k in ("leafnode_advertise", "advertise"):
            values["advertise"] = value_of.string(block, key, value)
        elif k == "no_advertise":
            values["no_advertise"] = value_of.boolean(block, key, value)
        elif k == "compression":
            values.setdefault("extra", {})["compression"] = value  # declined on the wire
        elif k == "write_timeout":
            values.setdefault("extra", {})["write_timeout"] = value_of.string(block, key, value)
        elif k in NOT_SUPPORTED:
            raise config_error(block, key, f"leafnodes option {key!r} is not supported by natsd")
        else:
            raise config_error(block, key, f"unknown field {key!r} in leafnodes")
    return LeafSettings(**values)






def _authorization(value: Any, values: dict[str, Any], block: Any, key: str) -> None:
    if not isinstance(value, Mapping):
        raise config_error(block, key, "expected a block { user: ..., password: ... }")
    from natsd.security.nkeys import is_valid_public_key

    for k, v in value.items():
        lk = k.lower()
        if lk in ("user", "username"):
            values["user"] = value_of.string(value, k, v)
        elif lk in ("pass", "password"):
            values["password"] = str(v)
        elif lk == "nkey":
            if not isinstance(v, str) or not is_valid_public_key(v, "U"):
                raise config_error(value, k, "Not a valid public nkey for leafnode authorization")
            values["nkey"] = v
        elif lk == "account":
            values["account"] = value_of.string(value, k, v)
        elif lk == "timeout":
            values["auth_timeout"] = value_of.duration(value, k, v)
        elif lk == "users":
            values["users"] = _users(value, k, v)
        elif lk == "proxy_required":
            raise config_error(value, k, "leafnode proxy authentication is not supported by natsd")
        else:
            raise config_error(value, k, f"unknown field {k!r} in leafnode authorization")
    if values.get("users") and (values.get("user") is not None or values.get("nkey") is not None):
        raise config_error(value, "users", "can not have a single user/pass and a users array")


def _users(block: Any, key: str, value: Any) -> tuple[LeafUser, ...]:
    if not isinstance(value, list):
        raise config_error(block, key, f"Expected users field to be an array, got {value!r}")
    out = []
    for entry in value:
        if not isinstance(entry, Mapping):
            raise config_error(block, key, f"Expected user entry to be a map/struct, got {entry!r}")
        fields: dict[str, Any] = {}
        for k, v in entry.items():
            lk = k.lower()
            if lk in ("user", "username"):
                fields["user"] = value_of.string(entry, k, v)
            elif lk in ("pass", "password"):
                fields["password"] = str(v)
            elif lk == "account":
                fields["account"] = value_of.string(entry, k, v)
            else:
                raise config_error(entry, k, f"unknown field {k!r} in a leafnode user")
        if "user" not in fields:
            raise config_error(block, key, "a leafnode user needs a user name")
        out.append(LeafUser(fields["user"], fields.get("password", ""), fields.get("account")))
    return tuple(out)


def _remotes(block: Any, key: str, value: Any) -> tuple[Remote, ...]:
    if not isinstance(value, list):
        raise config_error(block, key, f"Expected remotes field to be an array, got {value!r}")
    out = []
    for entry in value:
        if not isinstance(entry, Mapping):
            raise config_error(block, key, f"Expected remote leafnode entry to be a map/struct, got {entry!r}")
        out.append(_remote(entry))
    return tuple(out)


def _remote(entry: Mapping[str, Any]) -> Remote:
    fields: dict[str, Any] = {}
    for k, v in entry.items():
        lk = k.lower()
        if lk in ("url", "urls"):
            fields["urls"] = _urls(entry, k, v)
        elif lk in ("account", "local"):
            fields["account"] = value_of.string(entry, k, v)
        elif lk in ("creds", "credentials"):
            if "nkey_seed" in fields:
                raise config_error(entry, k, "Remote leafnode can not have both creds and nkey defined")
            path = os.path.expanduser(value_of.string(entry, k, v))
            if not os.path.isfile(path):
                raise config_error(entry, k, f"credentials file {path!r} not found")
            fields["credentials"] = path
        elif lk in ("nkey", "seed"):
            if "credentials" in fields:
                raise config_error(entry, k, "Remote leafnode can not have both creds and nkey defined")
            seed = value_of.string(entry, k, v)
            if not seed.startswith("SU"):
                raise config_error(entry, k, f"Remote leafnode nkey is not a valid seed: {seed!r}")
            fields["nkey_seed"] = seed
        elif lk == "tls":
            fields["tls"] = load_tls(entry, k, known_urls=True, client=True)
        elif lk == "hub":
            fields["hub"] = value_of.boolean(entry, k, v)
        elif lk in ("deny_imports", "deny_import", "deny_exports", "deny_export"):
            subjects = [v] if isinstance(v, str) else v
            if not isinstance(subjects, list) or not all(isinstance(s, str) for s in subjects):
                raise config_error(entry, k, "expected a subject or a list of subjects")
            fields["deny_imports" if "import" in lk else "deny_exports"] = tuple(subjects)
        elif lk == "first_info_timeout":
            fields["first_info_timeout"] = value_of.duration(entry, k, v)
        elif lk == "dial_timeout":
            fields["dial_timeout"] = value_of.duration(entry, k, v)
        elif lk == "disabled":
            fields["disabled"] = value_of.boolean(entry, k, v)
        elif lk in ("no_randomize", "dont_randomize"):
            fields["no_randomize"] = value_of.boolean(entry, k, v)
        elif lk == "ignore_discovered_servers":
            fields["ignore_discovered_servers"] = value_of.boolean(entry, k, v)
        elif lk == "compression":
            continue  # declined on the wire
        elif lk in ("ws_compress", "ws_compression", "websocket_compress", "websocket_compression"):
            fields["ws_compression"] = value_of.boolean(entry, k, v)
        elif lk in ("ws_no_masking", "websocket_no_masking"):
            value_of.boolean(entry, k, v)  # accepted; natsd masks its frames anyway (every server reads them)
        elif lk in REMOTE_NOT_SUPPORTED:
            raise config_error(entry, k, f"remote leafnode option {k!r} is not supported by natsd")
        else:
            raise config_error(entry, k, f"unknown field {k!r} in a remote leafnode")
    if not fields.get("urls"):
        raise config_error(entry, next(iter(entry), "url"), "a remote leafnode needs a url")
    return Remote(**fields)


def _urls(block: Any, key: str, value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(u, str) for u in items):
        raise config_error(block, key, f"Expected remote leafnode url to be an array or string, got {value!r}")
    out = []
    for url in items:
        parts = urlsplit(url if "://" in url else "nats-leaf://" + url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise config_error(block, key, f"invalid remote leafnode URL {url!r}")
        try:
            parts.port  # noqa: B018 - validates the port
        except ValueError:
            raise config_error(block, key, f"invalid port in {url!r}") from None
        out.append(url if "://" in url else "nats-leaf://" + url)
    if len({urlsplit(u).scheme in ("ws", "wss") for u in out}) > 1:
        raise config_error(block, key, "remote leaf node configuration cannot have a mix of websocket "
                           "and non-websocket urls: [" + " ".join(f'"{u}"' for u in out) + "]")
    return tuple(out)
