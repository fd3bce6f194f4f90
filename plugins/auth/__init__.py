"""The built-in authentication methods, as a first-party plugin.

natsd's core knows only the auth hook (``natsd_authenticators``); this plugin
implements nats-server's configured methods through it: a token, a single
user/password, users lists (plain or bcrypt passwords, NKeys), users inside
``accounts {}`` blocks, ``no_auth_user``, per-user permissions and
``allowed_connection_types``. It is registered through the ``natsd``
entry-point group like any third-party plugin and does nothing when no users
are configured.
"""

from __future__ import annotations

from typing import Any

from natsd import hookimpl

from .static import StaticAuthenticator, build_users

_by_server: dict[int, StaticAuthenticator] = {}


@hookimpl
def natsd_configure(server: Any, config: Any) -> None:
    users, token = build_users(config)
    if users or token is not None:
        _by_server[id(server)] = StaticAuthenticator(users, token, config.no_auth_user)
    else:
        _by_server.pop(id(server), None)


@hookimpl
def natsd_authenticators(server: Any) -> list[StaticAuthenticator] | None:
    auth = _by_server.get(id(server))
    return [auth] if auth is not None else None


@hookimpl
def natsd_shutdown(server: Any) -> None:
    _by_server.pop(id(server), None)
