"""Typed values of a plugin's config block, checked with errors that name the file, line and key.

Each takes the block (a parsed mapping, which knows where its keys stand),
the key and the value, and returns the value or raises
:class:`natsd.config.ConfigError`. Plugins parse their blocks with these, so
that every block reports a bad value the same way.
"""

from __future__ import annotations

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
