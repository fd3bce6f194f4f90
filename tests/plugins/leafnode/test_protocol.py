"""The leaf-node protocol parser and encoders, without sockets: every split, every form."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from natsd.wire.errors import ProtocolError
from natsd_plugins.leafnode.protocol import LeafParser, encode_json, encode_sub, encode_unsub, msg_head


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

    def on_sub(self, subject: bytes, queue: Any, weight: int) -> None:
        self.calls.append(("sub", subject, queue, weight))

    def on_unsub(self, subject: bytes, queue: Any) -> None:
        self.calls.append(("unsub", subject, queue))

    def on_msg(self, subject: bytes, reply: Any, queues: Any, size: bytes, payload: bytes,
               hdr: int) -> None:
        self.calls.append(("msg", subject, reply, tuple(queues), size, payload, hdr))


# Lines as nats-server 2.15.1 sent them on leaf-node connections (captured).
STREAM = (
    b'INFO {"server_id":"NH","client_id":7,"leafnode_urls":["127.0.0.1:7422"]} \r\n'
    b'CONNECT {"version":"2.15.1","name":"LEAF","cluster":"LEAF","headers":true,"deny_pub":["di.\\u003e"]}\r\n'
    b"PING\r\nPONG\r\n"
    b"LS+ foo\r\nLS+ work grp 2\r\nLS- work grp\r\nLS- foo\r\nLS+ $LDS.i2w3du96DTzv6hTDZQpXuz\r\n"
    b"LMSG foo rep.1 5\r\nhello\r\n"
    b"LMSG work | grp 2\r\nw1\r\n"
    b"LMSG work + r.w grp 2\r\nw2\r\n"
    b"LMSG y 2\r\nhi\r\n"
    b"HMSG foo rep.3 22 25\r\nNATS/1.0\r\nX-A: 1\r\n\r\n\r\nabc\r\n"
    b"HMSG bar 22 24\r\nNATS/1.0\r\nX-B: 2\r\n\r\n\r\nxy\r\n"
    b"+OK\r\n"
    b"-ERR 'Loop detected for leafnode account=\"$G\". Delaying attempt to reconnect for 30s'\r\n"
)
EXPECTED = [
    ("info", {"server_id": "NH", "client_id": 7, "leafnode_urls": ["127.0.0.1:7422"]}),
    ("connect", {"version": "2.15.1", "name": "LEAF", "cluster": "LEAF", "headers": True,
                 "deny_pub": ["di.>"]}),
    ("ping",), ("pong",),
    ("sub", b"foo", None, 1), ("sub", b"work", b"grp", 2), ("unsub", b"work", b"grp"),
    ("unsub", b"foo", None), ("sub", b"$LDS.i2w3du96DTzv6hTDZQpXuz", None, 1),
    ("msg", b"foo", b"rep.1", (), b"5", b"hello\r\n", 0),
    ("msg", b"work", None, (b"grp",), b"2", b"w1\r\n", 0),
    ("msg", b"work", b"r.w", (b"grp",), b"2", b"w2\r\n", 0),
    ("msg", b"y", None, (), b"2", b"hi\r\n", 0),
    ("msg", b"foo", b"rep.3", (), b"25", b"NATS/1.0\r\nX-A: 1\r\n\r\n\r\nabc\r\n", 22),
    ("msg", b"bar", None, (), b"24", b"NATS/1.0\r\nX-B: 2\r\n\r\n\r\nxy\r\n", 22),
    ("err", 'Loop detected for leafnode account="$G". Delaying attempt to reconnect for 30s'),
]


def parse(*chunks: bytes, max_payload: int = 1 << 20) -> list[tuple[Any, ...]]:
    rec = Recorder()
    parser = LeafParser(rec, max_payload)
    for chunk in chunks:
        parser.feed(chunk)
    return rec.calls


def test_every_operation() -> None:
    assert parse(STREAM) == EXPECTED


def test_every_split_point() -> None:
    for i in range(len(STREAM) + 1):
        assert parse(STREAM[:i], STREAM[i:]) == EXPECTED, i


def test_byte_by_byte() -> None:
    assert parse(*(STREAM[i:i + 1] for i in range(len(STREAM)))) == EXPECTED


@pytest.mark.parametrize("line, silent", [
    (b"LS+ work grp\r\n", True),  # a queue without its weight: nats-server closes, no -ERR
    (b"LS+\r\n", True),
    (b"LS- a b c\r\n", True),
    (b"LS+ q g x\r\n", True),
    (b"LMSG foo\r\n", True),
    (b"LMSG foo a b 2\r\n", True),  # neither + nor |
    (b"LMSG foo x\r\n", True),
    (b"HMSG foo 9 5\r\n", True),  # header larger than the total
    (b"CONNECT [1]\r\n", True),
    (b"XYZZY\r\n", False),
    (b"SUB x 1\r\n", False),
    (b"MSG x 1 2\r\n", False),
])
def test_errors(line: bytes, silent: bool) -> None:
    with pytest.raises(ProtocolError) as info:
        parse(line)
    assert (info.value.text is None) == silent


def test_own_payload_limit() -> None:
    with pytest.raises(ProtocolError) as info:
        parse(b"LMSG big 2000\r\n", max_payload=1024)
    assert info.value.text == "Maximum Payload Violation"
    assert "2000 vs 1024" in info.value.detail


def test_control_line_limit() -> None:
    with pytest.raises(ProtocolError):
        parse(b"LS+ " + b"a" * (70 * 1024))


def test_encoders() -> None:
    assert encode_json(b"INFO", {"a": 1}) == b'INFO {"a":1} \r\n'
    assert encode_json(b"CONNECT", {"a": 1}) == b'CONNECT {"a":1}\r\n'
    assert encode_sub(b"foo", None, 3) == b"LS+ foo\r\n"
    assert encode_sub(b"foo", b"q", 3) == b"LS+ foo q 3\r\n"
    assert encode_unsub(b"foo", b"q") == b"LS- foo q\r\n"
    assert msg_head(b"s", None, (), 0, 5) == b"LMSG s 5\r\n"
    assert msg_head(b"s", b"r", (), 0, 5) == b"LMSG s r 5\r\n"
    assert msg_head(b"s", b"r", (b"q1", b"q2"), 0, 5) == b"LMSG s + r q1 q2 5\r\n"
    assert msg_head(b"s", None, (b"q",), 3, b"9") == b"HMSG s | q 3 9\r\n"


_token = st.binary(min_size=1, max_size=8).filter(lambda b: all(c > 32 and c != 127 for c in b)
                                                   and b not in (b"+", b"|"))


@settings(max_examples=300, deadline=None)
@given(subject=st.lists(_token, min_size=1, max_size=4).map(b".".join),
       reply=st.none() | _token, queues=st.lists(_token, max_size=3),
       payload=st.binary(max_size=64), hdr=st.integers(0, 8), split=st.integers(0, 200))
def test_messages_round_trip(subject: bytes, reply: bytes | None, queues: list[bytes],
                             payload: bytes, hdr: int, split: int) -> None:
    hdr = min(hdr, len(payload))
    frame = msg_head(subject, reply, queues, hdr, len(payload)) + payload + b"\r\n"
    split = min(split, len(frame))
    [call] = parse(frame[:split], frame[split:])
    assert call == ("msg", subject, reply, tuple(queues), b"%d" % len(payload), payload + b"\r\n", hdr)


@settings(max_examples=200, deadline=None)
@given(subject=_token, queue=st.none() | _token, weight=st.integers(1, 10_000))
def test_interest_round_trips(subject: bytes, queue: bytes | None, weight: int) -> None:
    calls = parse(encode_sub(subject, queue, weight) + encode_unsub(subject, queue))
    assert calls == [("sub", subject, queue, weight if queue is not None else 1),
                     ("unsub", subject, queue)]


def test_pause_holds_what_follows_until_resume() -> None:
    rec = Recorder()
    parser = LeafParser(rec, 1 << 20)

    class Pausing(Recorder):
        def on_connect(self, options: dict[str, Any]) -> None:
            super().on_connect(options)
            parser.paused = True

    rec = Pausing()
    parser.handler = rec
    parser.feed(b'CONNECT {}\r\nLS+ a\r\nLMSG a 2\r\nhi\r\n')
    assert rec.calls == [("connect", {})]
    parser.feed(b"PING\r\n")
    assert rec.calls == [("connect", {})]
    parser.resume()
    assert rec.calls == [("connect", {}), ("sub", b"a", None, 1),
                         ("msg", b"a", None, (), b"2", b"hi\r\n", 0), ("ping",)]
