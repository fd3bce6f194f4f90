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
