"""The server side of HTTP/1.1 as a sans-I/O state machine: bytes in, requests out.

:class:`RequestParser` takes whatever a socket read returned
(:meth:`~RequestParser.receive_data`) and returns the complete requests it
now holds, in order, so keep-alive and pipelined requests work. It never
touches a socket, so every split of the input is tested directly. It
remembers how far it has searched for the end of a head, so parsing stays
linear, and it refuses a head longer than ``max_head`` or a body longer than
``max_body`` (monitoring requests have none; a body is read and dropped)
with :class:`HTTPError`, after which the connection must be answered and
closed. :func:`response` builds the bytes of an answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import parse_qsl, unquote, urlsplit

MAX_HEAD = 16 * 1024
MAX_BODY = 64 * 1024
MAX_HEADERS = 100

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Content Too Large", 431: "Request Header Fields Too Large",
           500: "Internal Server Error", 501: "Not Implemented", 505: "HTTP Version Not Supported"}

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)\Z")


class HTTPError(Exception):
    """A request that cannot be served: answer ``status`` with ``reason`` and close."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Request:
    """One request head; ``query`` holds the first value of each parameter."""

    method: str
    target: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/"
    query: dict[str, str] = field(default_factory=dict)
    keep_alive: bool = True


class RequestParser:
    """Bytes of one connection in, :class:`Request` objects out."""

    def __init__(self, max_head: int = MAX_HEAD, max_body: int = MAX_BODY) -> None:
        self.max_head = max_head
        self.max_body = max_body
        self._buf = bytearray()
        self._searched = 0  # the head's end is not before this offset
        self._skip = 0  # body bytes still to drop
        self._waiting: Request | None = None  # the request whose body is being dropped

    def receive_data(self, data: bytes) -> list[Request]:
        """The requests completed by ``data``; raises :class:`HTTPError` for a bad one."""
        self._buf += data
        out: list[Request] = []
        while True:
            if self._waiting is not None:
                n = min(self._skip, len(self._buf))
                del self._buf[:n]
                self._skip -= n
                if self._skip:
                    return out
                out.append(self._waiting)
                self._waiting = None
            while self._buf[:2] == b"\r\n":  # empty lines before a request are allowed
                del self._buf[:2]
                self._searched = max(0, self._searched - 2)
            end = self._buf.find(b"\r\n\r\n", max(0, self._searched - 3))
            if end < 0:
                if len(self._buf) > self.max_head:
                    raise HTTPError(431, "request head too large")
                self._searched = len(self._buf)
                return out
            if end + 4 > self.max_head:
                raise HTTPError(431, "request head too large")
            head = bytes(self._buf[:end])
            del self._buf[:end + 4]
            self._searched = 0
            request, length = parse_head(head)
            if length > self.max_body:
                raise HTTPError(413, "request body too large")
            if length:
                self._skip, self._waiting = length, request
            else:
                out.append(request)


def parse_head(head: bytes) -> tuple[Request, int]:
    """A request head (without its final blank line) and its body's length."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1]:
        raise HTTPError(400, "malformed request line")
    method, target, version = parts
    m = _VERSION.match(version)
    if m is None:
        raise HTTPError(400, "malformed HTTP version")
    if m.group(1) != b"1":
        raise HTTPError(505, "only HTTP/1.x is served")
    if len(lines) - 1 > MAX_HEADERS:
        raise HTTPError(431, "too many header fields")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.match(name):
            raise HTTPError(400, "malformed header field")
        key = name.decode("ascii").lower()
        text = value.strip(b" \t").decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    if "transfer-encoding" in headers:
        raise HTTPError(501, "request bodies are not supported")
    length = headers.get("content-length", "0")
    if not length.isdigit():
        raise HTTPError(400, "malformed Content-Length")
    text_target = target.decode("latin-1")
    if not (text_target.startswith("/") or text_target.startswith(("http://", "https://"))):
        raise HTTPError(400, "unsupported request target")
    url = urlsplit(text_target)
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep_alive = "close" not in tokens if m.group(2) != b"0" else "keep-alive" in tokens
    query: dict[str, str] = {}
    for k, v in parse_qsl(url.query, keep_blank_values=True):
        query.setdefault(k, v)
    return Request(method.decode("ascii"), text_target, version.decode("ascii"), headers,
                   unquote(url.path) or "/", query, keep_alive), int(length)


def response(status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8",
             *, keep_alive: bool = True, head: bool = False,
             headers: tuple[tuple[str, str], ...] = ()) -> bytes:
    """The bytes of an answer (``head``: the headers only, for a HEAD request)."""
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}",
             f"Content-Type: {content_type}", f"Date: {formatdate(usegmt=True)}",
             f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines.append("Connection: " + ("keep-alive" if keep_alive else "close"))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head else body)
