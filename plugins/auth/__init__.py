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

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from natsd import hookimpl
from natsd.config import ServerConfig
from natsd.plugin.contracts import Authenticator, ServerAPI
from natsd.plugin.stash import StashKey

from .static import StaticAuthenticator, build_users

if TYPE_CHECKING:  # the callout module (with JWT machinery) is imported only when configured
    from .callout import AuthCallout

CHAIN = StashKey[list[Authenticator]]()


def _chain(config: Any) -> list[Any]:
    users, token = build_users(config)
    if not users and token is None:
        return []
    chain: list[Any] = [StaticAuthenticator(users, token, config.no_auth_user, _maps(config))]
    auth = config.authorization or {}
    if "auth_callout" in auth:
        from .callout import AuthCallout, CalloutSettings  # with its JWT machinery: only when used

        settings = CalloutSettings(auth["auth_callout"], auth, users, config.accounts)
        chain.insert(0, AuthCallout(settings, config.accounts))
    return chain


@hookimpl
def natsd_configure(server: ServerAPI, config: ServerConfig) -> None:
    chain = _chain(config)
    if chain:
        server.stash[CHAIN] = chain
    else:
        server.stash.pop(CHAIN, None)


def _maps(config: Any) -> bool:
    return config.tls is not None and config.tls.map_users


@hookimpl
def natsd_reload(server: ServerAPI, old: ServerConfig, new: ServerConfig) -> Callable[[], None] | None:
    if (old.authorization, old.accounts, old.no_auth_user, _maps(old)) == (
            new.authorization, new.accounts, new.no_auth_user, _maps(new)):
        return None
    chain = _chain(new)  # raises ConfigError for bad users: nothing changes

    def apply() -> None:
        natsd_shutdown(server)
        if chain:
            server.stash[CHAIN] = chain
            natsd_startup(server)
    return apply


@hookimpl
def natsd_authenticators(server: ServerAPI) -> list[Authenticator] | None:
    return server.stash.get(CHAIN, None)


@hookimpl
def natsd_startup(server: ServerAPI) -> None:
    for auth in server.stash.get(CHAIN, ()):
        if not isinstance(auth, StaticAuthenticator):
            cast("AuthCallout", auth).start(server)


@hookimpl
def natsd_shutdown(server: ServerAPI) -> None:
    for auth in server.stash.pop(CHAIN, ()):
        if isinstance(auth, StaticAuthenticator):
            auth.close()
        else:
            cast("AuthCallout", auth).stop()
