"""nats-server's trace events, without I/O: reading the trace headers, building the JSON.

A traced message produces one event per server (:class:`TraceEvent`):
``{"server": ..., "request": {"header": ..., "msgsize": ...}, "hops": n,
"events": [...]}`` where each event has a ``type`` (``in``, ``sm``, ``se``,
``si``, ``js``, ``eg``) and a ``ts``. Field names, their order, which are
left out when empty and the JSON's escaping are nats-server 2.15's
(``server/msgtrace.go``).
"""

from __future__ import annotations

import datetime
import json
from typing import Any

TRACE_DEST = "Nats-Trace-Dest"
TRACE_ONLY = "Nats-Trace-Only"
TRACE_HOP = "Nats-Trace-Hop"
TRACE_ORIGIN_ACCOUNT = "Nats-Trace-Origin-Account"
DISABLED = "trace disabled"
"""The ``Nats-Trace-Dest`` value that turns tracing off for a message."""

KIND_CLIENT, KIND_ROUTER, KIND_GATEWAY, KIND_LEAF = 0, 1, 2, 4


def parse_headers(block: bytes) -> dict[str, list[str]] | None:
    """The header fields of a ``NATS/1.0`` block, as nats-server reads them for tracing.

    Keys keep their case; values are trimmed of spaces and tabs; a line with an
    empty key or value is skipped; a repeated key collects its values in order.
    ``None`` for a block that does not start with exactly ``NATS/1.0\\r\\n``
    (one with a status, such as ``NATS/1.0 503``, is never traced).
    """
    if not block.startswith(b"NATS/1.0\r\n"):
        return None
    out: dict[str, list[str]] = {}
    for line in block[10:].split(b"\r\n"):
        key, sep, value = line.partition(b":")
        if not sep:
            continue
        value = value.strip(b" \t")
        if not key or not value:
            continue
        out.setdefault(key.decode("utf-8", "replace"), []).append(value.decode("utf-8", "replace"))
    return out


def trace_only(headers: dict[str, list[str]]) -> bool:
    """``Nats-Trace-Only`` is set (``1``, ``true`` or ``on``, in any case)."""
    values = headers.get(TRACE_ONLY)
    return values is not None and values[0].lower() in ("1", "true", "on")


def traceparent(headers: dict[str, list[str]]) -> str | None:
    """The first ``traceparent`` value (the name in any case)."""
    for key, values in headers.items():
        if key.lower() == "traceparent":
            return values[0]
    return None


def sampled(value: str) -> bool:
    """A W3C ``traceparent`` with four parts whose flags have the sampled bit."""
    parts = value.split("-")
    if len(parts) != 4 or len(parts[3]) != 2:
        return False
    try:
        return bool(int(parts[3], 16) & 0x01)
    except ValueError:
        return False


def set_header(block: bytes, key: str, value: str) -> bytes:
    """``block`` with every ``key`` line removed and ``key: value`` appended (nats-server's
    ``setHeader``: the line moves to the end)."""
    lines = block.split(b"\r\n")
    head, fields = lines[0], [ln for ln in lines[1:] if ln]
    name = key.encode()
    kept = [ln for ln in fields if ln.partition(b":")[0] != name]
    return b"\r\n".join([head, *kept, name + b": " + value.encode()]) + b"\r\n\r\n"


def timestamp() -> str:
    """The time now in RFC 3339 with nanoseconds, in the local zone, as Go's ``time.Now()``
    marshals (trailing zeros of the fraction removed, ``Z`` for UTC)."""
    now = datetime.datetime.now().astimezone()
    text = now.strftime("%Y-%m-%dT%H:%M:%S")
    nanos = now.microsecond * 1000
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    offset = now.utcoffset()
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def go_json(value: Any) -> bytes:
    """Compact JSON as Go's ``json.Marshal`` writes it (``<``, ``>``, ``&`` escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


class TraceEvent:
    """The events one server records for one traced message."""

    __slots__ = ("header", "msgsize", "hops", "events")

    def __init__(self, header: dict[str, list[str]], msgsize: int) -> None:
        self.header = header
        self.msgsize = msgsize
        self.hops = 0
        self.events: list[dict[str, Any]] = []

    def ingress(self, kind: int, cid: int, name: str, account: str, subject: str) -> dict[str, Any]:
        event: dict[str, Any] = {"type": "in", "ts": timestamp(), "kind": kind, "cid": cid}
        if name:
            event["name"] = name
        event["acc"] = account
        event["subj"] = subject
        self.events.append(event)
        return event

    def add(self, kind: str, **fields: Any) -> dict[str, Any]:
        """An event of ``kind`` (``sm``, ``se``, ``si``, ``js``) with ``fields`` in order; fields
        that are ``None`` or false are left out (Go's ``omitempty``)."""
        event: dict[str, Any] = {"type": kind, "ts": timestamp()}
        event.update((k, v) for k, v in fields.items() if v)
        self.events.append(event)
        return event

    def egress(self, kind: int, cid: int, name: str = "", *, hop: str = "", account: str = "",
               sub: str = "", queue: str = "", error: str = "") -> dict[str, Any]:
        event: dict[str, Any] = {"type": "eg", "ts": timestamp(), "kind": kind, "cid": cid}
        for key, value in (("name", name), ("hop", hop), ("acc", account), ("sub", sub), ("queue", queue),
                           ("error", error)):
            if value:
                event[key] = value
        self.events.append(event)
        return event

    def json(self, server: dict[str, Any]) -> bytes:
        request: dict[str, Any] = {}
        if self.header:
            request["header"] = {k: self.header[k] for k in sorted(self.header)}
        if self.msgsize:
            request["msgsize"] = self.msgsize
        body: dict[str, Any] = {"server": server, "request": request}
        if self.hops:
            body["hops"] = self.hops
        body["events"] = self.events
        return go_json(body)
