"""Accounts: isolated subject spaces inside one server.

Every client belongs to exactly one account, and messages never cross
accounts unless an export/import says so (:mod:`natsd.routing.imports`). The default
account, used when nothing else is configured, is ``$G`` as in nats-server.
An account may rewrite published subjects (``mappings``) and limit its
connections, each connection's subscriptions and message size (``limits``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from natsd.config import config_error, size_setting

from .connection import NO_LIMIT
from .deliver import deliver, deliver_as, deliver_traced, split_shown
from .stats import Totals
from .sublist import Sublist, Subscription
from .trace import DROP

if TYPE_CHECKING:
    from natsd.config import ServerConfig

    from .connection import Host
    from .interest import InterestTable

GLOBAL_ACCOUNT = "$G"
SYSTEM_ACCOUNT = "$SYS"

#: ``limits {}`` keys of an account block -> Account attribute (nats-server's names).
LIMIT_KEYS = {
    "max_connections": "max_connections", "max_conn": "max_connections",
    "max_subscriptions": "max_subscriptions", "max_subs": "max_subscriptions",
    "max_payload": "max_payload", "max_pay": "max_payload",
    "max_leafnodes": "max_leafnodes", "max_leafs": "max_leafnodes",
}


class Account:
    """One account: its subscriptions, clients, subject mappings and limits.

    Limits are ``-1`` when unlimited (nats-server's ``jwt.NoLimit``);
    ``max_subscriptions`` and ``max_payload`` apply to each connection.

    Every subscription change goes through :meth:`add_sub`, :meth:`remove_sub`
    and :meth:`reweigh`, which tell the interest tables (see
    :mod:`natsd.routing.interest`). Messages published in the account go
    through :meth:`deliver` (see :mod:`natsd.routing.deliver`); ``egress``
    holds callables offered every message after local delivery (gateways).
    """

    __slots__ = ("name", "name_tag", "sublist", "clients", "mappings", "max_connections",
                 "max_subscriptions", "max_payload", "max_leafnodes", "closed_totals",
                 "connected", "traffic_cache", "interest", "egress", "__weakref__")

    def deliver(self, sender: Any, subject: bytes, reply: bytes | None, size: bytes, payload: bytes,
                hdr: int, queues: Sequence[bytes] | None = None) -> bool:
        """Deliver a message published in this account (:func:`natsd.routing.deliver.deliver`)."""
        return deliver(self, sender, subject, reply, size, payload, hdr, queues)

    def deliver_from_server(self, sender: Any, subject: bytes, reply: bytes | None, size: bytes, payload: bytes,
                            hdr: int, queues: Sequence[bytes] = ()) -> bool:
        """A message another server sent (over a route, a gateway or a leaf link): as
        :meth:`deliver`, except that a message tracers follow is traced (its headers ask for
        it, see :mod:`natsd.routing.trace`) and that a JetStream delivery's reply ``<ack reply>@<subject>``
        (nats-server's form, see :func:`natsd.routing.deliver.deliver_as`) shows local subscribers
        ``<subject>`` and the plain ack reply."""
        plain, shown = split_shown(reply)
        if hdr:
            tracing = sender.server.tracing
            if tracing.by_header and tracing.wants(payload, hdr):
                trace = tracing.begin(sender, self, subject, plain, payload[:hdr], len(payload) - 2)
                if trace is DROP:
                    return False
                if trace is not None:
                    sender.trace = trace
                    try:
                        if shown is None or queues:
                            return deliver_traced(self, sender, subject, plain, size, payload, hdr, queues)
                        return deliver_as(self, sender, subject, shown, plain, size, payload, hdr)
                    finally:
                        sender.trace = None
                        trace.end()
        if shown is None or queues:
            return self.deliver(sender, subject, plain, size, payload, hdr, queues)
        return deliver_as(self, sender, subject, shown, plain, size, payload, hdr)

    def __init__(self, name: str) -> None:
        self.name = name
        self.name_tag = ""
        """A display name (an account JWT's ``name``); see :attr:`tag`."""
        self.sublist = Sublist()
        self.interest: tuple[InterestTable, ...] = ()
        self.egress: tuple[Any, ...] = ()
        self.clients: set[Any] = set()
        self.mappings: Any = None  # a natsd.routing.mappings.Mappings when configured
        self.max_connections = NO_LIMIT
        self.max_subscriptions = NO_LIMIT
        self.max_payload = NO_LIMIT
        self.max_leafnodes = NO_LIMIT
        self.closed_totals = Totals()  # traffic of its closed connections (natsd.routing.stats)
        self.connected = 0
        """Client connections of the account whose CONNECT was accepted (kept as they come
        and go, so that counting them costs nothing however many there are)."""
        self.traffic_cache: tuple[float, Totals] | None = None  # see stats.account_traffic

    def __repr__(self) -> str:
        return f"<Account {self.name} clients={len(self.clients)} subs={self.sublist.count}>"

    @property
    def tag(self) -> str:
        """The name monitoring and events show as ``name_tag``: :attr:`name_tag`, else the name."""
        return self.name_tag or self.name

    # -- subscriptions ---------------------------------------------------------

    def add_sub(self, sub: Subscription) -> None:
        """Index ``sub`` and tell the interest tables."""
        self.sublist.insert(sub)
        for table in self.interest:
            table.added(self, sub)

    def remove_sub(self, sub: Subscription) -> bool:
        """Remove ``sub`` (False if it was not indexed) and tell the interest tables."""
        if not self.sublist.remove(sub):
            return False
        for table in self.interest:
            table.removed(self, sub)
        return True

    def reweigh(self, sub: Subscription, weight: int) -> None:
        """Change the weight of a remote queue subscription and tell the interest tables."""
        old = sub.weight
        self.sublist.reweigh(sub, weight)
        for table in self.interest:
            table.reweighed(self, sub, old)

    def set_mappings(self, mappings: Any) -> None:
        """Install subject mappings (``None`` or an empty collection removes them)."""
        self.mappings = mappings if mappings else None

    def reset(self) -> None:
        """Forget mappings and limits (before a reloaded config block applies)."""
        self.mappings = None
        self.max_connections = self.max_subscriptions = NO_LIMIT
        self.max_payload = self.max_leafnodes = NO_LIMIT

    def configure(self, block: Mapping[str, Any]) -> None:
        """Take ``mappings {}`` and ``limits {}`` from the account's config block."""
        if "mappings" in block:
            from .mappings import Mappings

            self.set_mappings(Mappings.from_config(block["mappings"], parent=block))
        limits = block.get("limits")
        if limits is None:
            return
        if not isinstance(limits, Mapping):
            raise config_error(block, "limits", "expected a block { max_connections: ... }")
        for key, value in limits.items():
            attr = LIMIT_KEYS.get(key.lower())
            if attr is None:
                raise config_error(limits, key, "unknown account limit (known: "
                                   + ", ".join(sorted(set(LIMIT_KEYS.values()))) + ")")
            if attr == "max_payload" and isinstance(value, str):
                value = size_setting(limits, key, value)
            if not isinstance(value, int) or isinstance(value, bool) or value < NO_LIMIT:
                raise config_error(limits, key, f"expected a number (-1: unlimited), got {value!r}")
            setattr(self, attr, value)

    def connection_allowed(self) -> bool:
        """True if one more client may join (``max_connections`` not reached)."""
        return self.max_connections < 0 or len(self.clients) < self.max_connections


def configure_accounts(server: Host, config: ServerConfig, forget: Iterable[str] = ()) -> None:
    """Apply ``config``'s top-level ``mappings`` and ``accounts {}`` (mappings, limits,
    exports, imports) to the server's accounts; at start-up and on reload.

    Accounts named in ``forget`` (the previous config's) lose what they had
    first; accounts from elsewhere (JWTs) are left to their plugin.
    """
    from .imports import wire
    from .mappings import Mappings

    if server.links is not None:
        for fwd in server.links.forwarders:
            fwd.close()
    mappings = config.mappings
    server.global_account.set_mappings(Mappings.from_config(mappings) if mappings is not None else None)
    for name in {*forget, *config.accounts}:
        account = server.lookup_account(name, create=True)
        account.reset()
        if name in config.accounts:
            account.configure(config.accounts[name])
    server.links = wire(server)
