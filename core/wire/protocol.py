"""The NATS client protocol as a sans-I/O state machine: bytes in, operations out.

:class:`Parser` consumes whatever a read returned and calls one method of its
handler per complete operation (``PUB``, ``HPUB``, ``SUB``, ``UNSUB``,
``CONNECT``, ``PING`` ...). It never touches a socket, so every split of the
input can be tested directly. Partial input is kept until it completes; a
message whose payload is still arriving is collected chunk by chunk and joined
once, so parsing stays linear. Protocol violations raise
:class:`~natsd.wire.errors.ProtocolError` carrying the ``-ERR`` text nats-server
would send. The ``encode_*`` helpers and constants build the bytes a server
sends back.

Payloads are handed over *with* their trailing CRLF and the size exactly as
the client wrote it, so the core can forward both without copying or
reformatting (nats-server does the same).
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from natsd.wire import errors

from .errors import ProtocolError

CRLF = b"\r\n"
PING = b"PING\r\n"
PONG = b"PONG\r\n"
OK = b"+OK\r\n"

DEFAULT_MAX_CONTROL_LINE = 4096
DEFAULT_MAX_PAYLOAD = 1024 * 1024
LINE_CACHE_MAX = 256
"""PUB control lines remembered per connection (the cache is cleared when full)."""


class Handler(Protocol):
    """What a :class:`Parser` calls; the server's client connection implements it."""

    def on_connect(self, options: dict[str, Any]) -> None: ...
    def on_info(self, info: dict[str, Any]) -> None: ...
    def on_pub(self, subject: bytes, reply: bytes | None, size: bytes, payload: bytes) -> None:
        """``size`` is the size token as sent; ``payload`` ends with CRLF."""

    def on_hpub(
        self, subject: bytes, reply: bytes | None, hdr_size: int, size: bytes, payload: bytes
    ) -> None:
        """``payload`` is headers + body + CRLF; ``size`` is the total as sent."""

    def on_pub_run(self, subject: bytes, size: bytes, line: bytes, frames: bytes, count: int) -> None:
        """``count`` (≥ 2) consecutive ``PUB`` frames that share the control ``line``.

        ``frames`` is the raw input (line, payload, CRLF, repeated); every frame
        has the same length. :func:`split_run` turns it back into payloads.
        """

    def on_sub(self, subject: bytes, queue: bytes | None, sid: bytes) -> None: ...
    def on_unsub(self, sid: bytes, max_msgs: int | None) -> None: ...
    def on_ping(self) -> None: ...
    def on_pong(self) -> None: ...
    def on_ok(self) -> None: ...
    def on_err(self, text: bytes) -> None: ...


_BLANKS = frozenset(b" \t\r")
_C = frozenset(b"Cc")
_SKIPPABLE = (b"PING", b"PONG", b"+OK")


def _skippable(data: bytes, pos: int) -> bytes | None:
    """``PING``, ``PONG`` or ``+OK`` if the line at ``pos`` is one of them: nats-server
    ignores whatever follows these up to the line end, however long."""
    head = data[pos:pos + 4].upper()
    for op in _SKIPPABLE:
        if head.startswith(op):
            return op
    return None


def _missing_args(op: str, line: bytes) -> ProtocolError:
    # "UNSUB\r\n" never reaches an argument state in nats-server's parser.
    if line.rstrip(b"\r") == line.split()[0]:
        return ProtocolError(errors.UNKNOWN_PROTOCOL, f"{op} without arguments")
    return _bad_args(op, line)


def _bad_args(op: str, line: bytes) -> ProtocolError:
    # nats-server closes on malformed arguments without sending -ERR.
    return ProtocolError(None, f"{op} parse error: {line[:64]!r}")


class Parser:
    """Incremental parser for the client side of the NATS protocol.

    Use :meth:`set_limits` to change ``max_payload`` or ``max_control_line``
    after parsing started. A handler that sets ``paused`` while handling an
    operation stops the parse right after it; input is then kept (not
    parsed) until :meth:`resume`.
    """

    __slots__ = ("handler", "max_payload", "max_control_line", "paused", "_buf", "_parts",
                 "_have", "_need", "_last", "_last_args", "_lines", "_hlines", "_skip")

    def __init__(
        self,
        handler: Handler,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        max_control_line: int = DEFAULT_MAX_CONTROL_LINE,
    ) -> None:
        self.handler = handler
        self.max_payload = max_payload
        self.max_control_line = max_control_line
        self.paused = False
        self._buf = b""  # an incomplete control line (or all input while paused)
        self._parts: list[bytes] = []  # an operation whose payload is incomplete
        self._have = 0
        self._need = 0
        self._last = b""
        self._lines: dict[bytes, tuple[bytes, bytes | None, bytes, int]] = {}
        self._hlines: dict[bytes, tuple[bytes, bytes | None, int, bytes, int]] = {}
        """HPUB lines seen lately: ``(subject, reply, header size, size, int size)``."""
        self._last_args: tuple[bytes, bytes | None, bytes, int] = (b"", None, b"", 0)
        self._skip: bytes | None = None  # PING/PONG/+OK whose over-long line is being dropped

    def set_limits(self, max_payload: int, max_control_line: int) -> None:
        self.max_payload = max_payload
        self.max_control_line = max_control_line
        self._last = b""  # their sizes were checked against the old limit
        self._lines.clear()
        self._hlines.clear()

    @property
    def buffered(self) -> int:
        """Bytes held back waiting for the rest of an operation."""
        return len(self._buf) + self._have

    def feed(self, data: bytes) -> None:
        """Parse ``data``, calling the handler for every complete operation."""
        if self.paused:
            self._buf += data
            return
        if self._skip is not None:
            nl = data.find(b"\n")
            if nl < 0:
                return  # nats-server drops what follows PING, PONG and +OK up to the line end
            op, self._skip = self._skip, None
            self._control(op, [op], b"")
            data = data[nl + 1:]
            if not data:
                return
        if self._need:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return
            data = b"".join(self._parts)
            self._parts = []
            self._have = self._need = 0
        elif self._buf:
            data = self._buf + data
            self._buf = b""
        self._parse(data)

    def _parse(self, data: bytes) -> None:
        handler = self.handler
        on_pub = handler.on_pub
        mcl = self.max_control_line
        find = data.find
        startswith = data.startswith
        n = len(data)
        pos = 0
        # Recently seen PUB control lines (with their line ending) and what
        # they parsed to: publishers repeat a few lines, and a dict hit skips
        # splitting and converting them again. The line of the previous
        # message is tried first, with startswith(), to find runs.
        lines = self._lines
        hlines = self._hlines
        last, last_args = self._last, self._last_args
        last_len = len(last)
        admit = getattr(handler, "admit", None)
        while pos < n:
            if admit is not None and data[pos] not in _C:
                admit()  # an operation other than CONNECT before authentication
                handler = self.handler
                on_pub = handler.on_pub
                admit = getattr(handler, "admit", None)
            if last_len and startswith(last, pos):
                # A run of frames with this same control line: each frame has
                # the same length, so the run is found with one startswith()
                # per frame and handed over whole.
                subject, reply, size, nsize = last_args
                frame = last_len + nsize + 2
                end = pos + frame
                if end > n:
                    self._hold(data, pos, end)
                    break
                if data[end - 2] != 13 or data[end - 1] != 10:
                    raise ProtocolError(errors.UNKNOWN_PROTOCOL, "PUB payload not followed by CRLF")
                run_end = end
                while True:
                    nxt = run_end + frame
                    if nxt > n or not startswith(last, run_end):
                        break
                    if data[nxt - 2] != 13 or data[nxt - 1] != 10:
                        break  # delivered up to here; the bad frame raises next round
                    run_end = nxt
                if run_end == end:
                    on_pub(subject, reply, size, data[pos + last_len:end])
                else:
                    handler.on_pub_run(subject, size, last, data[pos:run_end], (run_end - pos) // frame)
                pos = run_end
                continue
            nl = find(b"\n", pos)
            if nl < 0:
                if n - pos > mcl:
                    skip = _skippable(data, pos)
                    if skip is None:
                        raise ProtocolError(errors.MAX_CONTROL_LINE)
                    self._skip = skip
                    break
                self._buf = data[pos:]
                break
            start = nl + 1
            line = data[pos:start]
            parsed = lines.get(line)
            if parsed is not None:
                subject, reply, size, nsize = parsed
                end = start + nsize + 2
                if end > n:
                    self._hold(data, pos, end)
                    break
                if data[end - 2] != 13 or data[end - 1] != 10:
                    raise ProtocolError(errors.UNKNOWN_PROTOCOL, "PUB payload not followed by CRLF")
                if reply is None:
                    last, last_len, last_args = line, start - pos, parsed
                on_pub(subject, reply, size, data[start:end])
                pos = end
                continue
            hparsed = hlines.get(line)
            if hparsed is not None:  # an HPUB line seen lately: headers come with their own sizes
                subject, reply, nhdr, size, nsize = hparsed
                end = start + nsize + 2
                if end > n:
                    self._hold(data, pos, end)
                    break
                if data[end - 2] != 13 or data[end - 1] != 10:
                    raise ProtocolError(errors.UNKNOWN_PROTOCOL, "HPUB payload not followed by CRLF")
                handler.on_hpub(subject, reply, nhdr, size, data[start:end])
                pos = end
                continue
            if nl - pos > mcl and _skippable(data, pos) is None:
                raise ProtocolError(errors.MAX_CONTROL_LINE)
            args = line.split()
            if not args or data[pos] in _BLANKS:
                raise ProtocolError(errors.UNKNOWN_PROTOCOL, "empty control line or leading blank")
            op = args[0]
            if op != b"PUB":
                op = op.upper()
                if len(op) > 7 and (op.startswith(b"CONNECT") or op.startswith(b"INFO")):
                    # nats-server needs no blank between CONNECT (or INFO) and its JSON.
                    cut = 7 if op.startswith(b"CONNECT") else 4
                    args = [op[:cut], args[0][cut:], *args[1:]]
                    op = args[0]
            if op == b"PUB":
                na = len(args)
                if na == 3:
                    subject, reply, size = args[1], None, args[2]
                elif na == 4:
                    subject, reply, size = args[1], args[2], args[3]
                else:
                    raise _missing_args("PUB", data[pos:nl])
                if not size.isdigit() or len(size) > 9:
                    raise _bad_args("PUB", data[pos:nl])
                nsize = int(size)
                if nsize > self.max_payload:
                    raise ProtocolError(errors.MAX_PAYLOAD)
                end = start + nsize + 2
                if end > n:
                    self._hold(data, pos, end)
                    break
                if data[end - 2 : end] != CRLF:
                    raise ProtocolError(errors.UNKNOWN_PROTOCOL, "PUB payload not followed by CRLF")
                parsed = (subject, reply, size, nsize)
                if len(lines) >= LINE_CACHE_MAX:
                    lines.clear()
                lines[line] = parsed
                if reply is None:
                    last, last_len, last_args = line, start - pos, parsed
                on_pub(subject, reply, size, data[start:end])
                pos = end
            elif op == b"HPUB":
                na = len(args)
                if na == 4:
                    subject, reply, hsize, size = args[1], None, args[2], args[3]
                elif na == 5:
                    subject, reply, hsize, size = args[1], args[2], args[3], args[4]
                else:
                    raise _missing_args("HPUB", data[pos:nl])
                if not size.isdigit() or not hsize.isdigit() or len(size) > 9 or len(hsize) > 9:
                    raise _bad_args("HPUB", data[pos:nl])
                nsize = int(size)
                nhdr = int(hsize)
                if nhdr > nsize:
                    raise _bad_args("HPUB", data[pos:nl])
                if nsize > self.max_payload:
                    raise ProtocolError(errors.MAX_PAYLOAD)
                end = start + nsize + 2
                if end > n:
                    self._hold(data, pos, end)
                    break
                if data[end - 2 : end] != CRLF:
                    raise ProtocolError(errors.UNKNOWN_PROTOCOL, "HPUB payload not followed by CRLF")
                if len(hlines) >= LINE_CACHE_MAX:
                    hlines.clear()
                hlines[line] = (subject, reply, nhdr, size, nsize)
                handler.on_hpub(subject, reply, nhdr, size, data[start:end])
                pos = end
            else:
                self._control(op, args, data[pos:nl])
                pos = start
                if self.paused:
                    self._buf = data[pos:]
                    break
                if self.handler is not handler:  # e.g. authenticated by CONNECT
                    handler = self.handler
                    on_pub = handler.on_pub
                    admit = getattr(handler, "admit", None)
                mcl = self.max_control_line
        self._last, self._last_args = last, last_args

    def resume(self) -> None:
        """Unpause and parse the input kept meanwhile."""
        self.paused = False
        data, self._buf = self._buf, b""
        if data:
            self._parse(data)

    def _hold(self, data: bytes, pos: int, end: int) -> None:
        """Keep ``data[pos:]`` until ``end - pos`` bytes of it are available."""
        self._parts = [data[pos:]]
        self._have = len(data) - pos
        self._need = end - pos

    def _control(self, op: bytes, args: list[bytes], line: bytes) -> None:
        handler = self.handler
        na = len(args)
        if op == b"SUB":
            if na == 3:
                handler.on_sub(args[1], None, args[2])
            elif na == 4:
                handler.on_sub(args[1], args[2], args[3])
            else:
                raise _missing_args("SUB", line)
        elif op == b"UNSUB":
            if na == 2:
                handler.on_unsub(args[1], None)
            elif na == 3:
                # nats-server treats a max it cannot parse as "unsubscribe now".
                handler.on_unsub(args[1], int(args[2]) if args[2].isdigit() else None)
            else:
                raise _missing_args("UNSUB", line)
        elif op.startswith(b"PING"):
            handler.on_ping()  # like nats-server, ignore anything up to the line end
        elif op.startswith(b"PONG"):
            handler.on_pong()
        elif op == b"CONNECT" or op == b"INFO":
            if na < 2:
                raise _bad_args(op.decode(), line)
            text = line[line.upper().index(op) + len(op):]
            try:
                obj = _json_object(text)
            except ValueError:
                raise _bad_args(op.decode(), line) from None
            if obj is None:
                obj = {}  # Go's decoder leaves the options as they were
            if not isinstance(obj, dict):
                raise _bad_args(op.decode(), line)
            if op == b"CONNECT":
                handler.on_connect(obj)
            else:
                handler.on_info(obj)
        elif op.startswith(b"+OK"):
            handler.on_ok()  # like nats-server, ignore anything up to the line end
        elif op == b"-ERR":
            handler.on_err(line[4:].strip())  # the handler decides (nats-server closes)
        else:
            raise ProtocolError(errors.UNKNOWN_PROTOCOL, f"unknown operation {line[:32]!r}")


def _json_object(text: bytes) -> Any:
    """``json.loads``, also for objects nested deeper than Python's recursion limit.

    nats-server decodes CONNECT into a struct and skips unknown fields,
    however deeply nested; Python's decoder raises ``RecursionError`` past
    about a thousand levels. Then every compound value below the top level is
    replaced by ``null`` (the fields natsd reads are scalars) and decoded again.
    """
    try:
        return json.loads(text)
    except RecursionError:
        try:
            return json.loads(_flatten_nested(text))
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def _flatten_nested(text: bytes) -> bytes:
    """``text`` with each array or object below the top level replaced by ``null``.

    Strings are skipped with their escapes, so brackets inside them do not
    count. Unbalanced input raises ``ValueError`` (it is not JSON).
    """
    out = bytearray()
    depth = 0
    skip_from = -1  # depth at which a replaced value started
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == 0x22:  # a string: copy (or skip) it whole
            j = i + 1
            while j < n and text[j] != 0x22:
                j += 2 if text[j] == 0x5C else 1
            if skip_from < 0:
                out += text[i:j + 1]
            i = j + 1
            continue
        if c in (0x7B, 0x5B):  # { [
            depth += 1
            if depth == 2 and skip_from < 0:
                skip_from = depth
                out += b"null"
            elif skip_from < 0:
                out.append(c)
        elif c in (0x7D, 0x5D):  # } ]
            if skip_from == depth:
                skip_from = -1
            elif skip_from < 0:
                out.append(c)
            depth -= 1
        elif skip_from < 0:
            out.append(c)
        i += 1
    if depth != 0:
        raise ValueError("unbalanced brackets")
    return bytes(out)


def split_run(line: bytes, frames: bytes, count: int) -> list[bytes]:
    """The payloads (each with its CRLF) of a run passed to ``on_pub_run``."""
    frame = len(frames) // count
    skip = len(line)
    return [frames[i + skip : i + frame] for i in range(0, len(frames), frame)]


def encode_info(info: dict[str, Any]) -> bytes:
    """``INFO {...}`` exactly as nats-server frames it (note the space before CRLF)."""
    return b"INFO " + json.dumps(info, separators=(",", ":")).encode() + b" \r\n"


def encode_err(text: str) -> bytes:
    """``-ERR '<text>'``."""
    return b"-ERR '" + text.encode() + b"'\r\n"


def encode_msg(subject: bytes, sid: bytes, reply: bytes | None, payload: bytes) -> bytes:
    """A complete ``MSG`` frame (off the hot path: tests and internal clients)."""
    head = b"MSG %s %s %s%d\r\n" % (subject, sid, reply + b" " if reply else b"", len(payload))
    return head + payload + CRLF


def encode_hmsg(
    subject: bytes, sid: bytes, reply: bytes | None, headers: bytes, payload: bytes
) -> bytes:
    """A complete ``HMSG`` frame."""
    rep = reply + b" " if reply else b""
    head = b"HMSG %s %s %s%d %d\r\n" % (
        subject, sid, rep, len(headers), len(headers) + len(payload))
    return head + headers + payload + CRLF
