"""The routed-message protocol as a sans-I/O parser and encoders: bytes in, handler calls out.

What connections between servers carry where every line names its account
(nats-server ``route.go``, ``gateway.go`` and ``parser.go``): routes (one
connection per remote server, nats-server's "no pool" routes, which every
2.x server accepts) and gateways speak it alike.

``INFO {json}`` / ``CONNECT {json}``
    the handshake (and, later, gossip about other servers, lame duck and a
    gateway's interest commands);
``PING`` / ``PONG`` / ``+OK`` / ``-ERR '<text>'``
    as on the client protocol;
``RS+ <acc> <subject>[ <queue> <weight>]`` / ``RS- <acc> <subject>[ <queue>]``
    interest of the remote server's clients (a queue weight is the number of
    its members);
``LS+ <origin> <acc> <subject>[ <queue> <weight>]`` / ``LS- ...``
    the same for leaf-node interest, with the leaf cluster it came from (routes);
``A+ <acc>`` / ``A- <acc>``
    a gateway's account interest;
``RMSG <acc> <subject> [reply | + <reply> <queue>... | \\| <queue>...] <size>``
    a message, with the queue groups the receiver should serve;
``HMSG ...`` (``<hdr size> <total size>``) and ``LMSG <origin> ...``
    the same with headers, or from a leaf node.

Argument errors close the connection without ``-ERR``, as nats-server does; an
unknown operation gets ``-ERR 'Unknown Protocol Operation'``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

from natsd.wire.errors import ProtocolError

MAX_CONTROL_LINE = 64 * 1024
"""nats-server allows route control lines of 16 times the client limit."""
LINE_CACHE_MAX = 256
"""Message lines a parser remembers (see ``RouteParser._lines``)."""

CRLF = b"\r\n"
PING = b"PING\r\n"
PONG = b"PONG\r\n"


class RouteHandler(Protocol):
    """What a :class:`RouteParser` calls."""

    def on_info(self, info: dict[str, Any]) -> None: ...
    def on_connect(self, options: dict[str, Any]) -> None: ...
    def on_ping(self) -> None: ...
    def on_pong(self) -> None: ...
    def on_err(self, text: str) -> None: ...
    def on_sub(self, origin: bytes | None, account: bytes, subject: bytes,
               queue: bytes | None, weight: int) -> None:
        """``RS+`` (origin ``None``) or ``LS+``; ``weight`` is 1 for a plain subscription."""

    def on_unsub(self, origin: bytes | None, account: bytes, subject: bytes,
                 queue: bytes | None) -> None: ...

    def on_account(self, account: bytes, interested: bool) -> None:
        """``A+`` (``interested``) or ``A-``: a gateway's interest in a whole account."""

    def on_msg(self, origin: bytes | None, account: bytes, subject: bytes, reply: bytes | None,
               queues: Sequence[bytes] | None, size: bytes, payload: bytes, hdr: int) -> None:
        """``RMSG``/``HMSG``/``LMSG``: ``payload`` ends with CRLF and starts with ``hdr`` bytes
        of headers; ``size`` is the total size token as sent; ``queues`` is ``None`` when
        the message names no queue group."""


def _bad(what: str, line: bytes) -> ProtocolError:
    # nats-server logs the parse error and closes the route without -ERR.
    return ProtocolError(None, f"{what}: {line[:80]!r}")


def _int(token: bytes, what: str, line: bytes) -> int:
    if not token.isdigit() or len(token) > 10:
        raise _bad(what, line)
    return int(token)


class RouteParser:
    """Incremental parser of what a peer sends on a route connection."""

    __slots__ = ("handler", "max_control_line", "_buf", "_pending", "_parts", "_have", "_lines")

    def __init__(self, handler: RouteHandler, max_control_line: int = MAX_CONTROL_LINE) -> None:
        self.handler = handler
        self.max_control_line = max_control_line
        self._buf = b""
        # a message whose payload is incomplete: (header args, bytes needed)
        self._pending: tuple[tuple[Any, ...], int] | None = None
        self._parts: list[bytes] = []  # the incomplete payload's chunks, joined once
        self._have = 0
        self._lines: dict[bytes, tuple[tuple[Any, ...], int]] = {}
        """Message lines seen lately and what they parsed to: a peer repeats its subjects and
        sizes, and a hit skips splitting the line again (cleared at :data:`LINE_CACHE_MAX`)."""

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
        pos = 0
        n = len(data)
        handler = self.handler
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
                origin, account, subject, reply, queues, size, hdr = args
                handler.on_msg(origin, account, subject, reply, queues, size, data[pos:end], hdr)
                pos = end
                continue
            nl = data.find(b"\n", pos)
            if nl < 0:
                if n - pos > self.max_control_line:
                    raise ProtocolError("maximum control line exceeded", "route control line too long")
                break
            if nl - pos > self.max_control_line:
                raise ProtocolError("maximum control line exceeded", "route control line too long")
            line = data[pos:nl].rstrip(b"\r")
            pos = nl + 1
            cached = self._lines.get(line)
            if cached is not None:
                self._pending = cached  # the payload is read at the top of the loop
                continue
            self._line(line)
        self._buf = data[pos:]

    def _line(self, line: bytes) -> None:
        handler = self.handler
        args = line.split()
        if not args:
            raise ProtocolError("Unknown Protocol Operation", "empty route control line")
        op = args[0].upper()
        if op in (b"RMSG", b"HMSG", b"LMSG"):
            self._msg(op, args, line)
        elif op == b"RS+":
            self._sub(None, args[1:], line)
        elif op == b"RS-":
            self._unsub(None, args[1:], line)
        elif op == b"LS+":
            if len(args) < 2:
                raise _bad("LS+", line)
            self._sub(args[1], args[2:], line)
        elif op == b"LS-":
            if len(args) < 2:
                raise _bad("LS-", line)
            self._unsub(args[1], args[2:], line)
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
        elif op in (b"A+", b"A-", b"AU"):
            if len(args) != 2:
                raise _bad(op.decode(), line)
            handler.on_account(args[1], op == b"A+")
        elif op in (b"+OK", b"SUB", b"UNSUB"):
            pass  # nats-server ignores these on routes
        else:
            raise ProtocolError("Unknown Protocol Operation", f"route sent {line[:40]!r}")

    def _sub(self, origin: bytes | None, args: list[bytes], line: bytes) -> None:
        if len(args) == 2:
            self.handler.on_sub(origin, args[0], args[1], None, 1)
        elif len(args) == 4:
            self.handler.on_sub(origin, args[0], args[1], args[2], _int(args[3], "queue weight", line))
        else:
            raise _bad("RS+/LS+ arguments", line)

    def _unsub(self, origin: bytes | None, args: list[bytes], line: bytes) -> None:
        if len(args) == 2:
            self.handler.on_unsub(origin, args[0], args[1], None)
        elif len(args) == 3:
            self.handler.on_unsub(origin, args[0], args[1], args[2])
        else:
            raise _bad("RS-/LS- arguments", line)

    def _msg(self, op: bytes, args: list[bytes], line: bytes) -> None:
        origin = None
        rest = args[1:]
        if op == b"LMSG":
            if not rest:
                raise _bad("LMSG", line)
            origin, rest = rest[0], rest[1:]
        headers = op != b"RMSG"
        sizes = 2 if headers else 1
        if len(rest) < 2 + sizes:
            raise _bad(f"{op.decode()} arguments", line)
        account, subject = rest[0], rest[1]
        middle = rest[2:-sizes]
        reply: bytes | None = None
        queues: tuple[bytes, ...] | None = None  # a tuple: a remembered line hands out the same one
        if len(middle) == 1:
            reply = middle[0]
        elif middle:
            if middle[0] == b"+" and len(middle) >= 3:
                reply, queues = middle[1], tuple(middle[2:])
            elif middle[0] == b"|":
                queues = tuple(middle[1:])
            else:
                raise _bad(f"{op.decode()} bad or missing reply indicator", line)
        size = rest[-1]
        total = _int(size, "message size", line)
        hdr = _int(rest[-2], "header size", line) if headers else 0
        if hdr > total:
            raise _bad("header size larger than total size", line)
        self._pending = ((origin, account, subject, reply, queues, size, hdr), total + 2)
        if reply is None:  # a reply is a new inbox at every request: not worth keeping
            if len(self._lines) >= LINE_CACHE_MAX:
                self._lines.clear()
            self._lines[line] = self._pending


# -- encoding -------------------------------------------------------------------------


def encode_json(op: bytes, obj: dict[str, Any], *, blank: bool | None = None) -> bytes:
    """``INFO {...} \\r\\n`` or ``CONNECT {...}\\r\\n``.

    nats-server ends its own INFO with a blank before CRLF and forwards other
    servers' INFO (gossip) without it; ``blank`` overrides the default.
    """
    body = json.dumps(obj, separators=(",", ":")).encode()
    if blank is None:
        blank = op == b"INFO"
    return op + b" " + body + (b" \r\n" if blank else CRLF)


def encode_sub(account: bytes, subject: bytes, queue: bytes | None, weight: int) -> bytes:
    """``RS+`` for a plain subscription (weight ignored) or a queue group of ``weight`` members."""
    if queue is None:
        return b"RS+ %s %s\r\n" % (account, subject)
    return b"RS+ %s %s %s %d\r\n" % (account, subject, queue, weight)


def encode_unsub(account: bytes, subject: bytes, queue: bytes | None) -> bytes:
    if queue is None:
        return b"RS- %s %s\r\n" % (account, subject)
    return b"RS- %s %s %s\r\n" % (account, subject, queue)


def msg_head(account: bytes, subject: bytes, reply: bytes | None, queues: Sequence[bytes],
             hdr: int, size: bytes | int) -> bytes:
    """The control line of ``RMSG`` (``hdr`` 0) or ``HMSG``, with its CRLF."""
    if not queues and reply is None and not hdr and isinstance(size, bytes):
        return b"RMSG " + account + b" " + subject + b" " + size + CRLF  # most messages
    parts = [b"HMSG" if hdr else b"RMSG", account, subject]
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
