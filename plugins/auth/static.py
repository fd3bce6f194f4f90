"""Users and tokens from the config file, checked as nats-server checks them.

Plain secrets are compared in constant time on the event loop. bcrypt hashes
(``$2a$...``, cost 10-12: 50-300 ms of CPU each) are checked off the loop by a
:class:`PasswordHasher`, at most one per spare core at a time: the client
waits for its verdict (its reading is paused), nobody else does.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import os
from collections.abc import Awaitable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from natsd.config import ConfigError, config_error
from natsd.plugin.contracts import AuthRequest, AuthResult

CONNECTION_TYPES = frozenset({"STANDARD", "WEBSOCKET", "MQTT", "LEAFNODE"})


@dataclass
class User:
    """One configured identity: a name with a password, or an NKey."""

    name: str
    password: str | None = None
    nkey: str | None = None
    account: str | None = None
    permissions: Any = None
    connection_types: frozenset[str] = field(default_factory=frozenset)



def is_bcrypt(configured: str) -> bool:
    """A configured password or token that is a bcrypt hash (nats-server: ``$2``...)."""
    return configured.startswith("$2")


def secret_ok(configured: str, given: str) -> bool:
    """Compare a password or token, bcrypt-hashed (``$2a$...``) or plain, in constant time.

    Blocks for a bcrypt hash: the authenticator calls it through a
    :class:`PasswordHasher`.
    """
    if is_bcrypt(configured):
        import bcrypt

        try:
            return bcrypt.checkpw(given.encode(), configured.encode())
        except ValueError:
            return False
    return hmac.compare_digest(configured.encode(), given.encode())


class PasswordHasher:
    """Runs bcrypt checks in worker threads (bcrypt releases the GIL), a bounded number at once.

    ``workers`` defaults to one less than the CPUs (at least one), so that a
    flood of wrong passwords leaves a core to the event loop and costs the
    clients that send them their own wait.
    """

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or max(1, (os.cpu_count() or 2) - 1)
        self._pool: ThreadPoolExecutor | None = None

    def check(self, configured: str, given: str) -> Awaitable[bool]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="natsd-bcrypt")
        return asyncio.get_running_loop().run_in_executor(self._pool, secret_ok, configured, given)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _permissions(block: Mapping[str, Any], key: str) -> Any:
    from natsd.security.permissions import Permissions

    return Permissions.from_config(block[key], block=block, key=key)


def _user(entry: Any, where: Any, index: int, account: str | None,
          default_perms: Any) -> User:
    if not isinstance(entry, Mapping):
        raise config_error(where, str(index), "a user must be a block { user: ..., password: ... }")
    name = entry.get("user")
    nkey = entry.get("nkey")
    if (name is None) == (nkey is None):
        raise config_error(entry, next(iter(entry), "user"), "a user needs either user or nkey")
    if nkey is not None:
        from natsd.security.nkeys import is_valid_public_key

        if not isinstance(nkey, str) or not is_valid_public_key(nkey, "U"):
            raise config_error(entry, "nkey", f"not a user NKey public key: {nkey!r}")
    password = entry.get("password", entry.get("pass"))
    if password is not None and not isinstance(password, str):
        password = str(password)
    perms = _permissions(entry, "permissions") if "permissions" in entry else default_perms
    types = entry.get("allowed_connection_types", [])
    types = [types] if isinstance(types, str) else types
    for t in types:
        if str(t).upper() not in CONNECTION_TYPES:
            raise config_error(entry, "allowed_connection_types", f"unknown connection type {t!r}")
    for key in entry:
        if key not in ("user", "nkey", "password", "pass", "permissions", "allowed_connection_types"):
            raise config_error(entry, key, "unknown key in a user")
    return User(name=str(name if name is not None else nkey), password=password, nkey=nkey,
                account=account, permissions=perms,
                connection_types=frozenset(str(t).upper() for t in types))


def build_users(config: Any) -> tuple[dict[str, User], str | None]:
    """Users by name (or NKey) and the token, from ``authorization`` and ``accounts``."""
    users: dict[str, User] = {}
    token: str | None = None
    auth = config.authorization or {}
    default_perms = _permissions(auth, "default_permissions") if "default_permissions" in auth else None
    for key, value in auth.items():
        k = key.lower()
        if k == "token":
            token = str(value)
        elif k in ("user", "username"):
            users[str(value)] = User(str(value), password=str(auth.get("password", auth.get("pass", ""))),
                                     permissions=default_perms)
        elif k == "users":
            for i, entry in enumerate(value if isinstance(value, list) else []):
                user = _user(entry, value, i, None, default_perms)
                _add(users, user, value, i)
        elif k not in ("password", "pass", "timeout", "default_permissions", "auth_callout"):
            raise config_error(auth, key, "unknown key in authorization")
    if token is not None and users:
        raise config_error(auth, "token", "a token cannot be combined with users")
    for name, block in config.accounts.items():
        entries = block.get("users", [])
        for i, entry in enumerate(entries):
            _add(users, _user(entry, entries, i, name, None), entries, i)
    if config.no_auth_user is not None:
        default = users.get(config.no_auth_user)
        if default is None or default.nkey is not None:
            raise ConfigError(f"no_auth_user {config.no_auth_user!r} is not a configured user",
                              file=config.source, key="no_auth_user")
    return users, token


def _add(users: dict[str, User], user: User, where: Any, index: int) -> None:
    if user.name in users:
        raise config_error(where, str(index), f"user {user.name!r} is defined twice")
    users[user.name] = user


class StaticAuthenticator:
    """Checks CONNECT credentials against the configured users or token."""

    def __init__(self, users: dict[str, User], token: str | None, no_auth_user: str | None,
                 tls_map: bool = False, hasher: PasswordHasher | None = None) -> None:
        self.users = users
        self.token = token
        self.no_auth_user = no_auth_user
        self.tls_map = tls_map and bool(users)  # verify_and_map: the certificate names the user
        self.wants_nonce = any(u.nkey for u in users.values())
        self.hasher = hasher or PasswordHasher()
        self._mappable = [name for name, u in users.items() if u.nkey is None]

    def authenticate(self, request: AuthRequest) -> AuthResult | Awaitable[AuthResult]:
        opts = request.options
        if self.token is not None:
            return self._verdict(self.token, opts.get("auth_token"), AuthResult(ok=True),
                                 "bad or missing token")
        if opts.get("nkey"):
            return self._nkey(request)
        if self.tls_map:
            return self._mapped(request)
        name = opts.get("user")
        default = request.no_auth_user if request.no_auth_user is not None else self.no_auth_user
        if not name and not opts.get("pass") and default:
            user = self.users.get(default)
            if user is None or user.nkey is not None:
                return AuthResult(ok=False, reason=f"no_auth_user {default!r} is not a configured user")
            return self._accept(user, request)
        user = self.users.get(name) if isinstance(name, str) else None
        if user is None or user.nkey is not None or user.password is None:
            return AuthResult(ok=False, reason=f"unknown user {name!r}" if name else "no credentials")
        return self._verdict(user.password, opts.get("pass"), self._accept(user, request),
                             f"wrong password for user {name!r}")

    def _verdict(self, configured: str, given: Any, accepted: AuthResult,
                 refusal: str) -> AuthResult | Awaitable[AuthResult]:
        """``accepted`` if ``given`` matches ``configured``, else a refusal; an awaitable
        of either when ``configured`` is a bcrypt hash."""
        if not isinstance(given, str):
            return AuthResult(ok=False, reason=refusal)
        if is_bcrypt(configured):
            return self._checked(self.hasher.check(configured, given), accepted, refusal)
        return accepted if secret_ok(configured, given) else AuthResult(ok=False, reason=refusal)

    @staticmethod
    async def _checked(check: Awaitable[bool], accepted: AuthResult, refusal: str) -> AuthResult:
        return accepted if await check else AuthResult(ok=False, reason=refusal)

    def close(self) -> None:
        self.hasher.close()

    def _mapped(self, request: AuthRequest) -> AuthResult | Awaitable[AuthResult]:
        """``verify_and_map``: the client certificate's subject or names pick the user."""
        peer = request.tls_peer
        if peer is None:
            return AuthResult(ok=False, reason="user required in cert, no TLS client certificate")
        name = peer.map_to(self._mappable)
        if name is None:
            return AuthResult(ok=False, reason=f"user in cert [{peer.subject_dn}] not found")
        user = self.users[name]
        # As nats-server: the configured password (usually none) must equal the one sent.
        configured, given = user.password or "", request.options.get("pass") or ""
        if not (configured or given):
            return self._accept(user, request)
        return self._verdict(configured, given, self._accept(user, request),
                             f"wrong password for user {name!r} from cert")

    def _nkey(self, request: AuthRequest) -> AuthResult:
        from natsd.security.nkeys import KeyPair, NKeyError

        key = request.options.get("nkey")
        user = self.users.get(key) if isinstance(key, str) else None
        if user is None or user.nkey is None:
            return AuthResult(ok=False, reason=f"unknown nkey {key!r}")
        sig = request.options.get("sig")
        if not isinstance(sig, str) or request.nonce is None:
            return AuthResult(ok=False, reason="nkey without a nonce signature")
        try:
            raw = _b64(sig)
            if not KeyPair.from_public_key(user.nkey).verify(request.nonce.encode(), raw):
                return AuthResult(ok=False, reason="nonce signature does not verify")
        except (ValueError, NKeyError):
            return AuthResult(ok=False, reason="malformed nonce signature")
        return self._accept(user, request)

    def _accept(self, user: User, request: AuthRequest) -> AuthResult:
        if user.connection_types and request.connection_type not in user.connection_types:
            return AuthResult(ok=False, reason=(
                f"user {user.name!r} may not connect over {request.connection_type}"))
        return AuthResult(ok=True, account=user.account, user=user.name, permissions=user.permissions)


def _b64(text: str) -> bytes:
    """nats-server accepts raw URL-safe base64 and falls back to standard base64."""
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode())
    except ValueError:
        return base64.b64decode(padded.encode(), validate=True)
