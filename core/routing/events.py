"""What nats-server's events are made of: their ids and the ``ClientInfo`` of a connection.

System-account events, JetStream's advisories and API audits all carry these
(``id``: a NUID; ``client``: who connected, or who asked).
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from .connection import Kind
from .stats import rfc3339

_DIGITS = string.digits + string.ascii_uppercase + string.ascii_lowercase


class Nuid:
    """nats-server's NUIDs: 22 base-62 characters, a random 12-character prefix and a
    10-character sequence that advances by a random step (renewed when it runs out).
    Unique without asking the operating system for randomness at every id."""

    PREFIX, SEQUENCE = 12, 10
    MAX_SEQ = 62 ** SEQUENCE

    def __init__(self) -> None:
        self._renew()

    def _renew(self) -> None:
        self._prefix = "".join(secrets.choice(_DIGITS) for _ in range(self.PREFIX))
        self._seq = secrets.randbelow(self.MAX_SEQ)
        self._step = 33 + secrets.randbelow(333)

    def next(self) -> str:
        self._seq += self._step
        if self._seq >= self.MAX_SEQ:
            self._renew()
        n, tail = self._seq, []
        for _ in range(self.SEQUENCE):
            n, d = divmod(n, 62)
            tail.append(_DIGITS[d])
        return self._prefix + "".join(reversed(tail))


event_id = Nuid().next
"""A 22-character id like nats-server's NUIDs (``event_id()``)."""


def client_info(client: Any, *, stop: float | None = None) -> dict[str, Any]:
    """nats-server's ``ClientInfo`` of a connection (empty fields left out, as Go does)."""
    info: dict[str, Any] = {"start": rfc3339(client.start), "host": (client.remote or ("",))[0],
                            "id": client.cid, "acc": client.account.name}
    opts = client.connect_options
    user = client.user or opts.get("user") or opts.get("nkey")
    for key, value in (("user", user), ("name", client.name), ("lang", client.lang),
                       ("ver", client.version)):
        if value:
            info[key] = value
    if stop is not None:
        info["stop"] = rfc3339(stop)
    info["name_tag"] = client.account.tag
    kind = getattr(client, "kind", Kind.CLIENT)
    info["kind"] = kind.label if isinstance(kind, Kind) else "Client"
    if kind == Kind.CLIENT:
        info["client_type"] = {"websocket": "websocket", "mqtt": "mqtt"}.get(client.transport, "nats")
    return info
