"""NATS message headers: the ``NATS/1.0`` block carried by ``HPUB``/``HMSG``.

Helpers for in-process clients and plugins; the routing core never parses
headers, it forwards them as bytes.
"""

from __future__ import annotations

from collections.abc import Mapping

HEADER_LINE = b"NATS/1.0"


def encode_headers(headers: Mapping[str, str], status: str = "", description: str = "") -> bytes:
    """Build a header block, e.g. ``{"A": "1"}`` -> ``b"NATS/1.0\\r\\nA: 1\\r\\n\\r\\n"``."""
    first = HEADER_LINE
    if status:
        first += b" " + status.encode()
        if description:
            first += b" " + description.encode()
    lines = [first]
    for key, value in headers.items():
        if any(c in key for c in ":\r\n ") or any(c in value for c in "\r\n"):
            raise ValueError(f"invalid header {key!r}: {value!r}")
        lines.append(f"{key}: {value}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n"


def decode_headers(block: bytes) -> tuple[str, dict[str, list[str]]]:
    """Parse a header block into (status line remainder, {key: [values]})."""
    text = block.decode("utf-8", "replace")
    lines = text.split("\r\n")
    if not lines or not lines[0].startswith("NATS/1.0"):
        raise ValueError("header block does not start with NATS/1.0")
    status = lines[0][len("NATS/1.0"):].strip()
    out: dict[str, list[str]] = {}
    for line in lines[1:]:
        if not line:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"malformed header line {line!r}")
        out.setdefault(key.strip(), []).append(value.strip())
    return status, out
