"""The built-in authentication methods, as a first-party plugin.

natsd's core knows only the auth hook (``natsd_authenticators``); this plugin
implements nats-server's configured methods through it: a token, a single
user/password, users lists (plain or bcrypt passwords, NKeys), users inside
``accounts {}`` blocks, ``no_auth_user``, per-user permissions,
``allowed_connection_types``, users mapped from TLS client certificates
(``tls { verify_and_map: true }``), and the auth callout of nats-server 2.10
(:mod:`.callout`). It is registered through the ``natsd`` entry-point group
like any third-party plugin and does nothing when no users are configured.
"""

from __future__ import annotations

from typing import Any

from natsd import hookimpl

from .callout import AuthCallout, CalloutSettings
from .static import StaticAuthenticator, build_users

_by_server: dict[int, list[Any]] = {}


@hookimpl
def natsd_configure(server: Any, config: Any) -> None:
    users, token = build_users(config)
    if not users and token is None:
        _by_server.pop(id(server), None)
        return
    tls_map = config.tls is not None and config.tls.map_users
    chain: list[Any] = [StaticAuthenticator(users, token, config.no_auth_user, tls_map)]
    auth = config.authorization or {}
    if "auth_callout" in auth:
        settings = CalloutSettings(auth["auth_callout"], auth, users, config.accounts)
        chain.insert(0, AuthCallout(settings, config.accounts))
    _by_server[id(server)] = chain


@hookimpl
def natsd_authenticators(server: Any) -> list[Any] | None:
    return _by_server.get(id(server))


@hookimpl
def natsd_startup(server: Any) -> None:
    for auth in _by_server.get(id(server), ()):
        if isinstance(auth, AuthCallout):
            auth.start(server)


@hookimpl
def natsd_shutdown(server: Any) -> None:
    for auth in _by_server.pop(id(server), ()):
        if isinstance(auth, AuthCallout):
            auth.stop()
