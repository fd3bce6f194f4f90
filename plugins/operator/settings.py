"""The operator-mode settings of a nats-server config file, validated.

``operator`` (a JWT file, an inline JWT, or a list of them; nats-server's
aliases ``operators``, ``root(s)``, ``root_operator(s)``), ``trusted_keys``
(``trusted``), ``resolver`` (``account_resolver``, ``accounts_resolver``:
``MEMORY``, ``MEM``, or ``{ type: full, dir: ... }``) and ``resolver_preload``
(account public key -> account JWT). Every error names the file, line and key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from natsd.config import ConfigError, config_error
from natsd.config.conf import parse_duration
from natsd.security.nkeys import is_valid_public_key

if TYPE_CHECKING:  # the JWT machinery is imported when operator mode is configured
    from natsd_jwt.claims import OperatorClaims

OPERATOR_KEYS = ("operator", "operators", "root", "roots", "root_operator", "root_operators")
RESOLVER_KEYS = ("resolver", "account_resolver", "accounts_resolver")
KEYS = (*OPERATOR_KEYS, "trusted", "trusted_keys", *RESOLVER_KEYS, "resolver_preload")
"""The top-level keys this plugin owns (nats-server's spellings of each)."""

RESOLVER_HELP = ('should be MEMORY (or MEM) or a block { type: full, dir: "..." } '
                 "(URL(...) and type cache are not supported)")


@dataclass
class DirectorySettings:
    """``resolver { type: full, dir, allow_delete, interval, limit, timeout }``."""

    dir: str
    allow_delete: bool = False
    interval: float = 120.0
    limit: int = 0
    timeout: float = 1.9


@dataclass
class OperatorSettings:
    """What operator mode runs on: trusted operators and where account JWTs come from."""

    operators: list[OperatorClaims] = field(default_factory=list)
    trusted_keys: set[str] = field(default_factory=set)
    strict_signing_keys: bool = False
    directory: DirectorySettings | None = None  # None: the MEMORY resolver
    preload: dict[str, str] = field(default_factory=dict)

    def trusted(self) -> set[str]:
        """Keys that may sign account JWTs."""
        keys = set(self.trusted_keys)
        for op in self.operators:
            keys |= op.trusted_keys()
        return keys


def _strings(blocks: Mapping[str, Any], key: str) -> list[str]:
    value = blocks[key]
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) for v in items):
        raise config_error(blocks, key, "expected a string or a list of strings")
    return items


def _operators(blocks: Mapping[str, Any], key: str) -> list[OperatorClaims]:
    from natsd_jwt.claims import JWTError, read_operator_jwt

    out = []
    for value in _strings(blocks, key):
        try:
            _, claims = read_operator_jwt(value)
        except OSError as e:
            raise config_error(blocks, key, f"cannot read operator JWT file {value!r}: "
                               f"{e.strerror or e}") from None
        except JWTError as e:
            raise config_error(blocks, key, f"not a valid operator JWT: {e}") from None
        out.append(claims)
    return out


def _resolver(blocks: Mapping[str, Any], key: str) -> DirectorySettings | None:
    value = blocks[key]
    if isinstance(value, str):
        if value.upper() in ("MEMORY", "MEM"):
            return None
        raise config_error(blocks, key, f"unknown resolver {value!r}: {RESOLVER_HELP}")
    if not isinstance(value, Mapping):
        raise config_error(blocks, key, f"unknown resolver {value!r}: {RESOLVER_HELP}")
    kind = str(value.get("type", "")).lower()
    if kind != "full":
        raise config_error(value if "type" in value else blocks, "type" if "type" in value else key,
                           f"unknown resolver type {value.get('type')!r}: {RESOLVER_HELP}")
    directory = value.get("dir")
    if not isinstance(directory, str) or not directory:
        raise config_error(value if "dir" in value else blocks, "dir" if "dir" in value else key,
                           "dir has no value and needs to point to a directory")
    settings = DirectorySettings(directory)
    for k, v in value.items():
        lk = k.lower()
        if lk in ("type", "dir"):
            continue
        if lk == "allow_delete":
            if not isinstance(v, bool):
                raise config_error(value, k, f"expected a boolean, got {v!r}")
            settings.allow_delete = v
        elif lk in ("interval", "timeout"):
            pos = getattr(value, "positions", {}).get(k)
            seconds = parse_duration(v, file=pos.file if pos else None,
                                     line=pos.line if pos else None, key=k)
            if seconds <= 0:
                raise config_error(value, k, "must be positive")
            setattr(settings, lk, seconds)
        elif lk == "limit":
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise config_error(value, k, f"expected a number of accounts, got {v!r}")
            settings.limit = v
        else:
            raise config_error(value, k, "unknown key in resolver (known: type, dir, "
                               "allow_delete, interval, limit, timeout)")
    return settings


def _preload(blocks: Mapping[str, Any], key: str) -> dict[str, str]:
    value = blocks[key]
    if not isinstance(value, Mapping):
        raise config_error(blocks, key, "expected a block { ACCOUNT_PUBLIC_KEY: JWT ... }")
    out = {}
    for pub, token in value.items():
        if not is_valid_public_key(pub, "A"):
            raise config_error(value, pub, f"not an account public key: {pub!r}")
        if not isinstance(token, str):
            raise config_error(value, pub, "expected an account JWT string")
        from natsd_jwt.claims import AccountClaims, JWTError, decode

        try:
            claims = decode(token)
        except JWTError as e:
            raise config_error(value, pub, f"invalid account JWT: {e}") from None
        if not isinstance(claims, AccountClaims) or claims.subject != pub:
            raise config_error(value, pub, "the JWT is not the account JWT of this key")
        out[pub] = token
    return out


def load(blocks: Mapping[str, Any], source: str | None = None) -> OperatorSettings:
    """Read the operator-mode keys of ``blocks`` (``ServerConfig.blocks``)."""
    settings = OperatorSettings()
    for key in OPERATOR_KEYS:
        if key in blocks:
            settings.operators += _operators(blocks, key)
    for key in ("trusted", "trusted_keys"):
        if key in blocks:
            for pub in _strings(blocks, key):
                if not is_valid_public_key(pub, "O"):
                    raise config_error(blocks, key, f"not an operator public key: {pub!r}")
                settings.trusted_keys.add(pub)
    settings.strict_signing_keys = any(op.strict_signing_key_usage for op in settings.operators)
    if not settings.trusted():
        raise ConfigError("operator mode needs an operator JWT (operator: ...) or trusted_keys",
                          file=source, key="operator")
    resolver = next((key for key in RESOLVER_KEYS if key in blocks), None)
    if resolver is None:
        raise config_error(blocks, next(iter(blocks)),
                           "operator mode needs a resolver (resolver: MEMORY or a full resolver)")
    settings.directory = _resolver(blocks, resolver)
    if "resolver_preload" in blocks:
        settings.preload = _preload(blocks, "resolver_preload")
    return settings
