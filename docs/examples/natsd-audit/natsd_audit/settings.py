"""The ``audit { ... }`` config block: validation with file/line/key errors.

Example::

    audit {
      account: OPS                          # where the bridge and audit.stats live ($G if absent)
      tokens { "s3cret": OPS, "t3am": TEAM } # auth_token -> account
      unix_socket: "/run/natsd/natsd.sock"  # extra NATS listener on a Unix socket
      log_file: "/var/log/natsd/audit.jsonl"
      bridge_subject: "audit.>"             # what the bridge writes to log_file
      stats_subject: "audit.stats"          # where the stats service answers
      store: audit-memory                   # storage backend the bridge keeps messages in
    }

Every key is optional; an empty ``audit {}`` enables the observer and the
stats service only. Errors are raised with :func:`natsd.config.config_error`,
so ``natsd -c`` refuses to start and prints ``file:line: key '...': reason``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from natsd.config import config_error
from natsd.routing.subjects import valid_literal_subject, valid_subject


@dataclass(frozen=True)
class Settings:
    account: str = "$G"
    tokens: Mapping[str, str] = field(default_factory=dict)
    unix_socket: str | None = None
    log_file: str | None = None
    bridge_subject: str = "audit.>"
    stats_subject: str = "audit.stats"
    store: str = "audit-memory"
    block: Mapping[str, Any] | None = None
    """The raw block, so that errors found later can still point into the file."""


KEYS = ("account", "tokens", "unix_socket", "log_file", "bridge_subject", "stats_subject", "store")


def parse(block: Mapping[str, Any]) -> Settings:
    """Validate the block; raise ``ConfigError`` (file, line, key) for the first bad value."""
    values: dict[str, Any] = {}
    for key, value in block.items():
        name = key.lower()
        if name not in KEYS:
            raise config_error(block, key, f"unknown key in the audit block (known: {', '.join(KEYS)})")
        if name == "tokens":
            values["tokens"] = _tokens(block, key, value)
            continue
        if not isinstance(value, str) or not value:
            raise config_error(block, key, f"expected a non-empty string, got {value!r}")
        if name == "bridge_subject" and not valid_subject(value.encode()):
            raise config_error(block, key, f"{value!r} is not a valid subject")
        if name == "stats_subject" and not valid_literal_subject(value.encode()):
            raise config_error(block, key, f"{value!r} is not a valid subject without wildcards")
        if name == "unix_socket" and len(os.fsencode(value)) > 100:
            raise config_error(block, key, "Unix socket paths are limited to about 100 bytes")
        if name in ("log_file", "unix_socket"):
            directory = os.path.dirname(os.path.abspath(value))
            if not os.path.isdir(directory):
                raise config_error(block, key, f"directory {directory!r} does not exist")
        values[name] = value
    return Settings(**values, block=block)


def _tokens(block: Mapping[str, Any], key: str, value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise config_error(block, key, 'expected a block { "<token>": "<ACCOUNT>" ... }')
    for token, account in value.items():
        # `value` is itself a ConfMap, so the error points at the token's own line.
        if not isinstance(account, str) or not account:
            raise config_error(value, token, f"expected an account name, got {account!r}")
        if len(token) < 8:
            raise config_error(value, token, "tokens must be at least 8 characters long")
    return dict(value)
