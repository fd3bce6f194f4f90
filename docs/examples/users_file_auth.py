"""An in-process auth plugin: users from a JSON file, reloaded when it changes.

Register it with ``--plugin users_file_auth`` (on PYTHONPATH) or
``plugins { modules: [users_file_auth] }`` and configure it with
``plugins { users_file_auth { path: "/etc/natsd/users.json" } }``. The file
maps user names to ``{"password": "<bcrypt hash>", "account": "APP"}``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import bcrypt

from natsd import hookimpl
from natsd.config import config_error
from natsd.plugin.contracts import AuthRequest, AuthResult
from natsd.plugin.stash import StashKey


class UsersFile:
    """Checks CONNECT user/pass against the file; returns None for other clients."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mtime = -1.0
        self.users: dict[str, dict[str, str]] = {}

    def _load(self) -> None:
        mtime = os.stat(self.path).st_mtime
        if mtime != self.mtime:
            with open(self.path) as fh:
                self.users = json.load(fh)
            self.mtime = mtime

    def authenticate(self, request: AuthRequest) -> AuthResult | None:
        name = request.options.get("user")
        if not isinstance(name, str):
            return None  # not ours: let other authenticators decide
        self._load()
        entry = self.users.get(name)
        if entry is None:
            return AuthResult(ok=False, reason=f"user {name!r} is not in {self.path}")
        given = str(request.options.get("pass", "")).encode()
        if not bcrypt.checkpw(given, entry["password"].encode()):
            return AuthResult(ok=False, reason=f"wrong password for {name!r}")
        return AuthResult(ok=True, user=name, account=entry.get("account"))


USERS_FILE = StashKey[UsersFile]()  # per-server state lives in server.stash


@hookimpl
def natsd_configure(server: Any, block: Any) -> None:
    if block is None or "path" not in block:
        raise config_error(block, "path", "users_file_auth needs path: <users.json>")
    if not os.path.exists(block["path"]):
        raise config_error(block, "path", f"no such file: {block['path']}")
    server.stash[USERS_FILE] = UsersFile(block["path"])


@hookimpl
def natsd_authenticators(server: Any) -> list[UsersFile]:
    return [server.stash[USERS_FILE]]
