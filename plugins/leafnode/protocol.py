"""The leaf-node protocol as a sans-I/O parser and encoders: bytes in, handler calls out.

What a leaf-node connection carries (nats-server ``leafnode.go``), in the
form both sides speak it. The connection is bound to one account on each
side, so no line names an account:

``INFO {json}`` / ``CONNECT {json}``
    the handshake (the hub's INFO, the leaf's CONNECT, the hub's
    ``connect_info`` INFO), and later the hub's list of leaf-node URLs;
``PING`` / ``PONG`` / ``+OK`` / ``-ERR '<text>'``
    as on the client protocol (an ``-ERR`` does not close the connection:
    whoever sends one closes);
``LS+ <subject>[ <queue> <weight>]`` / ``LS- <subject>[ <queue>]``
    interest of the other side (a queue weight is the number of members it
    reaches);
``LMSG <subject> [reply | + <reply> <queue>... | \\| <queue>...] <size>``
    a message, with the queue groups the receiver should serve (none: only
    plain subscriptions);
``HMSG ... <hdr size> <total size>``
    the same with headers.

Argument errors close the connection without ``-ERR``, as nats-server does;
an unknown operation gets ``-ERR 'Unknown Protocol Operation'``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from natsd.wire.errors import ProtocolError

MAX_CONTROL_LINE = 64 * 1024
"""nats-server allows leaf-node control lines of 16 times the client limit."""

CRLF = b"\r\n"


class LeafHandler(Protocol):
    """What a :class:`LeafParser` calls."""

    def on_info(self, info: dict[str, Any]) -> None: ...
    def on_connect(self, options: dict[str, Any]) -> None: ...
    def on_ping(self) -> None: ...
    def on_pong(self) -> None: ...
    def on_err(self, text: str) -> None: ...
    def on_sub(self, subject: bytes, queue: bytes | None, weight: int) -> None:
        """``LS+``; ``weight`` is 1 for a plain subscription."""

    def on_unsub(self, subject: bytes, queue: bytes | None) -> None: ...

    def on_msg(self, subject: bytes, reply: bytes | None, queues: Sequence[bytes],
               size: bytes, payload: bytes, hdr: int) -> None:
        """``LMSG``/``HMSG``: ``payload`` ends with CRLF and starts with ``hdr`` bytes of
        headers; ``size`` is the total size token as sent; ``queues`` is empty when the
        message names no queue group."""


def _bad(what: str, line: bytes) -> ProtocolError:
    # nats-server logs the parse error and closes the connection without -ERR.
    return ProtocolError(None, f"{what}: {line[:80]!r}")


def _int(token: bytes, what: str, line: bytes) -> int:
    if not token.isdigit() or len(token) > 10:
        raise _bad(what, line)
    return int(token)


class LeafParser:
    """Incremental parser of what the other side sends on a leaf-node connection.

    ``max_payload`` is this server's own limit: a larger message raises
    ``ProtocolError('Maximum Payload Violation')`` (nats-server checks its
    own limit, never the peer's).
    """

    __slots__ = ("handler", "max_control_line", "max_payload", "paused", "_buf", "_pending",
                 "_parts", "_have")

    def __init__(self, handler: LeafHandler, max_payload: int,
                 max_control_line: int = MAX_CONTROL_LINE) -> None:
        self.handler = handler
        self.max_payload = max_payload
        self.max_control_line = max_control_line
        self.paused = False
        """Set by the handler (while a CONNECT is being authenticated): what follows waits."""
        self._buf = b""
        # a message whose payload is incomplete: (header args, bytes needed)
        self._pending: tuple[tuple[Any, ...], int] | None = None
        self._parts: list[bytes] = []  # the incomplete payload's chunks, joined once
        self._have = 0

    def feed(self, data: bytes) -> None:
        """Parse ``data``; complete operations call the handler, a partial tail is kept."""
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            assert self._pending is not None
            if self._have < self._pending[1]:
                return
            data = b"".join(self._parts)
            self._parts, self._have = [], 0
        elif self._buf:
            data = self._buf + data
            self._buf = b""
        if self.paused:
            self._buf = data
            return
        pos = 0
        n = len(data)
        while pos < n:
            if self._pending is not None:
                args, need = self._pending
                end = pos + need
                if end > n:
                    self._parts, self._have = [data[pos:]], n - pos
                    return
                self._pending = None
                if data[end - 2:end] != CRLF:
                    raise _bad("message payload not followed by CRLF", data[pos:pos + 40])
                subject, reply, queues, size, hdr = args
                self.handler.on_msg(subject, reply, queues, size, data[pos:end], hdr)
                pos = end
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                if n - pos > self.max_control_line:
                    raise ProtocolError("maximum control line exceeded", "leafnode control line too long")
                break
            if nl - pos > self.max_control_line:
                raise ProtocolError("maximum control line exceeded", "leafnode control line too long")
            line = data[pos:nl].rstrip(b"\r")
            pos = nl + 1
            self._line(line)
            if self.paused:
                break
        self._buf = data[pos:]

    def resume(self) -> None:
        """Go on with what arrived while paused."""
        self.paused = False
        data, self._buf = self._buf, b""
        if data:
            self.feed(data)

    def _line(self, line: bytes) -> None:
        handler = self.handler
        args = line.split()
        if not args:
            raise ProtocolError("Unknown Protocol Operation", "empty leafnode control line")
        op = args[0].upper()
        if op in (b"LMSG", b"HMSG"):
            self._msg(op, args, line)
        elif op == b"LS+":
            if len(args) == 2:
                handler.on_sub(args[1], None, 1)
            elif len(args) == 4:
                handler.on_sub(args[1], args[2], _int(args[3], "processLeafSub queue weight", line))
            else:
                raise _bad("processLeafSub Parse Error", line)
        elif op == b"LS-":
            if len(args) == 2:
                handler.on_unsub(args[1], None)
            elif len(args) == 3:
                handler.on_unsub(args[1], args[2])
            else:
                raise _bad("processLeafUnsub Parse Error", line)
        elif op == b"PING":
            handler.on_ping()
        elif op == b"PONG":
            handler.on_pong()
        elif op in (b"INFO", b"CONNECT"):
            text = line[len(op):].strip()
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError):
                raise _bad(op.decode(), line) from None
            if not isinstance(obj, dict):
                raise _bad(op.decode(), line)
            if op == b"INFO":
                handler.on_info(obj)
            else:
                handler.on_connect(obj)
        elif op == b"-ERR":
            handler.on_err(line[4:].strip().strip(b"'").decode(errors="replace"))
        elif op == b"+OK":
            pass
        else:
            raise ProtocolError("Unknown Protocol Operation", f"leafnode sent {line[:40]!r}")

    def _msg(self, op: bytes, args: list[bytes], line: bytes) -> None:
        headers = op == b"HMSG"
        sizes = 2 if headers else 1
        rest = args[1:]
        if len(rest) < 1 + sizes:
            raise _bad("processLeafMsgArgs Parse Error", line)
        subject = rest[0]
        middle = rest[1:-sizes]
        reply: bytes | None = None
        queues: Sequence[bytes] = ()
        if len(middle) == 1:
            reply = middle[0]
        elif middle:
            if middle[0] == b"+" and len(middle) >= 3:
                reply, queues = middle[1], tuple(middle[2:])
            elif middle[0] == b"|" and len(middle) >= 2:
                queues = tuple(middle[1:])
            else:
                raise _bad("processLeafMsgArgs Bad or Missing Reply Indicator", line)
        size = rest[-1]
        total = _int(size, "processLeafMsgArgs Bad or Missing Size", line)
        hdr = _int(rest[-2], "processLeafHeaderMsgArgs Bad or Missing Header Size", line) if headers else 0
        if hdr > total:
            raise _bad("processLeafHeaderMsgArgs Header Size larger then TotalSize", line)
        if total > self.max_payload:
            raise ProtocolError("Maximum Payload Violation",
                                f"maximum payload exceeded: {total} vs {self.max_payload}")
        self._pending = ((subject, reply, queues, size, hdr), total + 2)


# -- encoding -------------------------------------------------------------------------


def encode_json(op: bytes, obj: dict[str, Any]) -> bytes:
    """``INFO {...} \\r\\n`` (nats-server's blank before CRLF) or ``CONNECT {...}\\r\\n``."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    return op + b" " + body + (b" \r\n" if op == b"INFO" else CRLF)


def encode_sub(subject: bytes, queue: bytes | None, weight: int) -> bytes:
    """``LS+`` for a plain subscription (weight ignored) or a queue group of ``weight`` members."""
    if queue is None:
        return b"LS+ %s\r\n" % subject
    return b"LS+ %s %s %d\r\n" % (subject, queue, weight)


def encode_unsub(subject: bytes, queue: bytes | None) -> bytes:
    if queue is None:
        return b"LS- %s\r\n" % subject
    return b"LS- %s %s\r\n" % (subject, queue)


def msg_head(subject: bytes, reply: bytes | None, queues: Sequence[bytes], hdr: int,
             size: bytes | int) -> bytes:
    """The control line of ``LMSG`` (``hdr`` 0) or ``HMSG``, with its CRLF."""
    parts = [b"HMSG" if hdr else b"LMSG", subject]
    if queues:
        if reply is not None:
            parts += [b"+", reply]
        else:
            parts.append(b"|")
        parts += queues
    elif reply is not None:
        parts.append(reply)
    if hdr:
        parts.append(b"%d" % hdr)
    parts.append(size if isinstance(size, bytes) else b"%d" % size)
    return b" ".join(parts) + CRLF
