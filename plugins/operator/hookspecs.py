"""Hooks the operator-mode plugin offers to other plugins.

Declared through ``natsd_addhooks`` when ``natsd_plugins.operator`` is
registered; implement them with ``@natsd.hookimpl(optionalhook=True)`` so
that a plugin still loads without operator mode.

The plugin also registers the service ``"operator"`` (``server.service("operator")``)
while operator mode is on: its ``account(public_key)`` loads an account's JWT
from the resolver (verifying it, applying it, and calling
:func:`natsd_account_claims`) and returns its claims, or raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from natsd.plugin.hookspecs import hookspec

if TYPE_CHECKING:
    from natsd.plugin.contracts import ServerAPI


@hookspec
def natsd_account_claims(server: ServerAPI, account: str, claims: Any) -> None:
    """An account's JWT was applied: first loaded, or updated; ``claims`` is ``None`` when the
    account was removed from the resolver.

    ``account`` is the account's name (its public key); ``claims`` a verified
    ``natsd_jwt.claims.AccountClaims``. A plugin takes what concerns it (the
    JetStream plugin reads ``claims.limits.jetstream``). Called on the event
    loop, whenever it happens: possibly before ``natsd_startup`` has run.
    """
