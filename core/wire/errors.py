"""Error texts the server sends after ``-ERR``, spelled exactly as nats-server spells them.

Clients match on these strings (nats-py turns 'Stale Connection' and
'Authorization Violation' into specific exceptions), so they are part of the
wire contract and live in one place.
"""

UNKNOWN_PROTOCOL = "Unknown Protocol Operation"
MAX_PAYLOAD = "Maximum Payload Violation"
INVALID_SUBJECT = "Invalid Subject"
INVALID_PUBLISH_SUBJECT = "Invalid Publish Subject"
STALE_CONNECTION = "Stale Connection"
AUTH_TIMEOUT = "Authentication Timeout"
AUTH_VIOLATION = "Authorization Violation"
MAX_CONNECTIONS = "maximum connections exceeded"
MAX_ACCOUNT_CONNECTIONS = "maximum account active connections exceeded"
AUTH_EXPIRED = "User Authentication Expired"
MAX_SUBSCRIPTIONS = "maximum subscriptions exceeded"
MAX_CONTROL_LINE = "maximum control line exceeded"
NO_RESPONDERS_NEEDS_HEADERS = "no responders requires headers support"
INVALID_CLIENT_PROTOCOL = "invalid client protocol"
SECURE_CONNECTION_REQUIRED = "Secure Connection - TLS Required"


class ProtocolError(Exception):
    """A client broke the protocol; the connection is answered and closed.

    ``text`` is sent as ``-ERR '<text>'`` before closing; ``None`` closes
    without a reply, as nats-server does for malformed arguments.
    """

    def __init__(self, text: str | None, detail: str = "") -> None:
        super().__init__(detail or text or "protocol error")
        self.text = text
        self.detail = detail or text or "protocol error"


# -- permission violations, as nats-server words them ----------------------------

_GO_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v",
               0x22: '\\"', 0x5C: "\\\\"}


def go_quote(value: bytes | str) -> str:
    """``value`` quoted as Go's ``%q`` does (``strconv.Quote``).

    Printable characters stay as they are (UTF-8 included); quotes and
    backslashes are escaped, control characters become ``\\n``, ``\\x01``,
    ``\\u0085``..., and bytes that are not valid UTF-8 become ``\\xff``.
    """
    text = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
    out = ['"']
    for ch in text:
        code = ord(ch)
        esc = _GO_ESCAPES.get(code)
        if esc is not None:
            out.append(esc)
        elif 0xDC80 <= code <= 0xDCFF:  # an invalid byte, from surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def pub_violation(subject: bytes | str) -> str:
    """``Permissions Violation for Publish to "subject"`` (the text inside ``-ERR '...'``)."""
    return f"Permissions Violation for Publish to {go_quote(subject)}"


def sub_violation(subject: bytes | str, queue: bytes | str | None = None) -> str:
    """``Permissions Violation for Subscription to "subject"[ using queue "queue"]``."""
    if queue is None:
        return f"Permissions Violation for Subscription to {go_quote(subject)}"
    return f"Permissions Violation for Subscription to {go_quote(subject)} using queue {go_quote(queue)}"


def reply_violation(reply: bytes | str) -> str:
    """``Permissions Violation for Publish with Reply of "reply"`` (reserved reply prefixes)."""
    return f"Permissions Violation for Publish with Reply of {go_quote(reply)}"
