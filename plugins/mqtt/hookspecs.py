"""Hooks the mqtt plugin offers to other plugins: MQTT 5 enhanced authentication.

Declared through ``natsd_addhooks`` when ``natsd_plugins.mqtt`` is
registered. Implementations should be marked
``@natsd.hookimpl(optionalhook=True)`` so that a package still loads when
the mqtt plugin is not installed or denied.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from natsd.plugin.hookspecs import hookspec

if TYPE_CHECKING:
    from natsd.plugin.contracts import AuthResult, ServerAPI


class EnhancedAuthenticator(Protocol):
    """One MQTT 5 authentication method (SCRAM, Kerberos, a challenge of your own ...).

    ``method`` is the name devices give as CONNECT's authentication method.
    ``exchange(connect, data)`` is a generator: ``connect`` holds the CONNECT's
    ``client_id``, ``username`` and ``password`` (or ``None``), ``data`` its
    authentication data. Each value it yields is a challenge the server sends
    in an AUTH packet (reason 0x18, continue authentication); the device's AUTH
    answer is sent back into it. It returns an
    :class:`natsd.plugin.contracts.AuthResult`: accepted (the account, user and
    permissions the device gets, as from any authenticator) or refused
    (CONNACK 0x87, not authorized). It runs on the event loop: quick steps only.
    """

    method: str

    def exchange(self, connect: Mapping[str, Any], data: bytes | None) -> Generator[bytes, bytes, AuthResult]: ...


@hookspec
def natsd_mqtt_authenticators(server: ServerAPI) -> list[EnhancedAuthenticator] | None:
    """Return the MQTT 5 enhanced authentication methods this plugin provides.

    A device whose CONNECT names an authentication method no plugin provides
    gets CONNACK 0x8C (bad authentication method), as the specification says.
    The first plugin to name a method serves it. Called once, when the MQTT
    listener starts.
    """
