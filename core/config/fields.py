"""Typed values of a plugin's config block, checked with errors that name the file, line and key.

Each takes the block (a parsed mapping, which knows where its keys stand),
the key and the value, and returns the value or raises
:class:`natsd.config.ConfigError`. Plugins parse their blocks with these, so
that every block reports a bad value the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .conf import ConfError, parse_duration, parse_size
from .options import config_error


def port(block: Any, key: str, value: Any) -> int:
    """A port number; ``-1`` picks a free port, ``0`` the default one."""
    if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value <= 65535:
        raise config_error(block, key, "expected a port number (-1: a free port)")
    return value


def string(block: Any, key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise config_error(block, key, f"expected a string, got {value!r}")
    return value


def boolean(block: Any, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise config_error(block, key, "expected true or false")
    return value


def duration(block: Any, key: str, value: Any) -> float:
    """Seconds, from a number of seconds or a duration such as ``"2m"`` or ``"500ms"``."""
    try:
        return parse_duration(value)
    except ConfError as exc:
        raise config_error(block, key, exc.reason) from None


def size(block: Any, key: str, value: Any) -> int:
    """Bytes, from a number or a size such as ``"64MB"`` or ``"1G"``."""
    if isinstance(value, bool):
        raise config_error(block, key, "expected a size")
    if isinstance(value, int):
        return value
    try:
        return parse_size(value)
    except (ConfError, ValueError) as exc:
        raise config_error(block, key, str(exc)) from None


def integer(block: Any, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise config_error(block, key, f"expected a number, got {value!r}")
    return value


def listen(block: Any, key: str, value: Any, default_port: int | None = None) -> tuple[str, int]:
    """``(host, port)`` of a ``listen`` value: a port, ``host:port`` (an URL scheme, brackets
    around an IPv6 host and a trailing ``/`` are ignored) or, with ``default_port``, a host alone."""
    if isinstance(value, int) and not isinstance(value, bool):
        return "0.0.0.0", port(block, key, value)
    text = string(block, key, value).split("://", 1)[-1].rstrip("/")
    host, sep, number = text.rpartition(":")
    if not sep:
        if default_port is None:
            raise config_error(block, key, f"invalid listen address {value!r}")
        return text or "0.0.0.0", default_port
    try:
        parsed = int(number)
    except ValueError:
        raise config_error(block, key, f"invalid port in {value!r}") from None
    return host.strip("[]") or "0.0.0.0", port(block, key, parsed)


def listener_authorization(block: Any, key: str, value: Any, what: str) -> dict[str, Any]:
    """A listener block's ``authorization { user, password, token, timeout }`` (``websocket {}``,
    ``mqtt {}``): the fields ``user``, ``password``, ``token`` and ``auth_timeout`` it sets.
    ``what`` names the listener in the errors."""
    if not isinstance(value, Mapping):
        raise config_error(block, key, "expected a block { user: ..., password: ... }")
    out: dict[str, Any] = {}
    for k, v in value.items():
        lk = k.lower()
        if lk in ("user", "username"):
            out["user"] = string(value, k, v)
        elif lk in ("pass", "password"):
            out["password"] = string(value, k, v)
        elif lk == "token":
            out["token"] = string(value, k, v)
        elif lk == "timeout":
            out["auth_timeout"] = duration(value, k, v)
        else:
            raise config_error(value, k, f"unknown field {k!r}")
    if "token" in out and "user" in out:
        raise config_error(value, "token", f"{what} authorization cannot have both a token and a user")
    return out


def check_listener_auth(block: Any, config: Any, what: str, *, user: str | None, token: str | None,
                        no_auth_user: str | None) -> None:
    """nats-server's checks of a listener block's own credentials (``websocket {}``, ``mqtt {}``)
    against the server's users: a block ``user`` or ``token`` is refused when users exist, and its
    ``no_auth_user`` must be one of them. ``what`` names the listener in the errors."""
    names = _user_names(config)
    for key in block:
        if key.lower() in ("authorization", "authentication") and names:
            kind = "username" if user else "token" if token else None
            if kind:
                raise config_error(block, key, f"{what} authentication {kind} not compatible "
                                   "with presence of users/nkeys")
    if no_auth_user:
        key = next(k for k in block if k.lower() == "no_auth_user")
        if not names:
            raise config_error(block, key, f'no_auth_user: "{no_auth_user}" present, '
                               "but users/nkeys are not defined")
        if no_auth_user not in names:
            raise config_error(block, key, f'no_auth_user: "{no_auth_user}" not present as '
                               "user or nkey in authorization block or account configuration")


def _user_names(config: Any) -> set[str]:
    """Names and NKeys of the ``users`` of ``authorization {}`` and of ``accounts {}``."""
    entries: list[Any] = list((config.authorization or {}).get("users") or [])
    for block in config.accounts.values():
        entries.extend(block.get("users") or [])
    names = set()
    for entry in entries:
        if isinstance(entry, Mapping):
            name = entry.get("user", entry.get("username", entry.get("nkey")))
            if isinstance(name, str):
                names.add(name)
    return names
