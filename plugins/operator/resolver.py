"""Account resolvers: where operator mode finds account JWTs, and how they change.

:class:`MemoryResolver` (``resolver: MEMORY``) holds the ``resolver_preload``
JWTs. :class:`DirectoryResolver` (``resolver { type: full, dir: ... }``)
keeps one ``<account public key>.jwt`` file per account, as nats-server's
full resolver does, so both can share a directory.

Both take claim updates on nats-server's system-account subjects
(:mod:`.updates` subscribes them): the memory resolver, like nats-server's,
updates only accounts already in use; the directory resolver stores every
valid update (only if it is not older than the stored one), lists and looks
up what it holds, and deletes accounts when ``allow_delete`` is set.
"""

from __future__ import annotations

import logging
import os

from natsd_jwt.claims import AccountClaims, JWTError, decode

from .settings import DirectorySettings

log = logging.getLogger("natsd.operator")


def issued_at(token: str) -> int:
    """The ``iat`` of an account JWT (0 when it cannot be decoded)."""
    try:
        return decode(token).issued_at
    except JWTError:
        return 0


class MemoryResolver:
    """Account JWTs held in memory (``resolver: MEMORY`` with ``resolver_preload``)."""

    tracks_all = False  # updates apply only to accounts already in use
    allow_delete = False

    def __init__(self, preload: dict[str, str]) -> None:
        self._jwts = dict(preload)

    def fetch(self, account: str) -> str | None:
        return self._jwts.get(account)

    def store(self, account: str, token: str) -> None:
        self._jwts[account] = token

    def accounts(self) -> list[str]:
        return sorted(self._jwts)

    def delete(self, account: str) -> None:
        raise PermissionError("delete must be enabled in server config")


class DirectoryResolver:
    """One ``<public key>.jwt`` file per account in ``settings.dir`` (nats-server's full resolver)."""

    tracks_all = True

    def __init__(self, settings: DirectorySettings, preload: dict[str, str]) -> None:
        self.dir = os.path.abspath(settings.dir)
        self.allow_delete = settings.allow_delete
        self.limit = settings.limit
        os.makedirs(self.dir, exist_ok=True)
        for account, token in preload.items():
            self.store(account, token, if_newer=True)
        log.info("Managing all jwt in exclusive directory %s", self.dir)

    def _path(self, account: str) -> str:
        return os.path.join(self.dir, account + ".jwt")

    def fetch(self, account: str) -> str | None:
        try:
            with open(self._path(account), encoding="ascii") as f:
                return f.read().strip() or None
        except (OSError, UnicodeDecodeError):
            return None

    def store(self, account: str, token: str, *, if_newer: bool = True) -> None:
        """Write ``token`` durably (temp file, fsync, rename) unless an equal or newer one is kept.

        Raises ``ValueError`` when the stored JWT is newer, ``OSError`` when the
        directory cannot be written or the account ``limit`` is reached.
        """
        current = self.fetch(account)
        if current == token:
            return
        if current is not None and if_newer and issued_at(current) > issued_at(token):
            raise ValueError("the stored JWT is newer")
        if current is None and self.limit and len(self.accounts()) >= self.limit:
            raise OSError(f"the resolver holds its limit of {self.limit} accounts")
        path = self._path(account)
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(token)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.dir)

    def accounts(self) -> list[str]:
        return sorted(name[:-4] for name in os.listdir(self.dir) if name.endswith(".jwt"))

    def delete(self, account: str) -> None:
        """Rename the account's file to ``.jwt.deleted`` (nats-server's RenameDeleted)."""
        if not self.allow_delete:
            raise PermissionError("delete must be enabled in server config")
        os.replace(self._path(account), self._path(account) + ".deleted")
        _fsync_dir(self.dir)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


Resolver = MemoryResolver | DirectoryResolver


def decode_account(token: str) -> AccountClaims:
    """Decode ``token`` as an account JWT (``JWTError`` otherwise)."""
    claims = decode(token)
    if not isinstance(claims, AccountClaims):
        raise JWTError("wrong-type", f"expected an account JWT, got a {claims.claim_type} JWT")
    return claims
