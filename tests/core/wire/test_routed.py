"""The routed-message protocol (routes, gateways), without sockets: every split, every form."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natsd.wire.errors import ProtocolError
from natsd.wire.routed import (
    RouteParser,
    encode_json,
    encode_sub,
    encode_unsub,
    msg_head,
)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def on_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("info", info))

    def on_connect(self, options: dict[str, Any]) -> None:
        self.calls.append(("connect", options))

    def on_ping(self) -> None:
        self.calls.append(("ping",))

    def on_pong(self) -> None:
        self.calls.append(("pong",))

    def on_err(self, text: str) -> None:
        self.calls.append(("err", text))

    def on_sub(self, origin: Any, account: bytes, subject: bytes, queue: Any, weight: int) -> None:
        self.calls.append(("sub", origin, account, subject, queue, weight))

    def on_unsub(self, origin: Any, account: bytes, subject: bytes, queue: Any) -> None:
        self.calls.append(("unsub", origin, account, subject, queue))

    def on_account(self, account: bytes, interested: bool) -> None:
        self.calls.append(("account", account, interested))

    def on_msg(self, origin: Any, account: bytes, subject: bytes, reply: Any, queues: Any,
               size: bytes, payload: bytes, hdr: int) -> None:
        self.calls.append(("msg", origin, account, subject, reply,
                           tuple(queues) if queues is not None else None, size, payload, hdr))


# Lines as nats-server 2.15.1 sent them on the wire (docs: clustering notes).
STREAM = (
    b'INFO {"server_id":"NA","cluster":"C1","headers":true} \r\n'
    b"PING\r\nPONG\r\n"
    b"RS+ $G foo\r\nRS+ $G bar q 2\r\nRS- $G bar q\r\nRS- $G foo\r\n"
    b"LS+ leafc $G lf\r\nLS- leafc $G lf\r\n"
    b"RMSG $G foo 5\r\nhello\r\n"
    b"RMSG $G bar | q 5\r\nworld\r\n"
    b"RMSG $G foo rep.1 2\r\nhi\r\n"
    b"RMSG $G bar + rep.2 q r 2\r\nhi\r\n"
    b"HMSG $G foo 20 23\r\nNATS/1.0\r\nX-K: v\r\n\r\nabc\r\n"
    b"LMSG leafc $G foo 0 2\r\nok\r\n"
    b"+OK\r\nSUB x 1\r\n"
    b"A- XACC\r\nA+ XACC\r\n"
    b"-ERR 'Authorization Violation'\r\n"
)
EXPECTED = [
    ("info", {"server_id": "NA", "cluster": "C1", "headers": True}),
    ("ping",), ("pong",),
    ("sub", None, b"$G", b"foo", None, 1), ("sub", None, b"$G", b"bar", b"q", 2),
    ("unsub", None, b"$G", b"bar", b"q"), ("unsub", None, b"$G", b"foo", None),
    ("sub", b"leafc", b"$G", b"lf", None, 1), ("unsub", b"leafc", b"$G", b"lf", None),
    ("msg", None, b"$G", b"foo", None, None, b"5", b"hello\r\n", 0),
    ("msg", None, b"$G", b"bar", None, (b"q",), b"5", b"world\r\n", 0),
    ("msg", None, b"$G", b"foo", b"rep.1", None, b"2", b"hi\r\n", 0),
    ("msg", None, b"$G", b"bar", b"rep.2", (b"q", b"r"), b"2", b"hi\r\n", 0),
    ("msg", None, b"$G", b"foo", None, None, b"23", b"NATS/1.0\r\nX-K: v\r\n\r\nabc\r\n", 20),
    ("msg", b"leafc", b"$G", b"foo", None, None, b"2", b"ok\r\n", 0),
    ("account", b"XACC", False), ("account", b"XACC", True),
    ("err", "Authorization Violation"),
]


def parse(*chunks: bytes) -> list[tuple[Any, ...]]:
    rec = Recorder()
    parser = RouteParser(rec)
    for chunk in chunks:
        parser.feed(chunk)
    return rec.calls


def test_every_operation() -> None:
    assert parse(STREAM) == EXPECTED


def test_every_split_point() -> None:
    for i in range(1, len(STREAM)):
        assert parse(STREAM[:i], STREAM[i:]) == EXPECTED, i


def test_byte_by_byte() -> None:
    assert parse(*[STREAM[i:i + 1] for i in range(len(STREAM))]) == EXPECTED


@pytest.mark.parametrize("line, silent", [
    (b"RS+ $G foo bar\r\n", True),                 # a queue without its weight
    (b"RS+ $G foo bar x\r\n", True),               # a weight that is no number
    (b"RS- $G\r\n", True),
    (b"RMSG $G foo ab cd 5\r\nhello\r\n", True),   # no + or | before the queues
    (b"RMSG $G foo x\r\n", True),                  # size not a number
    (b"HMSG $G foo 9 5\r\nhello\r\n", True),        # header larger than the message
    (b"RMSG $G foo 5\r\nhelloXX", True),           # payload not followed by CRLF
    (b"XYZ\r\n", False),
    (b"INFO [1]\r\n", True),
])
def test_errors(line: bytes, silent: bool) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(line)
    assert (info.value.text is None) == silent


def test_control_line_limit() -> None:
    parser = RouteParser(Recorder(), max_control_line=100)
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"RS+ $G " + b"x" * 200)
    assert info.value.text == "maximum control line exceeded"


def test_a_large_payload_in_many_reads() -> None:
    payload = bytes(range(256)) * 4096
    stream = b"RMSG $G big %d\r\n" % len(payload) + payload + b"\r\nPING\r\n"
    chunks = [stream[i:i + 1000] for i in range(0, len(stream), 1000)]
    calls = parse(*chunks)
    assert calls[0][7] == payload + b"\r\n" and calls[1] == ("ping",)


def test_encoders() -> None:
    assert encode_json(b"INFO", {"a": 1}) == b'INFO {"a":1} \r\n'
    assert encode_json(b"CONNECT", {"a": 1}) == b'CONNECT {"a":1}\r\n'
    assert encode_sub(b"$G", b"foo", None, 1) == b"RS+ $G foo\r\n"
    assert encode_sub(b"$G", b"bar", b"q", 3) == b"RS+ $G bar q 3\r\n"
    assert encode_unsub(b"$G", b"bar", b"q") == b"RS- $G bar q\r\n"
    assert msg_head(b"$G", b"foo", None, (), 0, b"5") == b"RMSG $G foo 5\r\n"
    assert msg_head(b"$G", b"bar", None, [b"q"], 0, 5) == b"RMSG $G bar | q 5\r\n"
    assert msg_head(b"$G", b"foo", b"r", (), 0, 2) == b"RMSG $G foo r 2\r\n"
    assert msg_head(b"$G", b"bar", b"r", [b"q", b"s"], 0, 2) == b"RMSG $G bar + r q s 2\r\n"
    assert msg_head(b"$G", b"foo", None, (), 20, 23) == b"HMSG $G foo 20 23\r\n"


_token = st.text("abcxyz019_-$", min_size=1, max_size=8).map(str.encode)


@settings(max_examples=300, deadline=None)
@given(account=_token, subject=st.lists(_token, min_size=1, max_size=4).map(b".".join),
       reply=st.none() | _token, queues=st.lists(_token, max_size=3),
       payload=st.binary(max_size=64), hdr=st.integers(0, 8), split=st.integers(0, 200))
def test_messages_round_trip(account: bytes, subject: bytes, reply: bytes | None,
                             queues: list[bytes], payload: bytes, hdr: int, split: int) -> None:
    hdr = min(hdr, len(payload))
    frame = msg_head(account, subject, reply, queues, hdr, len(payload)) + payload + b"\r\n"
    split = min(split, len(frame))
    [call] = parse(frame[:split], frame[split:])
    assert call == ("msg", None, account, subject, reply, tuple(queues) if queues else None,
                    b"%d" % len(payload), payload + b"\r\n", hdr)


@settings(max_examples=200, deadline=None)
@given(frames=st.lists(st.tuples(st.sampled_from([b"a", b"b.c"]), st.none() | st.sampled_from([b"r1", b"r2"]),
                                 st.sampled_from([(), (b"q",), (b"q", b"w")]), st.binary(min_size=3, max_size=3),
                                 st.sampled_from([0, 2])), min_size=1, max_size=12),
       split=st.integers(0, 400))
def test_repeated_message_lines_parse_as_the_first_did(
        frames: list[tuple[bytes, bytes | None, tuple[bytes, ...], bytes, int]], split: int) -> None:
    """Lines that come again (same subject, size, queues) are remembered; each message still gets
    its own payload, and what the first one parsed to."""
    stream = b"".join(msg_head(b"$G", subject, reply, queues, hdr, len(payload)) + payload + b"\r\n"
                      for subject, reply, queues, payload, hdr in frames)
    split = min(split, len(stream))
    calls = parse(stream[:split], stream[split:])
    assert calls == [("msg", None, b"$G", subject, reply, queues or None, b"3", payload + b"\r\n", hdr)
                     for subject, reply, queues, payload, hdr in frames]
